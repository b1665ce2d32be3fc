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


def test_init_scaffolds_a_project_whose_test_passes_and_that_bundles(tmp_path: Path) -> None:
    created = _cli("init", "breakout-bot", "--directory", str(tmp_path))
    project = tmp_path / "breakout-bot"
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=project,
    )
    bundled = _cli("bundle", str(project / "bot.py"), "--out", str(tmp_path / "b.tgz"), "--json")
    again = _cli("init", "breakout-bot", "--directory", str(tmp_path))

    assert created.returncode == 0, created.stderr
    assert sorted(p.name for p in project.iterdir()) == [
        "README.md",
        "bot.py",
        "requirements.txt",
        "test_bot.py",
    ]
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert json.loads(bundled.stdout)["entry_point"] == "src/bot.py:BreakoutBot"
    assert again.returncode == 2 and "already exists" in again.stderr


def test_backtest_with_risk_limits_refuses_what_they_forbid(tmp_path: Path) -> None:
    limits = tmp_path / "risk.toml"
    limits.write_text(
        '[instruments.GOOG]\ntick_size = "0.01"\n[symbols.GOOG]\nmax_position = "5"\n'
    )
    no_instrument = tmp_path / "empty.toml"
    no_instrument.write_text("[account]\n")

    refused = _cli(
        "backtest",
        "examples/sma_cross.py",
        "--data",
        "examples/data/GOOG.csv",
        "--risk",
        str(limits),
        "--json",
    )
    missing = _cli(
        "backtest",
        "examples/sma_cross.py",
        "--data",
        "examples/data/GOOG.csv",
        "--risk",
        str(no_instrument),
    )

    assert refused.returncode == 0, refused.stderr
    assert json.loads(refused.stdout)["stats"]["trades"] == 0  # 10 shares > max_position 5
    assert missing.returncode == 2
    assert "no [instruments.GOOG]" in missing.stderr
