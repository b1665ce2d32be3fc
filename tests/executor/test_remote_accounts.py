"""Accounts from the control plane: documents in Redis reach a running executor.

The executors here take their accounts from account documents, either written by a control
plane of the test's own (its organisation's ids are unique) or, for documents no control plane
would write, in a hash and channel of the test's own.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import hvac
import msgspec
import pytest
import redis
import respx
import sqlalchemy
from redis.asyncio import Redis

from coyote_executor.brokers import AlpacaBroker, OandaBroker, alpaca, oanda
from coyote_executor.cli import serve
from coyote_executor.config import Settings
from coyote_executor.remote_accounts import (
    RemoteAccounts,
    account_from_document,
    read_document,
)
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import AccountDocument, ExecType, ExecutionReport
from tests.control_plane.conftest import (
    ControlPlaneUnderTest,
    add_account,
    buyer_bundle,
    control_plane,
    deploy,
    push,
)
from tests.executor._harness import ExecutorHarness, risk_section

integration = pytest.mark.integration


def doc(account_id: str, revision: int = 1, **fields: Any) -> AccountDocument:
    fields.setdefault("venue", "demo")
    fields.setdefault("broker", "paper")
    return AccountDocument(account_id=account_id, revision=revision, ts_ms=1, **fields)


async def until(condition: Callable[[], Any], within: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + within
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        await asyncio.sleep(0.02)
    return found


def on(account_id: str, intent: protocol.NewOrder) -> protocol.NewOrder:
    """``intent`` for another account."""
    return msgspec.structs.replace(intent, account_id=account_id)


async def answer(ex: ExecutorHarness, intent: protocol.OrderIntent) -> ExecutionReport:
    """The first report caused by ``intent``."""
    reports = await ex.reports_until(lambda rs: any(r.intent_id == intent.intent_id for r in rs))
    return next(r for r in reports if r.intent_id == intent.intent_id)


# -- documents -------------------------------------------------------------------------------


@pytest.mark.unit
def test_each_deployments_capital_becomes_its_bots_capital_limit_the_stricter_winning() -> None:
    document = doc(
        "acme.paper",
        risk={"bots": {"acme.a": {"capital_allocation": "1000", "orders_per_second": 2}}},
        deployments={"acme.a": Decimal(5000), "acme.b": Decimal(2500), "acme.c": Decimal(0)},
    )

    config = account_from_document(document)

    bots = config.risk.bots
    assert bots["acme.a"].capital_allocation == 1000 and bots["acme.a"].orders_per_second == 2
    assert bots["acme.b"].capital_allocation == 2500
    assert "acme.c" not in bots  # 0: no allocation was given
    assert (config.broker, config.venue, config.paper and config.paper.venue) == (
        "paper",
        "demo",
        "demo",
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("acme.paper", b"{}", "invalid JSON: Object missing required field"),
        ("acme.paper", b"nope", "malformed JSON: not a JSON object"),
        ("acme.other", protocol.encode(doc("acme.paper")), "is of account 'acme.paper'"),
        (
            "acme.paper",
            protocol.encode(doc("acme.paper", risk={"account": {"max_notional": "5"}})),
            "acme.paper: risk: account.max_notional is not a setting",
        ),
        (
            "acme.paper",
            protocol.encode(doc("acme.paper", broker="alpaca")),
            "needs a credentials path",
        ),
        (
            "acme.live",
            msgspec.json.encode(
                {
                    **msgspec.to_builtins(doc("acme.live", broker="alpaca", credentials_path="x")),
                    "broker_options": {"enviroment": "live"},
                }
            ),
            "broker_options.enviroment: not an option of alpaca accounts; expected one of "
            "['environment']",
        ),
        (
            "acme.paper",
            msgspec.json.encode(
                {**msgspec.to_builtins(doc("acme.paper")), "broker_options": {"environment": "x"}}
            ),
            "broker_options.environment: a paper account takes no broker options",
        ),
    ],
)
def test_a_document_that_cannot_be_traded_by_is_refused_with_why(
    field: str, value: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        read_document(field, value)


# -- an executor on documents of the test's own -----------------------------------------------


class Documents:
    """Writes account documents as the control plane does, in a hash of the test's own."""

    def __init__(self, client: redis.Redis, unique: str) -> None:
        self.client = client
        self.key = self.channel = f"test:{unique}:accounts"

    def put(self, document: AccountDocument | bytes, account_id: str | None = None) -> None:
        if isinstance(document, AccountDocument):
            account_id, value = document.account_id, protocol.encode(document)
        else:
            value = document
        assert account_id is not None
        self.client.hset(self.key, account_id, value)
        self.client.publish(self.channel, account_id)

    def remove(self, account_id: str) -> None:
        self.client.hdel(self.key, account_id)
        self.client.publish(self.channel, account_id)


@pytest.fixture
async def two(endpoints: Endpoints, unique: str, tmp_path: Path) -> AsyncIterator[Any]:
    """An executor on two paper accounts from documents: ``ex.account`` and ``other``."""
    harness = ExecutorHarness(endpoints, unique, tmp_path)
    documents = Documents(harness.sync_redis, unique)
    other = f"acct2-{unique}"
    for account_id in (harness.account, other):
        documents.put(doc(account_id, venue=harness.venue, risk=risk_section()))
    await harness.setup()
    harness.trade("EURUSD", "1.10000")
    await harness.start_remote_executor("*", key=documents.key, channel=documents.channel)
    yield harness, documents, other
    harness.sync_redis.delete(
        documents.key, *harness.sync_redis.keys(f"coyote:paper:acct*{unique}:*")
    )
    await harness.close()


@integration
async def test_a_broken_document_halts_its_account_while_the_others_keep_trading(
    two: Any,
) -> None:
    ex, documents, other = two
    executor = ex.executor
    documents.put(b'{"v": 1, "account_id": "oops"}', ex.account)
    await until(lambda: ex.account in executor.config_halts, what="the account halted")

    refused, traded = ex.limit("1.10000"), on(other, ex.limit("1.10000"))
    await ex.send(refused)
    await ex.send(traded, key=other)
    refusal, trade = await answer(ex, refused), await answer(ex, traded)

    assert refusal.reject_code == "risk.halted"
    assert "account document is invalid" in (refusal.reject_reason or "")
    assert trade.exec_type is not ExecType.REJECTED
    alerts: Any = ex.sync_redis.xrevrange(protocol.ALERTS_STREAM, count=200)
    assert any(
        decoded.kind == "account.config_halted" and decoded.account_id == ex.account
        for _, fields in alerts
        if (decoded := protocol.decode(fields[b"alert"], protocol.Alert))
    )

    # A valid document lifts it; a removed one halts it again.
    documents.put(doc(ex.account, revision=2, venue=ex.venue, risk=risk_section()))
    await until(lambda: ex.account not in executor.config_halts, what="the halt lifted")
    again = ex.limit("1.10001")
    await ex.send(again)
    assert (await answer(ex, again)).exec_type is not ExecType.REJECTED
    documents.remove(ex.account)
    await until(lambda: ex.account in executor.config_halts, what="halted once removed")
    gone = ex.limit("1.10002")
    await ex.send(gone)

    removed = await answer(ex, gone)
    assert removed.reject_code == "risk.halted"
    assert "removed" in (removed.reject_reason or "")


@integration
async def test_limits_and_a_new_account_apply_without_a_restart_and_old_revisions_do_not(
    two: Any, unique: str
) -> None:
    ex, documents, _ = two
    executor = ex.executor
    first = ex.limit("1.10000")  # notional 1,100
    await ex.send(first)
    assert (await answer(ex, first)).exec_type is not ExecType.REJECTED

    lowered = risk_section(max_order_notional="1000")
    documents.put(doc(ex.account, revision=5, venue=ex.venue, risk=lowered))
    await until(lambda: executor._configs[ex.account].risk.account.max_order_notional == 1000)
    documents.put(doc(ex.account, revision=4, venue=ex.venue, risk=risk_section()))
    third = f"acct3-{unique}"
    documents.put(doc(third, venue=ex.venue, risk=risk_section()))
    await until(lambda: third in executor._accounts, what="the new account owned")
    again, new = ex.limit("1.10000"), on(third, ex.limit("1.10000"))
    await ex.send(again)
    await ex.send(new, key=third)

    refused = await answer(ex, again)
    assert refused.reject_code == "risk.max_order_notional"  # revision 4 was not applied
    assert (await answer(ex, new)).exec_type is not ExecType.REJECTED


@integration
async def test_a_paper_accounts_fill_model_changes_without_a_restart(two: Any) -> None:
    ex, documents, _ = two
    executor = ex.executor
    plain = ex.order(quantity="1000")
    await ex.send(plain)
    before = await ex.terminal_reports([plain.intent_id])

    model = protocol.PaperFillModel(slippage_bps=Decimal(5), fee_bps=Decimal(10))
    documents.put(
        doc(ex.account, revision=7, venue=ex.venue, risk=risk_section(), fill_model=model)
    )
    await until(lambda: executor._configs[ex.account].paper.fee_bps == 10, what="applied")
    costly = ex.order(quantity="1000")
    await ex.send(costly)
    after = await ex.terminal_reports([costly.intent_id])

    (plain_fill,) = [r for r in before[plain.intent_id] if r.exec_type is ExecType.TRADE]
    (costly_fill,) = [r for r in after[costly.intent_id] if r.exec_type is ExecType.TRADE]
    assert (plain_fill.last_price, plain_fill.fee) == (Decimal("1.10000"), Decimal(0))
    # A buy pays 5 bps over the last price, and 10 bps of the notional as its fee.
    assert costly_fill.last_price == Decimal("1.10000") * Decimal("1.0005")
    assert costly_fill.fee == Decimal(1000) * costly_fill.last_price * Decimal("0.001")
    assert ex.account not in executor.config_halts  # applied live, not halted for a restart


@pytest.mark.unit
def test_a_fill_model_is_for_paper_accounts_and_its_values_are_checked() -> None:
    with pytest.raises(ValueError, match="a fill model is for paper accounts"):
        doc(
            "acme.live", broker="alpaca", credentials_path="x", fill_model=protocol.PaperFillModel()
        )
    with pytest.raises(ValueError, match="fee_bps"):
        protocol.PaperFillModel(fee_bps=Decimal(-1))
    config = account_from_document(
        doc("acme.paper", fill_model=protocol.PaperFillModel(latency_ms=20, liquidity=Decimal(5)))
    )
    assert config.paper is not None
    assert (config.paper.latency_ms, config.paper.liquidity) == (20, Decimal(5))


@integration
async def test_the_executor_waits_for_a_first_document(
    endpoints: Endpoints, unique: str, redis_ts: tuple[redis.Redis, str]
) -> None:
    client, prefix = redis_ts
    reader = Redis.from_url(endpoints.redis_url)
    source = RemoteAccounts(
        reader,
        vault=None,
        refresh_s=0.05,
        key=f"{prefix}accounts",
        channel=f"{prefix}accounts",
    )
    stop = asyncio.Event()
    waiting = asyncio.create_task(source.initial(stop))
    await asyncio.sleep(0.3)
    assert not waiting.done()

    client.hset(f"{prefix}accounts", "acme.bad", b"{}")
    client.hset(f"{prefix}accounts", "acme.good", protocol.encode(doc("acme.good")))
    found = await asyncio.wait_for(waiting, 10)
    await reader.aclose()

    assert found is not None
    accounts, brokers = found
    assert set(accounts) == set(brokers) == {"acme.good"}


# -- an executor on a control plane's documents ----------------------------------------------


@pytest.fixture
async def cp_ex(
    postgres: sqlalchemy.Engine, unique: str, endpoints: Endpoints, tmp_path: Path
) -> AsyncIterator[tuple[ControlPlaneUnderTest, ExecutorHarness]]:
    """A control plane with the account ``paper`` (max order notional 5,000) and the bot
    ``buy`` deployed on it with 5,000 of capital; an executor on its documents."""
    cps: Iterator[ControlPlaneUnderTest] = control_plane(postgres, unique)
    cp = next(cps)
    harness = ExecutorHarness(endpoints, unique, tmp_path)
    try:
        add_account(cp.acme.admin, venue=harness.venue)
        limits = risk_section(max_order_notional="5000")
        assert cp.acme.risk.put("/v1/accounts/paper/risk-limits", json=limits).status_code == 200
        push(cp.acme.trader, buyer_bundle(tmp_path))
        deploy(cp.acme.trader, capital="5000")
        harness.account = f"{cp.acme.slug}.paper"
        await harness.setup()
        harness.trade("EURUSD", "1.10000")
        await harness.start_remote_executor(f"{cp.acme.slug}.*")
        yield cp, harness
    finally:
        await harness.close()
        next(cps, None)  # the control plane's clean-up


@integration
async def test_a_limit_lowered_in_the_control_plane_refuses_the_next_identical_intent(
    cp_ex: tuple[ControlPlaneUnderTest, ExecutorHarness],
) -> None:
    cp, ex = cp_ex
    executor = ex.executor
    assert executor is not None
    first = ex.limit("1.10000")  # notional 1,100
    await ex.send(first)
    assert (await answer(ex, first)).exec_type is not ExecType.REJECTED

    lowered = cp.acme.risk.put(
        "/v1/accounts/paper/risk-limits", json=risk_section(max_order_notional="1000")
    )
    assert lowered.status_code == 200
    await until(lambda: executor._configs[ex.account].risk.account.max_order_notional == 1000)
    second = ex.limit("1.10000")
    await ex.send(second)
    refused = await answer(ex, second)

    assert refused.reject_code == "risk.max_order_notional"
    assert ex.executor is executor and not any(t.done() for t, _ in ex._tasks)  # no restart
    slot = executor._accounts[ex.account].engine.slot("bot-a", "EURUSD")
    assert slot.position + slot.open_buy == 1000  # the first order is still counted


@integration
async def test_a_deployments_capital_lowered_refuses_its_bots_orders_beyond_it(
    cp_ex: tuple[ControlPlaneUnderTest, ExecutorHarness],
) -> None:
    cp, ex = cp_ex
    executor = ex.executor
    assert executor is not None
    bot = f"{cp.acme.slug}.buy"
    first = ex.limit("1.10000", bot_id=bot)  # 1,100 of its 5,000
    await ex.send(first)
    assert (await answer(ex, first)).exec_type is not ExecType.REJECTED

    lowered = cp.acme.risk.put("/v1/deployments/buy/capital", json={"capital": "1500"})
    assert lowered.status_code == 200
    await until(
        lambda: executor._configs[ex.account].risk.bots[bot].capital_allocation == 1500,
        what="the allocation applied",
    )
    beyond = ex.limit("1.10000", bot_id=bot)  # 1,100 + 1,100 > 1,500
    within = ex.limit("1.10000", quantity="300", bot_id=bot)  # 1,100 + 330
    other_bot = ex.limit("1.10000", bot_id=f"{cp.acme.slug}.other")
    await ex.send(beyond, within, other_bot)

    assert (await answer(ex, beyond)).reject_code == "risk.capital_allocation"
    assert (await answer(ex, within)).exec_type is not ExecType.REJECTED
    assert (await answer(ex, other_bot)).exec_type is not ExecType.REJECTED


@integration
async def test_serve_from_the_control_plane_waits_for_documents_and_stops_cleanly(
    unique: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        accounts_source="control-plane",
        accounts_match=f"nobody-{unique}.*",
        database_url=f"sqlite:///{tmp_path / 'executor.db'}",
        halts_refresh_s=0.05,
    )
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="coyote.executor")

    running = asyncio.create_task(serve(settings, stop))
    await until(lambda: "waiting for account documents" in caplog.text, what="the log line")
    assert not running.done()
    stop.set()

    await asyncio.wait_for(running, 10)
    assert f"nobody-{unique}.*" in caplog.text


# -- real brokers' options -------------------------------------------------------------------

OANDA_ID = "101-004-1435156-001"


def credentials(vault: tuple[hvac.Client, str]) -> tuple[str, str]:
    """Vault paths of an Alpaca and an OANDA secret, written in the test's own Vault path."""
    client, prefix = vault
    secrets = {
        f"{prefix}/alpaca": {"api_key_id": "AKTEST", "api_secret_key": "not-a-real-secret"},
        f"{prefix}/oanda": {"token": "not-a-real-token"},
    }
    for path, secret in secrets.items():
        client.secrets.kv.v2.create_or_update_secret(path=path, secret=secret, mount_point="secret")
    return f"{prefix}/alpaca", f"{prefix}/oanda"


@pytest.mark.unit
def test_a_real_brokers_options_become_its_adapter_options() -> None:
    document = doc(
        "acme.fx",
        broker="oanda",
        credentials_path="coyote/oanda",
        broker_options={"environment": "live", "oanda_account_id": OANDA_ID},
    )

    config = account_from_document(document)

    assert dict(config.options) == {"environment": "live", "oanda_account_id": OANDA_ID}
    assert account_from_document(doc("acme.paper")).options == {}


@integration
async def test_brokers_built_from_documents_trade_the_environment_and_oanda_account_they_name(
    endpoints: Endpoints,
    redis_ts: tuple[redis.Redis, str],
    vault: tuple[hvac.Client, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, prefix = redis_ts
    alpaca_path, oanda_path = credentials(vault)
    key = f"{prefix}accounts"
    for document in (
        doc(
            "acme.us",
            broker="alpaca",
            credentials_path=alpaca_path,
            broker_options={"environment": "live"},
        ),
        doc(
            "acme.fx",
            broker="oanda",
            credentials_path=oanda_path,
            broker_options={"oanda_account_id": OANDA_ID},  # practice, the default
        ),
        doc("acme.fx2", broker="oanda", credentials_path=oanda_path),  # no v20 account id
    ):
        client.hset(key, document.account_id, protocol.encode(document))
    reader = Redis.from_url(endpoints.redis_url)
    source = RemoteAccounts(reader, vault=vault[0], refresh_s=0.05, key=key, channel=key)
    caplog.set_level(logging.ERROR, logger="coyote.executor")
    found = await asyncio.wait_for(source.initial(asyncio.Event()), 10)
    assert found is not None
    accounts, brokers = found
    try:
        with respx.mock(assert_all_called=True) as api:
            live_alpaca = api.get(f"{alpaca.LIVE_URL}/v2/positions").respond(200, json=[])
            practice_oanda = api.get(
                f"{oanda.PRACTICE_URL}/v3/accounts/{OANDA_ID}/openPositions"
            ).respond(200, json={"positions": [], "lastTransactionID": "6"})

            us, fx = brokers["acme.us"], brokers["acme.fx"]
            assert isinstance(us, AlpacaBroker) and isinstance(fx, OandaBroker)
            assert await us.positions("acme.us") == {}
            assert await fx.positions("acme.fx") == {}
    finally:
        for broker in set(brokers.values()):
            await broker.close()
        await reader.aclose()

    assert live_alpaca.call_count == practice_oanda.call_count == 1
    # The Vault secrets went to the broker, not the document.
    request = live_alpaca.calls.last.request
    assert request.headers["APCA-API-KEY-ID"] == "AKTEST"
    assert set(accounts) == {"acme.us", "acme.fx"}  # the one without its v20 id is not traded
    assert "account acme.fx2 is not traded" in caplog.text
    assert "oanda_account_id is required" in caplog.text


@integration
async def test_changed_broker_options_halt_a_running_account_until_a_restart(
    endpoints: Endpoints, unique: str, tmp_path: Path, vault: tuple[hvac.Client, str]
) -> None:
    """A running executor does not switch an account's adapter (live or sandbox endpoint, the
    OANDA account) under its open orders: the account halts, and a document with its options
    as they were lifts the halt."""
    alpaca_path, _ = credentials(vault)
    ex = ExecutorHarness(endpoints, unique, tmp_path)
    documents = Documents(ex.sync_redis, unique)
    us = f"us-{unique}"
    sandbox = {"environment": "paper"}

    def alpaca_doc(revision: int, options: dict[str, str]) -> AccountDocument:
        return doc(
            us,
            revision,
            broker="alpaca",
            venue=ex.venue,
            credentials_path=alpaca_path,
            risk=risk_section(),
            broker_options=options,
        )

    documents.put(doc(ex.account, venue=ex.venue, risk=risk_section()))
    documents.put(alpaca_doc(1, sandbox))
    # Alpaca's paper API as the executor's reconciliation sees it: nothing open, nothing held.
    with respx.mock(base_url=alpaca.PAPER_URL, assert_all_called=False) as api:
        api.get("/v2/orders").respond(200, json=[])
        api.get("/v2/positions").respond(200, json=[])
        try:
            await ex.setup()
            ex.trade("GOOG", "100.00")
            executor = await ex.start_remote_executor(
                "*", vault=vault[0], key=documents.key, channel=documents.channel
            )
            adapter = executor._brokers[us]

            documents.put(alpaca_doc(2, {"environment": "live"}))
            reason = await until(lambda: executor.config_halts.get(us), what="the halt")
            refused = on(us, ex.limit("100.00", symbol="GOOG", quantity="1"))
            await ex.send(refused, key=us)
            refusal = await answer(ex, refused)
            documents.put(alpaca_doc(3, sandbox))
            await until(lambda: us not in executor.config_halts, what="the halt lifted")
        finally:
            ex.sync_redis.delete(documents.key)
            await ex.close()

    assert "options" in reason and "'live'" in reason and "restart the executor" in reason
    assert refusal.reject_code == "risk.halted"
    assert "restart the executor" in (refusal.reject_reason or "")
    assert executor._brokers[us] is adapter  # never rebuilt while running
    assert dict(executor._configs[us].options) == sandbox
