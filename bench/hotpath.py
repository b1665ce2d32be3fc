"""Compiled hot-path pieces against their pure-Python references, in the same run.

- risk: TokenBucket.try_acquire (coyote_risk, Cython) vs coyote_risk.reference.TokenBucket;
- executor: RecentIds.add (coyote_executor, Cython) vs coyote_executor.reference.RecentIds.

Run: .venv/bin/python bench/hotpath.py
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, measurement, record

from coyote_executor import RecentIds
from coyote_executor import reference as executor_reference
from coyote_risk import TokenBucket
from coyote_risk import reference as risk_reference

CALLS = 500_000


def _bucket_loop(bucket_type: type) -> None:
    bucket = bucket_type(100.0, 1000.0)
    acquire = bucket.try_acquire
    for i in range(CALLS):
        acquire(i * 1_000_000)


IDS = [uuid.UUID(int=i) for i in range(50_000)]


def _dedupe_loop(ids_type: type) -> None:
    recent = ids_type(20_000)
    add = recent.add
    for _ in range(CALLS // len(IDS)):
        for intent_id in IDS:
            add(intent_id)


def main() -> None:
    compiled_bucket = best_of(5, lambda: _bucket_loop(TokenBucket))
    reference_bucket = best_of(5, lambda: _bucket_loop(risk_reference.TokenBucket))
    compiled_ids = best_of(5, lambda: _dedupe_loop(RecentIds))
    reference_ids = best_of(5, lambda: _dedupe_loop(executor_reference.RecentIds))
    record(
        [
            measurement(
                "hotpath.token_bucket_try_acquire_ns",
                round(compiled_bucket / CALLS * 1e9, 1),
                "ns",
                "pure-Python reference",
                round(reference_bucket / CALLS * 1e9, 1),
            ),
            measurement(
                "hotpath.recent_ids_add_ns",
                round(compiled_ids / CALLS * 1e9, 1),
                "ns",
                "pure-Python reference",
                round(reference_ids / CALLS * 1e9, 1),
            ),
        ]
    )


if __name__ == "__main__":
    main()
