"""Shared by the benchmarks: timing, and results recorded into bench/results.json."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.json")


def best_of(runs: int, work: Callable[[], Any]) -> float:
    """The fastest of ``runs`` timings of ``work``, in seconds (the least disturbed run)."""
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def median_of(runs: int, work: Callable[[], Any]) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, interpolated between the closest ranks
    (as ``statistics.quantiles(..., method="inclusive")``)."""
    if not values:
        raise ValueError("no values to take a percentile of")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def measurement(
    name: str,
    value: float,
    unit: str,
    baseline: str | None = None,
    baseline_value: float | None = None,
) -> dict[str, Any]:
    """One result: ``ratio`` is ``value / baseline_value`` (for rates higher is better, for
    times lower is better)."""
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": round(value / baseline_value, 3) if baseline_value else None,
        "machine": f"{platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def record(entries: list[dict[str, Any]]) -> None:
    """Replaces the entries of the same names in bench/results.json (a list of measurements)
    and prints them."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    if not isinstance(results, list):  # the earlier layout, by section
        results = []
    names = {entry["name"] for entry in entries}
    results = [r for r in results if r["name"] not in names] + entries
    results.sort(key=lambda r: r["name"])
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for entry in entries:
        against = (
            f"  vs {entry['baseline']} {entry['baseline_value']} (ratio {entry['ratio']})"
            if entry["baseline"]
            else ""
        )
        print(f"{entry['name']:44} {entry['value']} {entry['unit']}{against}")
