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


def test_bots_trade_live_through_the_executor_and_get_fills(
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
    # bot │ bars │ intents │ fills │ rejects │ position │ realised PnL │ final state
    row = (
        r"│ (mean-reversion|market-maker)\s*│ (\d+)\s*│ (\d+)\s*│ (\d+)\s*│ (\d+)\s*│ "
        r"(-?\d+)\s*│ (-?[\d.]+)\s*│ (\w+)"
    )
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(row, result.stdout)}

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" ok ") == 1, result.stdout  # the Vault round trip
    assert set(rows) == {"mean-reversion", "market-maker"}, result.stdout
    for bars, intents, _fills, _rejects, _position, _pnl, state in rows.values():
        assert int(bars) > 100
        assert int(intents) > 0
        assert state == "stopped"
    # The reports API (over HTTP, logged in as the demo's admin) saw the same fills
    reported = {
        m.group(1): int(m.group(2))
        for m in re.finditer(
            r"│ (mean-reversion|market-maker)\s*│ (\d+)\s*│ \d+\s*│ [\d.]+", result.stdout
        )
    }
    # (the executor may book a last fill after the tap stops listening: at least as many)
    for bot, row in rows.items():
        assert reported.get(bot, 0) >= int(row[2]), result.stdout
    assert "dashboard: http://127.0.0.1:" in result.stdout
    market_maker = rows["market-maker"]
    assert int(market_maker[1]) > int(market_maker[0])  # quotes and cancels every bar
    assert int(market_maker[2]) > 0, result.stdout  # its quotes were filled by the paper broker
    assert all(row.health is Health.HEALTHY for row in Stack(stack_settings).status())
