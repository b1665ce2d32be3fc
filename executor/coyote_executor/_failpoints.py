"""Failpoints: named places where a test can make the executor die on purpose.

``COYOTE_EXECUTOR_FAILPOINT=recorded:3`` makes the process exit abruptly (``os._exit``, like
``kill -9``: no cleanup, no flush) the third time it passes the failpoint ``recorded``. The
crash tests use them to stop the executor exactly between two writes; unset, a failpoint costs
one comparison per step.
"""

from __future__ import annotations

import os
import sys

_SPEC = os.environ.get("COYOTE_EXECUTOR_FAILPOINT", "")
_NAME, _, _COUNT = _SPEC.partition(":")
_remaining = int(_COUNT or 1) if _NAME else 0

POINTS = ("decided", "sent", "recorded")
"""After the decisions are recorded; after the broker calls; after their outcomes are recorded
(before the Kafka transaction)."""


def failpoint(name: str) -> None:
    """Exits the process here if the failpoint ``name`` is armed and due."""
    global _remaining
    if name != _NAME:
        return
    _remaining -= 1
    if _remaining <= 0:
        sys.stderr.write(f"failpoint {name} reached: exiting\n")
        sys.stderr.flush()
        os._exit(137)
