"""`coyote-sdk flow apply` against a real control plane (served over HTTP, on the stack's
PostgreSQL): the demo flow applied twice changes nothing the second time, a dry run shows the
field-level diff and changes nothing, and nothing the file does not name is touched unless
pruned."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coyote_sdk.cli import app
from coyote_sdk.client import ControlPlaneClient
from coyote_sdk.flow import Flow, apply, load_flow_text, plan
from coyote_sdk.flow._apply import PlanError
from tests.control_plane.conftest import ControlPlaneUnderTest, add_account

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[2] / "examples" / "flows" / "demo.yaml"


def _flow(cp: ControlPlaneUnderTest, *edits: tuple[str, str]) -> Flow:
    """The demo flow for acme, with ``edits`` (old, new) applied to its text."""
    text = DEMO.read_text().replace("organization: demo", f"organization: {cp.acme.slug}")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    # Anchored at the demo's folder, so its bot files and market data are found.
    return load_flow_text(text, path=DEMO)


@pytest.fixture
def admin(cp: ControlPlaneUnderTest) -> Iterator[ControlPlaneClient]:
    key = str(cp.acme.admin.headers["authorization"]).removeprefix("Bearer ")
    with ControlPlaneClient(cp.url, key) as client:
        yield client


def _audit(cp: ControlPlaneUnderTest) -> list[str]:
    return [e["action"] for e in cp.acme.admin.get("/v1/audit").json()]


def test_applying_the_demo_flow_twice_changes_nothing_the_second_time(
    cp: ControlPlaneUnderTest, admin: ControlPlaneClient
) -> None:
    flow = _flow(cp)

    first = apply(flow, admin)
    audit = _audit(cp)
    second = plan(flow, admin)
    apply(flow, admin, planned=second)

    assert [(c.kind, c.name, c.action) for c in first.changes] == [
        ("account", "paper", "create"),
        ("bot", "mean-reversion", "create"),
        ("bot", "market-maker", "create"),
        ("deployment", "mean-reversion", "create"),
        ("deployment", "market-maker", "create"),
    ]
    assert {c.action for c in second.changes} == {"unchanged"}, second.render()
    assert second.changed == []
    assert _audit(cp) == audit  # the second apply wrote nothing at all
    account = admin.account("paper")
    assert (account["broker"], account["venue"], account["capital"]) == (
        "paper",
        "demo-fx",
        "200000",
    )
    assert account["risk_limits"]["account"]["max_order_notional"] == "250000"
    deployment = admin.deployment("mean-reversion")
    assert (deployment["bot"], deployment["version"], deployment["params"]) == (
        "mean-reversion",
        1,
        {"window": 48},
    )
    assert (deployment["capital"], deployment["desired"]) == ("100000", "running")
    assert deployment["account_id"] == f"{cp.acme.slug}.paper"


def test_a_dry_run_shows_each_changed_field_and_applying_it_converges(
    cp: ControlPlaneUnderTest, admin: ControlPlaneClient
) -> None:
    apply(_flow(cp), admin)
    edited = _flow(
        cp,
        ("window: 48", "window: 24"),
        ('max_order_notional: "250000"', 'max_order_notional: "100000"'),
        ('capital: "200000"', 'capital: "300000"'),
        ("        state: running\n      - kind: bot", "        state: paused\n      - kind: bot"),
    )
    audit = _audit(cp)

    dry = plan(edited, admin)

    assert _audit(cp) == audit  # planning changes nothing
    changes = {(c.kind, c.name): c for c in dry.changes}
    assert changes[("account", "paper")].action == "update"
    assert [(f.field, f.before, f.after) for f in changes[("account", "paper")].fields] == [
        ("capital", "200000", "300000"),
        ("risk_limits.account.max_order_notional", "250000", "100000"),
    ]
    reversion = changes[("deployment", "mean-reversion")]
    assert [(f.field, f.before, f.after) for f in reversion.fields] == [
        ("params.window", 48, 24),
        ("state", "running", "paused"),
    ]
    assert changes[("deployment", "market-maker")].action == "unchanged"
    assert "~ deployment mean-reversion\n    params.window: 48 → 24" in dry.render()

    apply(edited, admin, planned=dry)

    deployment = admin.deployment("mean-reversion")
    assert (deployment["params"], deployment["release"], deployment["desired"]) == (
        {"window": 24},
        2,
        "paused",
    )
    assert admin.account("paper")["capital"] == "300000"
    assert {c.action for c in plan(edited, admin).changes} == {"unchanged"}


def test_objects_the_file_does_not_name_are_kept_unless_pruned(
    cp: ControlPlaneUnderTest, admin: ControlPlaneClient
) -> None:
    add_account(cp.acme.admin, "spare")
    stopped = (
        "        state: running\n      - kind: bot",
        "        state: stopped\n      - kind: bot",
    )
    apply(_flow(cp, stopped), admin)
    without_reversion = _flow(
        cp,
        stopped,
        ("      - kind: bot\n        name: mean-reversion", "      - kind: bot\n        name: mr2"),
    )

    kept = plan(without_reversion, admin)
    pruned = plan(without_reversion, admin, prune=True)

    assert ("account", "spare", "untracked") in [(c.kind, c.name, c.action) for c in kept.changes]
    assert ("deployment", "mean-reversion", "untracked") in [
        (c.kind, c.name, c.action) for c in kept.changes
    ]
    assert [(c.kind, c.name) for c in pruned.changes if c.action == "delete"] == [
        ("account", "spare"),
        ("deployment", "mean-reversion"),
    ]
    apply(without_reversion, admin, planned=pruned)
    names = sorted(d["name"] for d in admin.deployments())
    assert names == ["market-maker", "mr2"]
    assert [a["name"] for a in admin.accounts()] == ["paper"]


def test_a_field_the_api_cannot_change_is_a_conflict_and_nothing_is_applied(
    cp: ControlPlaneUnderTest, admin: ControlPlaneClient
) -> None:
    apply(_flow(cp), admin)
    moved = _flow(cp, ("venue: demo-fx\n    currency", "venue: other-fx\n    currency"))
    audit = _audit(cp)

    planned = plan(moved, admin)

    conflict = next(c for c in planned.changes if c.action == "conflict")
    assert (conflict.kind, conflict.name) == ("account", "paper")
    assert "venue of an account cannot be changed" in conflict.note
    with pytest.raises(PlanError, match="cannot be brought to the file"):
        apply(moved, admin, planned=planned)
    assert _audit(cp) == audit


def test_a_real_brokers_options_are_applied_and_a_change_of_them_is_shown_and_set(
    cp: ControlPlaneUnderTest, admin: ControlPlaneClient
) -> None:
    fx = (
        "accounts:\n",
        "accounts:\n  - name: fx\n    broker: oanda\n    venue: oanda-fx\n"
        "    credentials: {vault: coyote/accounts/oanda}\n"
        "    options: {oanda_account_id: 101-004-1435156-001}\n",
    )
    apply(_flow(cp, fx), admin)
    created = admin.account("fx")["broker_options"]
    other = _flow(cp, (fx[0], fx[1].replace("1435156-001", "1435156-002")))

    planned = plan(other, admin)
    apply(other, admin, planned=planned)

    assert created == {"oanda_account_id": "101-004-1435156-001"}
    change = next(c for c in planned.changes if (c.kind, c.name) == ("account", "fx"))
    assert change.action == "update"
    assert [(f.field, f.before, f.after) for f in change.fields] == [
        ("broker_options.oanda_account_id", "101-004-1435156-001", "101-004-1435156-002")
    ]
    assert "halt it until they are restarted" in change.note
    assert admin.account("fx")["broker_options"] == {"oanda_account_id": "101-004-1435156-002"}
    assert "account.broker_options" in _audit(cp)
    assert {c.action for c in plan(other, admin).changes} == {"unchanged"}


def test_a_flow_for_another_organisation_is_refused(
    cp: ControlPlaneUnderTest, admin: ControlPlaneClient
) -> None:
    with pytest.raises(PlanError, match="the flow is for organisation 'demo'"):
        plan(load_flow_text(DEMO.read_text(), path=DEMO), admin)


def test_the_cli_dry_run_prints_the_plan_as_json_and_apply_twice_says_unchanged(
    cp: ControlPlaneUnderTest, tmp_path: Path
) -> None:
    examples = DEMO.parents[1]
    flow_file = tmp_path / "demo.yaml"
    flow_file.write_text(
        DEMO.read_text()
        .replace("organization: demo", f"organization: {cp.acme.slug}")
        .replace("../..", str(examples.parent))
        .replace("../", f"{examples}/")
    )
    key = str(cp.acme.admin.headers["authorization"]).removeprefix("Bearer ")
    env = {
        "COYOTE_API_URL": cp.url,
        "COYOTE_API_KEY": key,
        "COYOTE_CONFIG_DIR": str(tmp_path),
        "COLUMNS": "160",
    }
    runner = CliRunner()

    dry = runner.invoke(app, ["flow", "apply", str(flow_file), "--dry-run", "--json"], env=env)

    assert dry.exit_code == 0, dry.output
    answer = json.loads(dry.stdout)
    assert answer["applied"] is False
    assert answer["summary"]["create"] == 5
    assert cp.acme.admin.get("/v1/deployments").json() == []  # the dry run changed nothing

    first = runner.invoke(app, ["flow", "apply", str(flow_file)], env=env)
    second = runner.invoke(app, ["flow", "apply", str(flow_file), "--json"], env=env)

    assert first.exit_code == 0, first.output
    assert "+ deployment mean-reversion" in first.stdout
    assert "applied 5 changes" in first.stdout
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["summary"]["unchanged"] == 5
    assert json.loads(second.stdout)["applied"] is False
