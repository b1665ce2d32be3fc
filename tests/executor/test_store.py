"""The executor's records on SQLite and the stack's PostgreSQL: schema upgrades in place."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from coyote_executor import bulk, service
from coyote_executor import store as store_module
from coyote_executor.models import RETIRED_INDEXES, Balance, Report
from coyote_executor.orders import LiveOrder
from coyote_executor.store import Changes, OrdersChangedMeanwhile, Store
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import ExecType, NewOrder, OrderStatus, OrderType, Side
from tests.conftest import schema_engine

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, endpoints: Endpoints, unique: str, tmp_path: Path
) -> Iterator[str]:
    """A fresh database of each kind: a SQLite file, or a PostgreSQL schema of the test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'executor.db'}"
        return
    with schema_engine(endpoints, unique):
        url = endpoints.database_url + ("&" if "?" in endpoints.database_url else "?")
        yield f"{url}options=-csearch_path%3Dtest_{unique}"


def test_a_database_of_an_older_executor_gains_the_traceparent_columns(database_url: str) -> None:
    old = Store(database_url)
    old.create_schema()
    with old.engine.begin() as conn:
        # The tables as an executor before traces created them, with an open order in them.
        conn.execute(sa.text("ALTER TABLE orders DROP COLUMN traceparent"))
        conn.execute(sa.text("ALTER TABLE orders DROP COLUMN version"))
        conn.execute(sa.text("ALTER TABLE execution_reports DROP COLUMN traceparent"))
        conn.execute(
            sa.text(
                "INSERT INTO orders (order_id, account_id, bot_id, symbol, side, order_type, "
                "time_in_force, quantity, reduce_only, status, filled_quantity, created_ms, "
                "updated_ms, limit_price) VALUES ('019aa5f0-7c1e-7d3a-9a41-3f7e2c1b0a11', "
                "'paper-1', 'bot-a', 'EURUSD', 'buy', 'limit', 'gtc', '1000', false, 'new', '0', "
                "1, 1, '1.07')"
            )
        )
    old.close()
    store = Store(database_url)

    store.create_schema()
    store.create_schema()  # and again: nothing left to add

    columns = {
        table: {c["name"] for c in sa.inspect(store.engine).get_columns(table)}
        for table in ("orders", "execution_reports")
    }
    assert all("traceparent" in names for names in columns.values())
    assert "version" in columns["orders"]
    (order,) = store.open_orders(["paper-1"])
    assert str(order.order_id) == "019aa5f0-7c1e-7d3a-9a41-3f7e2c1b0a11"
    assert (order.traceparent, order.version) == (None, 0)
    # The old row, without a version, takes updates.
    order.status = OrderStatus.CANCELED
    changes = Changes()
    changes.update(order)
    store.apply(changes)
    assert store.open_orders(["paper-1"]) == []
    store.close()


def _cancel(order: LiveOrder) -> Changes:
    """``order`` cancelled, with its report: what an executor records on the broker's answer."""
    order.status = OrderStatus.CANCELED
    changes = Changes()
    changes.update(order)
    changes.reports.append(
        protocol.report_for(order.intent, ExecType.CANCELED, OrderStatus.CANCELED, ts_ms=2)
    )
    return changes


def test_an_update_made_from_an_out_of_date_read_of_an_order_changes_nothing(
    database_url: str,
) -> None:
    # A fenced predecessor's late commit of an order change: the executor that read the order
    # before it must not write the same change again (and report it twice).
    store = Store(database_url)
    store.create_schema()
    intent = NewOrder(
        intent_id=protocol.new_intent_id(),
        ts_ms=1,
        account_id="paper-1",
        bot_id="bot-a",
        symbol="EURUSD",
        side=Side.BUY,
        quantity=Decimal(1000),
        order_type=OrderType.LIMIT,
        limit_price=Decimal("1.07"),
    )
    store.apply(Changes(new_orders=[LiveOrder.placed(intent, 1)]))
    (predecessors,) = store.open_orders(["paper-1"])
    (ours,) = store.open_orders(["paper-1"])

    store.apply(_cancel(predecessors))
    with pytest.raises(OrdersChangedMeanwhile, match="1 of 1 orders were changed"):
        store.apply(_cancel(ours))

    with store.engine.connect() as conn:
        reports = conn.execute(sa.select(sa.func.count()).select_from(Report.__table__)).scalar()
        version = conn.execute(sa.text("SELECT version FROM orders")).scalar_one()
    assert (reports, version) == (1, 1)
    store.close()


def test_executors_starting_at_once_on_a_new_database_all_create_their_schema(
    database_url: str,
) -> None:
    # A deployment's replicas start together: two CREATE TABLE of one name at once would fail
    # one of them (bench/e2e.py's two instances did, on PostgreSQL).
    stores = [Store(database_url) for _ in range(4)]
    try:
        with concurrent.futures.ThreadPoolExecutor(len(stores)) as pool:
            for done in [pool.submit(s.create_schema) for s in stores]:
                done.result()
        tables = set(sa.inspect(stores[0].engine).get_table_names())
        assert {"intents", "orders", "fills", "execution_reports", "fill_hours"} <= tables
    finally:
        for store in stores:
            store.close()


def test_a_frozen_executors_transaction_is_ended_and_its_row_locks_freed(
    endpoints: Endpoints, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zombie frozen mid-transaction holds its row locks: the successor's write waits
    LOCK_TIMEOUT_MS and fails, and end_stale_transactions ends the zombie's session (an
    executor's, by its application name), not another client's, nor an executor's rebuilding
    the derived state (a long transaction on purpose)."""
    monkeypatch.setattr(store_module, "LOCK_TIMEOUT_MS", 300)
    with schema_engine(endpoints, unique):
        url = endpoints.database_url + ("&" if "?" in endpoints.database_url else "?")
        url += f"options=-csearch_path%3Dtest_{unique}"
        successor = Store(url)
        successor.create_schema()
        with successor.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO balances (account_id, bot_id, cash, fees, updated_ms) "
                    "VALUES ('a', 'b', '0', '0', 1)"
                )
            )
        zombie, bystander = Store(url), Store(url, connect_args={"application_name": "psql"})
        rebuilder = Store(url)
        held = [store.engine.connect() for store in (zombie, bystander, rebuilder)]
        for conn in held:  # all in a transaction, the zombie holding the row's lock
            conn.execute(sa.text("SELECT 1"))
        held[2].execute(
            sa.text(f"SET LOCAL application_name = '{store_module.REBUILDING_APPLICATION_NAME}'")
        )
        held[0].execute(sa.text("UPDATE balances SET cash = '1' WHERE account_id = 'a'"))

        with pytest.raises(sa.exc.OperationalError, match="lock timeout") as waited:
            _set_cash(successor, "2")  # waits LOCK_TIMEOUT_MS for the zombie's lock
        # What makes the executor look for stale transactions (not any outage).
        assert service._waited_for_a_lock(waited.value)
        assert successor.end_stale_transactions() == []  # not open long enough yet
        monkeypatch.setattr(store_module, "STALE_TRANSACTION_S", 0)
        ended = successor.end_stale_transactions()
        _set_cash(successor, "2")

        assert len(ended) == 1
        with pytest.raises(sa.exc.OperationalError):
            held[0].execute(sa.text("SELECT 1"))  # the zombie's session is gone
        held[1].execute(sa.text("SELECT 1"))  # the other client's is not
        held[2].execute(sa.text("SELECT 1"))  # nor the rebuilding executor's
        for conn in held:
            conn.invalidate()
        for store in (successor, zombie, bystander, rebuilder):
            store.close()


def _set_cash(store: Store, cash: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE balances SET cash = :cash WHERE account_id = 'a'"), {"cash": cash}
        )


def test_rows_written_in_bulk_read_back_exactly_with_defaults_and_awkward_text(
    database_url: str,
) -> None:
    # On PostgreSQL the rows go through COPY and one UPDATE of arrays; the text format's
    # escapes (tabs, newlines, backslashes), NULLs, bytes and exact decimals must survive it.
    store = Store(database_url)
    store.create_schema()
    reports = sa.Table("execution_reports", sa.MetaData(), autoload_with=store.engine)
    balances = sa.Table("balances", sa.MetaData(), autoload_with=store.engine)
    awkward = "t\tn\n \\N b\\ 'q' \"d\" é"  # fits the 36 characters of an id
    body = bytes(range(256))
    with store.engine.begin() as conn:
        bulk.insert_rows(
            conn,
            Report.__table__,  # type: ignore[attr-defined]
            [
                {
                    "report_id": f"r-{i}",
                    "intent_id": awkward,
                    "order_id": "o",
                    "account_id": "paper-1",
                    "ts_ms": 2**40 + i,
                    "exec_type": "trade",
                    "body": body,
                    "published": i % 2 == 0,
                    # with_offsets and traceparent left out: their defaults (True, NULL)
                }
                for i in range(3)
            ],
        )
        bulk.insert_rows(
            conn,
            Balance.__table__,  # type: ignore[attr-defined]
            [{"account_id": "paper-1", "bot_id": awkward, "cash": Decimal("-0.000000001")}],
        )
        bulk.update_rows(
            conn,
            Balance.__table__,  # type: ignore[attr-defined]
            ("account_id", "bot_id"),
            ("cash", "fees", "updated_ms"),
            [
                {
                    "account_id": "paper-1",
                    "bot_id": awkward,
                    "cash": Decimal("123456789012345.123456789"),
                    "fees": Decimal("0.1"),
                    "updated_ms": 2**41,
                }
            ],
        )
        bulk.update_rows(
            conn,
            Report.__table__,  # type: ignore[attr-defined]
            ("report_id",),
            ("published", "traceparent"),
            [{"report_id": "r-1", "published": True, "traceparent": None}],
        )
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(reports).order_by(reports.c.report_id)).mappings().all()
        (balance,) = conn.execute(sa.select(balances)).mappings().all()
    assert [r["ts_ms"] for r in rows] == [2**40, 2**40 + 1, 2**40 + 2]
    assert {r["intent_id"] for r in rows} == {awkward}
    assert all(bytes(r["body"]) == body for r in rows)
    assert [r["published"] for r in rows] == [True, True, True]
    assert all(r["with_offsets"] in (True, 1) and r["traceparent"] is None for r in rows)
    assert balance["bot_id"] == awkward
    assert Decimal(balance["cash"]) == Decimal("123456789012345.123456789")
    assert Decimal(balance["fees"]) == Decimal("0.1")
    assert balance["updated_ms"] == 2**41
    store.close()


def test_indexes_no_longer_used_are_dropped_from_an_older_database(database_url: str) -> None:
    store = Store(database_url)
    store.create_schema()
    with store.engine.begin() as conn:
        # As an executor before the outbox's partial index left them.
        conn.execute(
            sa.text(
                "CREATE INDEX ix_execution_reports_unpublished ON execution_reports (published)"
            )
        )
        conn.execute(
            sa.text("CREATE INDEX ix_execution_reports_order_id ON execution_reports (order_id)")
        )

    store.create_schema()

    names = {i["name"] for i in sa.inspect(store.engine).get_indexes("execution_reports")}
    assert "ix_execution_reports_pending" in names
    assert not names & set(RETIRED_INDEXES)
    assert store.unpublished_reports() == []
    store.close()


def test_bulk_writes_fail_as_sqlalchemy_errors_the_executor_tells_apart(
    database_url: str,
) -> None:
    # The executor retries outages (OperationalError, or a connection invalidated) and treats
    # rows already written by another instance (IntegrityError) as a sign it is a zombie.
    store = Store(database_url)
    store.create_schema()
    row = {"account_id": "paper-1", "bot_id": "bot-a", "cash": Decimal(1)}
    balances = Balance.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        bulk.insert_rows(conn, balances, [row])
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        bulk.insert_rows(conn, balances, [row])
    if store.engine.dialect.name == "postgresql":
        conn = store.engine.connect()
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with store.engine.connect() as other:
            other.execute(sa.text(f"SELECT pg_terminate_backend({pid})"))
        with pytest.raises(sa.exc.DBAPIError) as lost:
            bulk.update_rows(conn, balances, ("account_id", "bot_id"), ("cash",), [row])
        conn.close()
        assert isinstance(lost.value, sa.exc.OperationalError) or lost.value.connection_invalidated
        with store.engine.connect() as conn:  # the pool gives a live connection again
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    store.close()
