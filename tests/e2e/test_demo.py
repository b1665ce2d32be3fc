"""`make demo`'s main job, run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from coyote_sdk.config import Endpoints, StackSettings
from coyote_sdk.dev import Health, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_bots_run_live_and_every_intent_they_send_comes_back_from_kafka(
    endpoints: Endpoints, stack_settings: StackSettings
) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py")],
        env={**os.environ, "DEMO_SECONDS": "8", "DEMO_BARS_PER_SECOND": "25", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    row = r"│ (mean-reversion|market-maker)\s*│ (\d+)\s*│ (\d+)\s*│ (\d+)\s*│ (\w+)"
    rows = {
        m.group(1): (int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5))
        for m in re.finditer(row, result.stdout)
    }

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" ok ") == 2, result.stdout
    assert set(rows) == {"mean-reversion", "market-maker"}, result.stdout
    for bars, sent, read_back, state in rows.values():
        assert bars > 100
        assert sent == read_back
        assert state == "stopped"
    assert rows["market-maker"][1] > rows["market-maker"][0]  # quotes and cancels every bar
    assert all(row.health is Health.HEALTHY for row in Stack(stack_settings).status())
