"""Accounts through the API: each account's document in Redis follows the account, its limits
and its deployments' capital, for the executors that take their accounts from the control
plane."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from sqlmodel import Session

from coyote_control_plane.flags import sync_accounts
from coyote_sdk import protocol
from coyote_sdk.protocol import AccountDocument
from tests.control_plane.conftest import (
    ControlPlaneUnderTest,
    add_account,
    buyer_bundle,
    deploy,
    push,
)

pytestmark = pytest.mark.integration

LIMITS = {
    "instruments": {"EURUSD": {"tick_size": "0.00001"}},
    "account": {"max_order_notional": "50000", "orders_per_second": 5},
}


@pytest.fixture
def client(cp: ControlPlaneUnderTest) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(cp.app.state.context.endpoints.redis_url)
    yield made
    made.close()


def document(client: redis.Redis, account_id: str) -> AccountDocument | None:
    raw: Any = client.hget(protocol.ACCOUNTS_KEY, account_id)
    return None if raw is None else protocol.decode(raw, AccountDocument)


def test_the_document_follows_the_account_its_limits_and_its_deployments_capital(
    cp: ControlPlaneUnderTest, client: redis.Redis, tmp_path: Path
) -> None:
    account_id = f"{cp.acme.slug}.paper"
    add_account(cp.acme.admin, venue="demo-fx", currency="EUR")
    created = document(client, account_id)
    limits = cp.acme.risk.put("/v1/accounts/paper/risk-limits", json=LIMITS)
    limited = document(client, account_id)
    push(cp.acme.trader, buyer_bundle(tmp_path))
    deploy(cp.acme.trader, capital="2500")
    deployed = document(client, account_id)
    capital = cp.acme.risk.put("/v1/deployments/buy/capital", json={"capital": "1500"})
    lowered = document(client, account_id)
    removed = cp.acme.trader.delete("/v1/deployments/buy")
    undeployed = document(client, account_id)

    assert created is not None and limited and deployed and lowered and undeployed
    assert (created.broker, created.venue, created.currency) == ("paper", "demo-fx", "EUR")
    assert created.risk == {} and created.deployments == {}
    assert limits.status_code == 200 and limited.risk == LIMITS
    assert deployed.deployments == {f"{cp.acme.slug}.buy": Decimal(2500)}
    assert capital.status_code == 200
    assert lowered.deployments == {f"{cp.acme.slug}.buy": Decimal(1500)}
    assert removed.status_code == 204 and undeployed.deployments == {}
    revisions = [d.revision for d in (created, limited, deployed, lowered, undeployed)]
    assert revisions == sorted(set(revisions))  # every change, a higher revision
    # Each change is in the audit log, as before.
    actions = {e["action"] for e in cp.acme.admin.get("/v1/audit").json()}
    assert {"account.create", "account.risk_limits", "deployment.capital"} <= actions
    # Another organisation's accounts are not written by acme's changes.
    assert not any(
        f.decode().startswith(cp.globex.slug) for f in client.hkeys(protocol.ACCOUNTS_KEY)
    )


def test_deleting_an_account_removes_its_document(
    cp: ControlPlaneUnderTest, client: redis.Redis
) -> None:
    add_account(cp.acme.admin, name="spare")
    assert document(client, f"{cp.acme.slug}.spare") is not None

    deleted = cp.acme.admin.delete("/v1/accounts/spare")

    assert deleted.status_code == 204
    assert document(client, f"{cp.acme.slug}.spare") is None


def test_an_unreadable_or_newer_stored_document_is_written_above_its_revision(
    cp: ControlPlaneUnderTest, client: redis.Redis
) -> None:
    account_id = f"{cp.acme.slug}.paper"
    add_account(cp.acme.admin)
    first = document(client, account_id)
    assert first is not None

    client.hset(protocol.ACCOUNTS_KEY, account_id, b'{"v": 1, "broken": true}')
    with Session(cp.engine) as session:
        rewrote = sync_accounts(session, client)
        session.commit()
    healed = document(client, account_id)
    # The same content with a revision from elsewhere (a database restored from a backup):
    # kept as it is, and the next change continues above it.
    assert healed is not None
    client.hset(
        protocol.ACCOUNTS_KEY,
        account_id,
        protocol.encode(msgspec.structs.replace(healed, revision=90)),
    )
    with Session(cp.engine) as session:
        untouched = sync_accounts(session, client)
        session.commit()
    cp.acme.risk.put("/v1/accounts/paper/risk-limits", json=LIMITS)
    changed = document(client, account_id)

    assert rewrote and healed.revision > first.revision and healed.risk == {}
    assert not untouched
    assert changed is not None and changed.revision == 91 and changed.risk == LIMITS


def test_a_paper_accounts_fill_model_reaches_its_document_and_a_live_account_refuses_one(
    cp: ControlPlaneUnderTest, client: redis.Redis
) -> None:
    account_id = f"{cp.acme.slug}.paper"
    add_account(cp.acme.admin, venue="demo-fx", fill_model={"fee_bps": "1"})
    created = document(client, account_id)
    model = {"slippage_bps": "2.5", "fee_bps": 1, "latency_ms": 20, "liquidity": "50000"}
    changed = cp.acme.admin.put("/v1/accounts/paper/fill-model", json=model)
    modelled = document(client, account_id)
    by_a_trader = cp.acme.trader.put("/v1/accounts/paper/fill-model", json=model)
    negative = cp.acme.admin.put("/v1/accounts/paper/fill-model", json={"fee_bps": "-1"})
    unknown = cp.acme.admin.put("/v1/accounts/paper/fill-model", json={"fees": "1"})
    add_account(cp.acme.admin, "live", broker="alpaca", credentials_path="acme/live")
    on_live = cp.acme.admin.put("/v1/accounts/live/fill-model", json=model)
    created_live = cp.acme.admin.post(
        "/v1/accounts",
        json={"name": "live2", "broker": "oanda", "venue": "fx", "fill_model": model},
    )
    cleared = cp.acme.admin.put("/v1/accounts/paper/fill-model", json={})
    plain = document(client, account_id)

    assert created is not None and created.fill_model == protocol.PaperFillModel(fee_bps=Decimal(1))
    assert changed.status_code == 200, changed.text
    assert changed.json()["fill_model"] == model
    assert modelled is not None and modelled.fill_model == protocol.PaperFillModel(
        slippage_bps=Decimal("2.5"), fee_bps=Decimal(1), latency_ms=20, liquidity=Decimal(50000)
    )
    assert by_a_trader.status_code == 403
    for refused in (negative, unknown):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "fill_model.invalid"
    assert "fee_bps" in negative.json()["error"]["message"]
    for refused in (on_live, created_live):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "fill_model.not_paper"
    assert cleared.status_code == 200 and plain is not None
    assert plain.fill_model == protocol.PaperFillModel()  # every default: no slippage nor fee
    actions = [e["action"] for e in cp.acme.admin.get("/v1/audit").json()]
    assert actions.count("account.fill_model") == 2


def test_a_real_brokers_options_reach_its_document_and_a_bad_key_is_refused_naming_it(
    cp: ControlPlaneUnderTest, client: redis.Redis
) -> None:
    account_id = f"{cp.acme.slug}.fx"
    add_account(
        cp.acme.admin,
        "fx",
        broker="oanda",
        venue="oanda-fx",
        credentials_path="acme/oanda",
        broker_options={"oanda_account_id": "101-004-1435156-001"},
    )
    created = document(client, account_id)
    live = {"environment": "live", "oanda_account_id": "101-004-1435156-002"}
    changed = cp.acme.admin.put("/v1/accounts/fx/broker-options", json=live)
    read_back = cp.acme.admin.get("/v1/accounts/fx")
    set_live = document(client, account_id)
    by_risk = cp.acme.risk.put("/v1/accounts/fx/broker-options", json={"environment": "live"})
    typo = cp.acme.admin.put("/v1/accounts/fx/broker-options", json={"enviroment": "live"})
    alpaca_word = cp.acme.admin.put("/v1/accounts/fx/broker-options", json={"environment": "paper"})
    not_text = cp.acme.admin.put("/v1/accounts/fx/broker-options", json={"environment": 1})
    add_account(cp.acme.admin)
    on_paper = cp.acme.admin.put("/v1/accounts/paper/broker-options", json=live)
    created_bad = cp.acme.admin.post(
        "/v1/accounts",
        json={
            "name": "us",
            "broker": "alpaca",
            "venue": "us",
            "broker_options": {"oanda_account_id": "101-004-1-001"},
        },
    )
    after_refusals = document(client, account_id)

    assert created is not None and created.broker_options == {
        "oanda_account_id": "101-004-1435156-001"
    }
    assert changed.status_code == 200, changed.text
    assert changed.json()["broker_options"] == live == read_back.json()["broker_options"]
    assert set_live is not None and set_live.broker_options == live
    assert set_live.revision > created.revision
    assert by_risk.status_code == 403  # admin only, like the account's other broker settings
    for refused, says in [
        (
            typo,
            "broker_options.enviroment: not an option of oanda accounts; expected one of "
            "['environment', 'oanda_account_id']",
        ),
        (alpaca_word, "broker_options.environment: 'paper' is not one of ['practice', 'live']"),
        (not_text, "broker_options.environment: 1 is not a string"),
        (created_bad, "broker_options.oanda_account_id: not an option of alpaca accounts"),
    ]:
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["field"]) == ("broker_options.invalid", "broker_options")
        assert error["message"].startswith(says), error["message"]
    assert on_paper.status_code == 422, on_paper.text
    assert on_paper.json()["error"]["code"] == "broker_options.not_for_paper"
    # Nothing refused reached the document; the one change is audited with before and after.
    assert after_refusals == set_live
    entries = [e for e in cp.acme.admin.get("/v1/audit").json() if e["target"] == "account/fx"]
    (audited,) = [e for e in entries if e["action"] == "account.broker_options"]
    assert audited["detail"] == {
        "before": {"oanda_account_id": "101-004-1435156-001"},
        "after": live,
    }
