"""The executor's records on SQLite and the stack's PostgreSQL: schema upgrades in place."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from coyote_executor import store as store_module
from coyote_executor.store import Store
from coyote_sdk.config import Endpoints
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
    (order,) = store.open_orders(["paper-1"])
    assert str(order.order_id) == "019aa5f0-7c1e-7d3a-9a41-3f7e2c1b0a11"
    assert order.traceparent is None
    store.close()


def test_a_frozen_executors_transaction_is_ended_and_its_row_locks_freed(
    endpoints: Endpoints, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zombie frozen mid-transaction holds its row locks: the successor's write waits
    LOCK_TIMEOUT_MS and fails, and end_stale_transactions ends the zombie's session (an
    executor's, by its application name), not another client's."""
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
        held = [store.engine.connect() for store in (zombie, bystander)]
        for conn in held:  # both in a transaction, the zombie holding the row's lock
            conn.execute(sa.text("SELECT 1"))
        held[0].execute(sa.text("UPDATE balances SET cash = '1' WHERE account_id = 'a'"))

        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
            _set_cash(successor, "2")  # waits LOCK_TIMEOUT_MS for the zombie's lock
        assert successor.end_stale_transactions() == []  # not open long enough yet
        monkeypatch.setattr(store_module, "STALE_TRANSACTION_S", 0)
        ended = successor.end_stale_transactions()
        _set_cash(successor, "2")

        assert len(ended) == 1
        with pytest.raises(sa.exc.OperationalError):
            held[0].execute(sa.text("SELECT 1"))  # the zombie's session is gone
        held[1].execute(sa.text("SELECT 1"))  # the other client's is not
        for conn in held:
            conn.invalidate()
        for store in (successor, zombie, bystander):
            store.close()


def _set_cash(store: Store, cash: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE balances SET cash = :cash WHERE account_id = 'a'"), {"cash": cash}
        )
