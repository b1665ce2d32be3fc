"""The coyote-sdk command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coyote_sdk", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def test_backtest_prints_json_stats_and_trades_and_writes_the_chart(tmp_path: Path) -> None:
    chart = tmp_path / "equity.html"

    result = _cli(
        "backtest",
        "examples/sma_cross.py",
        "--data",
        "examples/data/GOOG.csv",
        "--cash",
        "10000",
        "--commission",
        "0.002",
        "--chart",
        str(chart),
        "--json",
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["bot"] == "SmaCross" and report["bars"] == 2148
    assert report["stats"]["trades"] == len(report["trades"]) == 47
    assert chart.read_text().startswith("<!doctype html>")


def test_backtest_with_a_bad_parameter_exits_2_naming_it() -> None:
    result = _cli(
        "backtest",
        "examples/sma_cross.py",
        "--data",
        "examples/data/GOOG.csv",
        "--param",
        "fast=zero",
    )

    assert result.returncode == 2
    assert "parameter `fast`" in result.stderr


def test_every_command_has_help_with_an_example() -> None:
    for command in (["dev", "up"], ["dev", "status"], ["backtest"], ["protocol", "schema"]):
        result = _cli(*command, "--help")
        assert result.returncode == 0
        assert "Example" in result.stdout, command
