"""Canaries: a release run as a paper shadow beside a live deployment, compared, promoted or
discarded (``/v1/deployments/{name}/canary``)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy
from sqlmodel import Session, select

from coyote_control_plane.events import EVENTS_STREAM
from coyote_control_plane.models import Canary, Deployment, RuntimeStatus
from coyote_control_plane.supervisor import LocalBackend
from coyote_sdk.config import Endpoints
from tests.control_plane._trading import Trading, trading_control_plane
from tests.control_plane.conftest import (
    ControlPlaneUnderTest,
    add_account,
    buyer_bundle,
    deploy,
    error_code,
    push,
)
from tests.control_plane.test_supervisor import publish_bar, status_of, until

pytestmark = pytest.mark.integration


@pytest.fixture
def world(cp: ControlPlaneUnderTest, tmp_path: Path) -> ControlPlaneUnderTest:
    """acme: the buyer bot in two versions, ``buy`` running version 1 (quantity 3, capital
    1000) on the paper account ``paper``."""
    add_account(cp.acme.admin, venue="nasdaq")
    assert push(cp.acme.trader, buyer_bundle(tmp_path)).status_code == 201
    assert push(cp.acme.trader, buyer_bundle(tmp_path, variant="v2")).status_code == 201
    deploy(cp.acme.trader, version=1, params={"quantity": 3}, capital="1000", start=True)
    return cp


def _start(cp: ControlPlaneUnderTest, name: str = "buy", **body: Any) -> Any:
    return cp.acme.trader.post(f"/v1/deployments/{name}/canary", json=body)


def _audit(cp: ControlPlaneUnderTest, action: str) -> list[dict[str, Any]]:
    return list(cp.acme.admin.get("/v1/audit", params={"action": action}).json())


def test_a_canary_runs_the_latest_version_with_the_live_parameters_on_a_shadow_paper_account(
    world: ControlPlaneUnderTest,
) -> None:
    cp = world

    answer = _start(cp)

    assert answer.status_code == 201, answer.text
    canary = answer.json()
    assert canary["deployment"] == "buy" and canary["number"] == 1
    assert canary["name"] == "buy.canary-1"
    assert canary["runtime_id"] == f"{cp.acme.slug}.buy.canary-1"
    assert (canary["version"], canary["release"], canary["live_release"]) == (2, 2, 1)
    assert canary["params"] == {"quantity": 3}
    assert canary["account"] == "paper-shadow" and canary["capital"] == "1000"
    assert (canary["state"], canary["desired"], canary["status"]) == (
        "active",
        "running",
        "pending",
    )
    shadow = cp.acme.viewer.get("/v1/accounts/paper-shadow").json()
    assert (shadow["broker"], shadow["venue"], shadow["allocated"]) == ("paper", "nasdaq", "1000")
    # The canary's runtime is no deployment of the list, nor reachable as one.
    assert [d["name"] for d in cp.acme.viewer.get("/v1/deployments").json()] == ["buy"]
    [started] = _audit(cp, "deployment.canary_start")
    assert started["target"] == "deployment/buy"
    assert started["detail"]["release"] == 2 and started["detail"]["account"] == "paper-shadow"
    assert _audit(cp, "account.create")[0]["detail"]["shadow_of"] == "paper"
    client = redis.Redis.from_url(cp.app.state.context.endpoints.redis_url)
    try:
        published = [
            json.loads(fields[b"event"]) for _, fields in client.xrevrange(EVENTS_STREAM, count=500)
        ]
    finally:
        client.close()
    [event] = [e for e in published if e["org"] == cp.acme.slug and e["kind"] == "canary.started"]
    assert (event["deployment"], event["data"]["runtime_id"]) == ("buy", canary["runtime_id"])


def test_a_canary_takes_a_named_release_with_parameters_overridden_and_its_own_capital(
    world: ControlPlaneUnderTest,
) -> None:
    cp = world
    add_account(cp.acme.admin, name="trial", venue="nasdaq")

    answer = _start(cp, release=1, params={"quantity": 5}, account="trial", capital="250")

    assert answer.status_code == 201, answer.text
    canary = answer.json()
    assert (canary["version"], canary["params"]) == (1, {"quantity": 5})
    assert (canary["account"], canary["capital"]) == ("trial", "250")


def test_a_second_canary_is_a_conflict(world: ControlPlaneUnderTest) -> None:
    assert _start(world).status_code == 201

    again = _start(world, release=1)

    assert again.status_code == 409 and error_code(again) == "canary.exists"


def test_a_canary_on_a_real_brokers_account_or_another_venue_is_refused(
    world: ControlPlaneUnderTest,
) -> None:
    cp = world
    add_account(cp.acme.admin, name="live", broker="alpaca", venue="nasdaq")
    add_account(cp.acme.admin, name="elsewhere", venue="nyse")

    live = _start(cp, account="live")
    elsewhere = _start(cp, account="elsewhere")

    assert live.status_code == 422 and error_code(live) == "canary.account_not_paper"
    assert "alpaca" in live.json()["error"]["message"]
    assert elsewhere.status_code == 422 and error_code(elsewhere) == "canary.venue_mismatch"
    assert cp.acme.viewer.get("/v1/deployments/buy/canary").status_code == 404


def test_a_stopped_deployment_gets_no_canary(world: ControlPlaneUnderTest) -> None:
    deploy(world.acme.trader, name="idle")

    answer = _start(world, "idle")

    assert answer.status_code == 409 and error_code(answer) == "deployment.not_running"


def test_only_traders_start_canaries_and_another_organisation_sees_none(
    world: ControlPlaneUnderTest,
) -> None:
    cp = world
    viewer = cp.acme.viewer.post("/v1/deployments/buy/canary", json={})
    risk = cp.acme.risk.post("/v1/deployments/buy/canary", json={})
    assert viewer.status_code == risk.status_code == 403
    assert _start(cp).status_code == 201

    foreign = [
        cp.globex.admin.get("/v1/deployments/buy/canary"),
        cp.globex.admin.post("/v1/deployments/buy/canary", json={}),
        cp.globex.admin.post("/v1/deployments/buy/canary/promote"),
        cp.globex.admin.delete("/v1/deployments/buy/canary"),
    ]

    assert [a.status_code for a in foreign] == [404] * 4
    assert cp.acme.viewer.get("/v1/deployments/buy/canary").status_code == 200
    assert cp.acme.viewer.delete("/v1/deployments/buy/canary").status_code == 403


def test_promote_moves_the_deployment_to_the_canarys_release_and_ends_it(
    world: ControlPlaneUnderTest,
) -> None:
    cp = world
    assert _start(cp, params={"quantity": 4}).status_code == 201

    promoted = cp.acme.trader.post("/v1/deployments/buy/promote", json={"release": 1})
    assert promoted.status_code == 409  # the ordinary route: it runs release 1 already
    answer = cp.acme.trader.post("/v1/deployments/buy/canary/promote")

    assert answer.status_code == 200, answer.text
    assert (answer.json()["release"], answer.json()["params"]) == (2, {"quantity": 4})
    history = cp.acme.viewer.get("/v1/deployments/buy/history").json()
    assert [(h["release"], h["action"]) for h in history] == [(2, "promote"), (1, "deploy")]
    canary = cp.acme.viewer.get("/v1/deployments/buy/canary").json()["canary"]
    assert (canary["state"], canary["desired"]) == ("promoted", "stopped")
    assert cp.acme.viewer.get("/v1/accounts/paper-shadow").json()["allocated"] == "0"
    assert [e["detail"]["canary"] for e in _audit(cp, "deployment.canary_promote")] == [1]
    again = cp.acme.trader.post("/v1/deployments/buy/canary/promote")
    assert again.status_code == 404 and error_code(again) == "canary.not_found"
    # Rollback works from the history the promotion wrote.
    back = cp.acme.trader.post("/v1/deployments/buy/rollback")
    assert back.status_code == 200 and back.json()["release"] == 1


def test_a_canary_of_the_live_release_cannot_be_promoted(world: ControlPlaneUnderTest) -> None:
    assert _start(world, release=1, params={"quantity": 3}).json()["release"] == 1

    answer = world.acme.trader.post("/v1/deployments/buy/canary/promote")

    assert answer.status_code == 409 and error_code(answer) == "deployment.same_release"
    assert world.acme.viewer.get("/v1/deployments/buy/canary").json()["canary"]["state"] == (
        "active"
    )


def test_discard_keeps_the_record_and_the_next_canary_has_a_bot_id_of_its_own(
    world: ControlPlaneUnderTest,
) -> None:
    cp = world
    assert _start(cp).status_code == 201

    discarded = cp.acme.trader.request(
        "DELETE", "/v1/deployments/buy/canary", json={"reason": "worse fills"}
    )

    assert discarded.status_code == 200, discarded.text
    assert (discarded.json()["state"], discarded.json()["end_reason"]) == (
        "discarded",
        "worse fills",
    )
    assert cp.acme.viewer.get("/v1/deployments/buy").json()["release"] == 1
    second = _start(cp)
    assert second.status_code == 201 and second.json()["name"] == "buy.canary-2"
    first = cp.acme.viewer.get("/v1/deployments/buy/canary", params={"number": 1}).json()
    assert first["canary"]["state"] == "discarded"
    assert [e["detail"]["reason"] for e in _audit(cp, "deployment.canary_discard")] == [
        "worse fills"
    ]


def test_stopping_and_deleting_the_deployment_ends_its_canary_and_keeps_its_record(
    world: ControlPlaneUnderTest, postgres: sqlalchemy.Engine
) -> None:
    cp = world
    assert _start(cp).status_code == 201

    assert cp.acme.trader.post("/v1/deployments/buy/stop").status_code == 200

    canary = cp.acme.viewer.get("/v1/deployments/buy/canary").json()["canary"]
    assert (canary["state"], canary["desired"]) == ("ended", "stopped")
    assert canary["end_reason"] == "deployment buy stopped"
    assert len(_audit(cp, "deployment.canary_end")) == 1
    with Session(postgres) as session:  # no supervisor here: record what it would see
        for deployment in session.exec(select(Deployment)):
            deployment.status = RuntimeStatus.STOPPED
            session.add(deployment)
        session.commit()
    assert cp.acme.trader.delete("/v1/deployments/buy").status_code == 204
    with Session(postgres) as session:
        [kept] = session.exec(select(Canary)).all()
    assert (kept.deployment_id, kept.deployment_name, kept.state) == (None, "buy", "ended")


# -- ON THE REAL STACK -----------------------------------------------------------------------


@pytest.fixture
async def shadowed(
    postgres: sqlalchemy.Engine,
    unique: str,
    backend: LocalBackend,
    tmp_path: Path,
    endpoints: Endpoints,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Trading]:
    """A supervised control plane whose executor (paper broker) serves ``paper`` and the
    shadow account a canary of a deployment on it makes, ``paper-shadow``."""
    async with trading_control_plane(
        postgres,
        unique,
        backend,
        tmp_path,
        endpoints,
        monkeypatch,
        served=("paper", "paper-shadow"),
    ) as trading:
        yield trading


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
async def test_a_canary_trades_beside_its_deployment_is_compared_discarded_and_promoted(
    shadowed: Trading, tmp_path: Path
) -> None:
    trading = shadowed
    cp = trading.cp
    trader, viewer = cp.acme.trader, cp.acme.viewer
    assert push(trader, buyer_bundle(tmp_path, variant="v2")).status_code == 201
    deploy(trader, version=1, capital="10000", start=True)
    await until(lambda: status_of(cp, "buy")["status"] == "running", what="buy running")
    started = _start(cp, params={"quantity": 2})
    assert started.status_code == 201, started.text

    def compared() -> dict[str, Any]:
        answer = viewer.get("/v1/deployments/buy/canary")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    await until(lambda: compared()["canary"]["status"] == "running", what="canary running")
    live_pid = status_of(cp, "buy")["heartbeat"]["pid"]
    canary_pid = compared()["canary"]["heartbeat"]["pid"]
    assert live_pid != canary_pid and _alive(live_pid) and _alive(canary_pid)

    # Both read the same bars; each buys its own quantity, filled by the paper broker.
    minute = 1
    while not (compared()["live"]["fills"] >= 2 and compared()["shadow"]["fills"] >= 2):
        publish_bar(trading.redis, trading.venue, minute)
        minute += 1
        assert minute < 200, f"no fills on both sides: {compared()}"
        await asyncio.sleep(0.3)

    discarded = trader.delete("/v1/deployments/buy/canary")
    assert discarded.status_code == 200 and discarded.json()["state"] == "discarded"
    await until(lambda: not _alive(canary_pid), within=40, what="the canary's process ended")
    await until(lambda: compared()["canary"]["status"] == "stopped", what="canary stopped")
    assert status_of(cp, "buy")["status"] == "running"

    result = compared()
    live, shadow = result["live"], result["shadow"]
    assert (live["name"], shadow["name"]) == ("buy", "buy.canary-1")
    assert (live["broker"], shadow["broker"], result["same_fill_model"]) == ("paper",) * 2 + (True,)
    assert (live["account"], shadow["account"]) == ("paper", "paper-shadow")
    assert (live["release"], shadow["release"]) == (1, 2)
    # What the reports hold of each side since the canary started, queried independently.
    since = {"start": result["start_ms"], "end": result["end_ms"]}
    for side, bot, quantity in ((live, "buy", 1), (shadow, "buy.canary-1", 2)):
        fills = viewer.get("/v1/reports/fills", params={"bot": bot, **since, "limit": 1000})
        orders = viewer.get("/v1/reports/orders", params={"bot": bot, **since, "limit": 1000})
        assert fills.status_code == orders.status_code == 200, (fills.text, orders.text)
        fill_rows, order_rows = fills.json()["items"], orders.json()["items"]
        assert side["fills"] == len(fill_rows) >= 2
        assert side["orders"]["placed"] == len(order_rows)
        filled = sum(o["status"] == "filled" for o in order_rows)
        assert side["orders"]["filled"] == filled >= 2
        [goog] = side["symbols"]
        assert goog["symbol"] == "GOOG" and goog["fills"] == len(fill_rows)
        assert Decimal(goog["bought"]) == sum(Decimal(f["quantity"]) for f in fill_rows)
        assert {Decimal(f["quantity"]) for f in fill_rows} == {quantity}
        notional = sum(Decimal(f["quantity"]) * Decimal(f["price"]) for f in fill_rows)
        assert Decimal(side["traded_notional"]) == notional
        metrics = viewer.get("/v1/reports/metrics", params={"bot": bot, **since}).json()
        [row] = metrics["bots"]
        for field in ("realized", "unrealized", "fees", "net"):
            assert Decimal(side[field]) == Decimal(row[field]), field
    assert Decimal(shadow["capital"]) == Decimal(live["capital"]) == 10000

    # A second canary, promoted: the live deployment restarts on its release.
    second = _start(cp, params={"quantity": 2})
    assert second.status_code == 201 and second.json()["name"] == "buy.canary-2"
    await until(lambda: compared()["canary"]["status"] == "running", what="canary 2 running")
    second_pid = compared()["canary"]["heartbeat"]["pid"]
    promoted = trader.post("/v1/deployments/buy/canary/promote")
    assert promoted.status_code == 200, promoted.text
    assert (promoted.json()["release"], promoted.json()["params"]) == (2, {"quantity": 2})
    await until(lambda: not _alive(second_pid), within=40, what="canary 2's process ended")
    await until(
        lambda: (
            (status_of(cp, "buy").get("heartbeat") or {}).get("pid") not in (None, live_pid)
            and status_of(cp, "buy")["status"] == "running"
        ),
        within=60,
        what="buy restarted on release 2",
    )
    assert compared()["canary"]["state"] == "promoted"
