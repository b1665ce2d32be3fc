"""`coyote-sdk flow validate | compile | schema`, run as a user runs them (apply, which needs a
control plane, is tested in tests/control_plane/test_flow_apply.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from coyote_sdk.cli import app
from coyote_sdk.flow._load import schema_text
from tests.sdk.flow.conftest import DEMO, REPO

pytestmark = pytest.mark.unit


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_validate_says_what_the_flow_holds() -> None:
    code, out, _ = _run("flow", "validate", str(DEMO))

    assert code == 0
    assert "valid: flow coyote-demo (dev) for organisation demo: 1 account, 2 bots" in out


def _demo_copy(folder: Path, *edits: tuple[str, str]) -> Path:
    """The demo flow in ``folder``, its relative paths made absolute, with ``edits``."""
    examples = REPO / "examples"
    text = DEMO.read_text().replace("../..", str(REPO)).replace("../", f"{examples}/")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = folder / "flow.yaml"
    path.write_text(text)
    return path


def test_validate_json_lists_every_problem_with_its_position(tmp_path: Path) -> None:
    bad = _demo_copy(
        tmp_path,
        ("mode: dev", "mode: prod"),
        ("venue: demo-fx\n    currency", "venue: demo fx\n    currency"),
    )

    code, out, _ = _run("flow", "validate", str(bad), "--json")

    answer = json.loads(out)
    assert code == 2
    assert answer["valid"] is False
    assert [(p["line"], p["column"], p["path"]) for p in answer["problems"]] == [
        (15, 7, "mode"),
        (32, 12, "accounts.0.venue"),
    ]


def test_validate_prints_file_line_column_field_and_message_and_exits_2(tmp_path: Path) -> None:
    bad = _demo_copy(
        tmp_path, ("account: paper\n        capital", "account: live\n        capital")
    )

    code, _, err = _run("flow", "validate", str(bad))

    assert code == 2
    assert f"error: {bad}:77:18: modules.2.units.0.account: no account named 'live'" in err
    assert "1 problem in" in err


def test_compile_writes_compose_to_a_file_relative_to_it(tmp_path: Path) -> None:
    output = tmp_path / "deploy" / "compose.yaml"
    output.parent.mkdir()

    code, out, _ = _run("flow", "compile", str(DEMO), "--target", "compose", "-o", str(output))

    document = yaml.safe_load(output.read_text())
    assert code == 0 and "wrote" in out
    context = output.parent / document["services"]["control-plane"]["build"]["context"]
    assert context.resolve() == REPO


def test_compile_to_standard_output_and_unknown_targets() -> None:
    code, out, _ = _run("flow", "compile", str(DEMO), "-t", "compose")
    bad_code, _, err = _run("flow", "compile", str(DEMO), "-t", "swarm")

    assert code == 0 and yaml.safe_load(out)["name"] == "coyote-demo"
    assert bad_code == 2 and "--target takes one of compose, helm-values, kubernetes" in err


def test_compile_kubernetes_without_a_chart_says_where_it_looked(tmp_path: Path) -> None:
    flow = _demo_copy(tmp_path)

    code, _, err = _run(
        "flow", "compile", str(flow), "-t", "kubernetes", "--chart", str(tmp_path / "nochart")
    )
    replay_code, _, replay_err = _run("flow", "compile", str(flow), "-t", "helm-values")

    assert code == 2
    assert "no chart at" in err and "Chart.yaml" in err
    assert replay_code == 2 and "a replay feed reads files from this machine" in replay_err


def test_schema_prints_the_published_schema() -> None:
    code, out, _ = _run("flow", "schema")

    assert code == 0 and out == schema_text()


@pytest.mark.parametrize("command", ["validate", "compile", "apply", "schema"])
def test_every_flow_command_has_help_with_an_example(command: str) -> None:
    code, out, _ = _run("flow", command, "--help")

    assert code == 0 and "Example:" in out
