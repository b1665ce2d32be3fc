"""Trading recorded the way the executor records it (through its :class:`Store`), on
PostgreSQL (a schema of the test's own) or SQLite, for the reports to read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from coyote_executor.brokers.base import BrokerFill, BrokerOrderState
from coyote_executor.orders import LiveOrder, advance
from coyote_executor.store import Changes, Store, intent_row
from coyote_reports import Reports
from coyote_reports import make_engine as make_reports_engine
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import NewOrder, OrderStatus, Side
from tests.conftest import schema_engine

T0 = int(dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp() * 1000)
"""Monday 2 November 2026, 00:00 UTC: where the known sequence starts."""
MINUTE = 60_000
HOUR = 60 * MINUTE


class Ledger:
    """Places orders and books their fills in the executor's database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def order(
        self,
        account_id: str,
        bot_id: str,
        symbol: str,
        side: str,
        fills: list[tuple[str, str, str, int]],
        *,
        quantity: str | None = None,
    ) -> str:
        """An order of ``quantity`` (the sum of ``fills`` by default) filled by ``fills``:
        (quantity, price, fee, ts_ms) each. Returns the order id."""
        total = Decimal(quantity) if quantity else sum((Decimal(f[0]) for f in fills), Decimal(0))
        placed_ms = fills[0][3] - 1 if fills else T0
        intent = NewOrder(
            intent_id=protocol.new_intent_id(),
            ts_ms=placed_ms,
            account_id=account_id,
            bot_id=bot_id,
            symbol=symbol,
            side=Side(side),
            quantity=total,
        )
        order = LiveOrder.placed(intent, placed_ms)
        self.store.apply(
            Changes(
                intents=[
                    intent_row(
                        intent, protocol.encode(intent), placed_ms, order_id=str(order.order_id)
                    )
                ],
                new_orders=[order],
            )
        )
        booked: list[BrokerFill] = []
        filled = Decimal(0)
        for n, (qty, price, fee, ts) in enumerate(fills):
            booked.append(
                BrokerFill(
                    fill_id=f"{intent.intent_id}-{n}",
                    quantity=Decimal(qty),
                    price=Decimal(price),
                    fee=Decimal(fee),
                    ts_ms=ts,
                )
            )
            filled += Decimal(qty)
            state = BrokerOrderState(
                client_order_id=str(intent.intent_id),
                status=OrderStatus.FILLED if filled >= total else OrderStatus.PARTIALLY_FILLED,
                quantity=total,
                filled_quantity=filled,
                fills=list(booked),
            )
            step = advance(order, state, ts)
            changes = Changes(fills=step.fills, reports=step.reports)
            changes.update(order)
            self.store.apply(changes)
        return str(order.order_id)

    def reject(self, account_id: str, bot_id: str, code: str, reason: str, ts_ms: int) -> None:
        """An intent the risk engine refused."""
        intent = NewOrder(
            intent_id=protocol.new_intent_id(),
            ts_ms=ts_ms,
            account_id=account_id,
            bot_id=bot_id,
            symbol="BTCUSD",
            side=Side.BUY,
            quantity=Decimal(1000),
        )
        self.store.apply(
            Changes(
                intents=[
                    intent_row(
                        intent,
                        protocol.encode(intent),
                        ts_ms,
                        order_id=None,
                        reject_code=code,
                        reject_reason=reason,
                    )
                ]
            )
        )


@pytest.fixture(params=["postgresql", "sqlite"])
def database(
    request: pytest.FixtureRequest, endpoints: Endpoints, unique: str, tmp_path: Path
) -> Iterator[tuple[str, str | None]]:
    """The executor's database: (url, PostgreSQL schema); both databases in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'executor.db'}", None
        return
    with schema_engine(endpoints, unique):
        yield endpoints.database_url, f"test_{unique}"


@pytest.fixture
def ledger(database: tuple[str, str | None]) -> Iterator[Ledger]:
    url, schema = database
    store = Store(url, connect_args={"options": f"-csearch_path={schema}"} if schema else None)
    store.create_schema()
    yield Ledger(store)
    store.close()


@pytest.fixture
def reports(database: tuple[str, str | None], ledger: Ledger) -> Iterator[Reports]:
    url, schema = database
    engine = make_reports_engine(url, schema=schema)
    yield Reports(engine)
    engine.dispose()


def known_sequence(ledger: Ledger, org: str = "acme", other: str = "globex") -> None:
    """The hand-checked sequence of docs/reports.md: partial fills, fees, a position flip, a
    losing close, a second bot and symbol, a rejection; and another organisation's trade."""
    paper, alpha, beta = f"{org}.paper", f"{org}.alpha", f"{org}.beta"
    # Hour 0: alpha buys 2 BTC in two partial fills (avg 101) and 10 ETH at 20.
    ledger.order(
        paper, alpha, "BTCUSD", "buy",
        [("1", "100", "0.1", T0 + 10 * MINUTE), ("1", "102", "0.1", T0 + 20 * MINUTE)],
    )  # fmt: skip
    ledger.order(paper, alpha, "ETHUSD", "buy", [("10", "20", "0.2", T0 + 30 * MINUTE)])
    # Hour 1: sells 3 at 110: closes 2 (+18) and flips to short 1 at 110.
    ledger.order(paper, alpha, "BTCUSD", "sell", [("3", "110", "0.3", T0 + 70 * MINUTE)])
    ledger.reject(paper, alpha, "risk.max_order_notional", "too big", T0 + 80 * MINUTE)
    ledger.reject(paper, alpha, "risk.max_order_notional", "far too big", T0 + 85 * MINUTE)
    ledger.reject(paper, beta, "risk.halted", "kill switch", T0 + 90 * MINUTE)
    # Hour 2: alpha buys the short back at 112 (-2); beta sells 5 ETH at 22 (marks ETH at 22).
    ledger.order(paper, alpha, "BTCUSD", "buy", [("1", "112", "0.1", T0 + 130 * MINUTE)])
    ledger.order(paper, beta, "ETHUSD", "sell", [("5", "22", "0.1", T0 + 150 * MINUTE)])
    # Another organisation, same symbols and times: never in acme's reports.
    ledger.order(
        f"{other}.paper", f"{other}.alpha", "BTCUSD", "buy", [("7", "1", "0", T0 + 40 * MINUTE)]
    )
