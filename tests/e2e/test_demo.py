"""`make demo`'s main job, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coyote_sdk.config import Endpoints, StackSettings
from coyote_sdk.dev import Health, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_demo_completes_every_round_trip_and_leaves_a_running_stack_running(
    endpoints: Endpoints, stack_settings: StackSettings
) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py")],
        env={**os.environ, "DEMO_SECONDS": "1", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" ok ") == 4, result.stdout
    assert "5000 ticks in" in result.stdout
    assert "failed" not in result.stdout
    assert all(row.health is Health.HEALTHY for row in Stack(stack_settings).status())
