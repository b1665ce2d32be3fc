"""Deployments through the API: desired state, flags in Redis, releases, capital, halts."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from coyote_sdk import protocol
from coyote_sdk.control import read_control_flag
from coyote_sdk.protocol import BotState, Halt
from tests.control_plane.conftest import (
    ControlPlaneUnderTest,
    add_account,
    buyer_bundle,
    deploy,
    error_code,
    push,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def ready(cp: ControlPlaneUnderTest, tmp_path: Path) -> ControlPlaneUnderTest:
    """acme has an account ``paper`` (capital 10000) and the bot ``buyer``."""
    add_account(cp.acme.admin, capital="10000")
    push(cp.acme.trader, buyer_bundle(tmp_path))
    return cp


def _flag(cp: ControlPlaneUnderTest, runtime_id: str) -> protocol.ControlFlag | None:
    client = redis.Redis.from_url(cp.app.state.context.endpoints.redis_url)
    try:
        return read_control_flag(client, runtime_id)
    finally:
        client.close()


def test_deploy_then_start_pause_resume_stop_write_the_flag(ready: ControlPlaneUnderTest) -> None:
    made = deploy(ready.acme.trader, params={"quantity": 2}, capital="2500")
    runtime_id = made["runtime_id"]
    assert runtime_id == f"{ready.acme.slug}.buy"
    assert made["account_id"] == f"{ready.acme.slug}.paper"
    assert (made["desired"], made["status"], made["params"]) == (
        "stopped",
        "stopped",
        {"quantity": 2},
    )
    assert _flag(ready, runtime_id).desired is BotState.STOPPED  # type: ignore[union-attr]

    generations = []
    for action, desired in [
        ("start", "running"),
        ("pause", "paused"),
        ("resume", "running"),
        ("stop", "stopped"),
    ]:
        answer = ready.acme.trader.post(f"/v1/deployments/buy/{action}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["desired"] == desired
        flag = _flag(ready, runtime_id)
        assert flag is not None and flag.desired.value == desired
        generations.append(flag.generation)
    assert generations == sorted(generations) and len(set(generations)) == 4

    actions = [
        e["action"]
        for e in ready.acme.admin.get("/v1/audit", params={"target": "deployment/buy"}).json()
    ]
    assert actions == [
        "deployment.stop",
        "deployment.resume",
        "deployment.pause",
        "deployment.start",
        "deployment.create",
    ]


def test_an_impossible_transition_is_a_conflict(ready: ControlPlaneUnderTest) -> None:
    deploy(ready.acme.trader)
    answer = ready.acme.trader.post("/v1/deployments/buy/pause")
    assert answer.status_code == 409 and error_code(answer) == "deployment.invalid_transition"


def test_bad_parameters_at_deploy_time_name_the_parameter(ready: ControlPlaneUnderTest) -> None:
    answer = ready.acme.trader.post(
        "/v1/deployments",
        json={"name": "buy", "bot": "buyer", "account": "paper", "params": {"quantity": "many"}},
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "params.quantity"
    assert ready.acme.viewer.get("/v1/deployments").json() == []


def test_unknown_bot_or_account_is_404(ready: ControlPlaneUnderTest) -> None:
    no_bot = ready.acme.trader.post(
        "/v1/deployments", json={"name": "x", "bot": "nope", "account": "paper"}
    )
    no_account = ready.acme.trader.post(
        "/v1/deployments", json={"name": "x", "bot": "buyer", "account": "nope"}
    )
    assert (no_bot.status_code, error_code(no_bot)) == (404, "bot.not_found")
    assert (no_account.status_code, error_code(no_account)) == (404, "account.not_found")


def test_promote_and_rollback_in_one_call(ready: ControlPlaneUnderTest, tmp_path: Path) -> None:
    deploy(ready.acme.trader, params={"quantity": 1})
    push(ready.acme.trader, buyer_bundle(tmp_path, variant="v2"))
    second = ready.acme.trader.post("/v1/bots/buyer/releases", json={"params": {"quantity": 3}})
    assert second.json()["version"] == 2

    promoted = ready.acme.trader.post("/v1/deployments/buy/promote", json={"release": 2})
    back = ready.acme.trader.post("/v1/deployments/buy/rollback")
    forward_again = ready.acme.trader.post("/v1/deployments/buy/rollback", json={"release": 2})

    assert promoted.json()["release"] == 2 and promoted.json()["params"] == {"quantity": 3}
    assert back.json()["release"] == 1 and back.json()["version"] == 1
    assert forward_again.json()["release"] == 2
    history = ready.acme.viewer.get("/v1/deployments/buy/history").json()
    assert [(h["release"], h["action"]) for h in history] == [
        (2, "rollback"),
        (1, "rollback"),
        (2, "promote"),
        (1, "deploy"),
    ]


def test_rollback_without_an_earlier_release_is_a_conflict(ready: ControlPlaneUnderTest) -> None:
    deploy(ready.acme.trader)
    answer = ready.acme.trader.post("/v1/deployments/buy/rollback")
    assert answer.status_code == 409 and error_code(answer) == "deployment.no_previous_release"


def test_capital_allocations_cannot_exceed_the_account(ready: ControlPlaneUnderTest) -> None:
    deploy(ready.acme.trader, name="one", capital="6000")
    over = ready.acme.trader.post(
        "/v1/deployments",
        json={"name": "two", "bot": "buyer", "account": "paper", "capital": "4000.01"},
    )
    fits = deploy(ready.acme.trader, name="two", capital="4000")
    raise_one = ready.acme.risk.put("/v1/deployments/one/capital", json={"capital": "6001"})
    shrink_account = ready.acme.risk.put("/v1/accounts/paper/capital", json={"capital": "9000"})

    assert over.status_code == 422 and error_code(over) == "capital.exceeded"
    assert fits["capital"] == "4000"
    assert raise_one.status_code == 422
    assert (
        shrink_account.status_code == 422
        and error_code(shrink_account) == "capital.below_allocated"
    )
    assert ready.acme.viewer.get("/v1/accounts/paper").json()["allocated"] == "10000"


def test_a_kill_switch_pauses_bots_and_halts_the_account_until_risk_resets_it(
    ready: ControlPlaneUnderTest,
) -> None:
    made = deploy(ready.acme.trader, start=True)
    account_id = made["account_id"]
    tripped = ready.acme.trader.post(
        "/v1/kill-switches", json={"scope": "account", "target": "paper", "reason": "fat finger"}
    )
    assert tripped.status_code == 201, tripped.text
    flag = _flag(ready, made["runtime_id"])
    assert (
        flag is not None and flag.desired is BotState.PAUSED and "fat finger" in (flag.reason or "")
    )
    client = redis.Redis.from_url(ready.app.state.context.endpoints.redis_url)
    raw = client.hget(protocol.HALTS_KEY, f"account:{account_id}")
    assert raw is not None and protocol.decode(raw, Halt).reason == "fat finger"
    assert ready.acme.viewer.get("/v1/accounts/paper").json()["halted"] is True

    by_trader = ready.acme.trader.post(f"/v1/kill-switches/{tripped.json()['id']}/reset")
    by_risk = ready.acme.risk.post(f"/v1/kill-switches/{tripped.json()['id']}/reset")

    assert by_trader.status_code == 403
    assert by_risk.status_code == 200
    assert client.hget(protocol.HALTS_KEY, f"account:{account_id}") is None
    assert _flag(ready, made["runtime_id"]).desired is BotState.RUNNING  # type: ignore[union-attr]
    client.close()


def test_an_organisation_kill_switch_halts_every_account(ready: ControlPlaneUnderTest) -> None:
    add_account(ready.acme.admin, name="live", broker="alpaca", credentials_path="brokers/alpaca")
    answer = ready.acme.risk.post(
        "/v1/kill-switches", json={"scope": "organization", "reason": "market halt"}
    )
    assert answer.status_code == 201
    client = redis.Redis.from_url(ready.app.state.context.endpoints.redis_url)
    fields = {f.decode() for f in client.hkeys(protocol.HALTS_KEY)}
    client.close()
    assert {f"account:{ready.acme.slug}.paper", f"account:{ready.acme.slug}.live"} <= fields
    assert not any(ready.globex.slug in field for field in fields)


def test_a_deployment_is_deleted_only_once_its_runtime_is_seen_stopped(
    ready: ControlPlaneUnderTest,
) -> None:
    deploy(ready.acme.trader, start=True)
    refused = ready.acme.trader.delete("/v1/deployments/buy")
    assert refused.status_code == 409
    ready.acme.trader.post("/v1/deployments/buy/stop")
    # No supervisor runs here to see it stop: the status stays as the API left it.
    assert ready.acme.trader.delete("/v1/deployments/buy").status_code == 409


def test_cancel_orders_on_heartbeat_loss_is_on_by_default_and_settable(
    ready: ControlPlaneUnderTest,
) -> None:
    default = deploy(ready.acme.trader)
    kept = deploy(ready.acme.trader, name="gtc", cancel_orders_on_heartbeat_loss=False)

    left = ready.acme.trader.patch(
        "/v1/deployments/gtc", json={"cancel_orders_on_heartbeat_loss": None}
    )
    turned_on = ready.acme.trader.patch(
        "/v1/deployments/gtc", json={"cancel_orders_on_heartbeat_loss": True}
    )

    assert default["cancel_orders_on_heartbeat_loss"] is True
    assert kept["cancel_orders_on_heartbeat_loss"] is False
    assert left.status_code == 200
    assert left.json()["cancel_orders_on_heartbeat_loss"] is False  # null leaves it
    assert turned_on.status_code == 200
    assert turned_on.json()["cancel_orders_on_heartbeat_loss"] is True
    assert (
        ready.acme.viewer.get("/v1/deployments/gtc").json()["cancel_orders_on_heartbeat_loss"]
        is True
    )
    audit = ready.acme.admin.get("/v1/audit", params={"action": "deployment.update"}).json()
    assert [(e["target"], e["detail"]) for e in audit] == [
        (
            "deployment/gtc",
            {
                "before": {"cancel_orders_on_heartbeat_loss": False},
                "after": {"cancel_orders_on_heartbeat_loss": True},
            },
        )
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cancel_orders_on_heartbeat_loss": "sometimes"}, "cancel_orders_on_heartbeat_loss"),
        ({"cancel_orders_on_heartbeat": False}, "cancel_orders_on_heartbeat"),
    ],
)
def test_a_bad_deployment_update_is_refused_naming_the_field(
    ready: ControlPlaneUnderTest, body: dict[str, object], field: str
) -> None:
    deploy(ready.acme.trader)

    answer = ready.acme.trader.patch("/v1/deployments/buy", json=body)

    assert answer.status_code == 422 and answer.json()["error"]["field"] == f"body.{field}"
    assert (
        ready.acme.viewer.get("/v1/deployments/buy").json()["cancel_orders_on_heartbeat_loss"]
        is True
    )
