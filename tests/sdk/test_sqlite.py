from __future__ import annotations

import concurrent.futures
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from coyote_sdk.sqlite import use_wal


def test_connections_opening_a_new_database_together_all_get_wal(tmp_path: Path) -> None:
    # Before the retry, about one new database in forty failed one of eight openers with
    # "database is locked" (CI saw it through four executors creating their schema at once).
    def open_and_write(path: Path) -> str:
        connection = sqlite3.connect(path)
        try:
            use_wal(connection)
            connection.execute("CREATE TABLE IF NOT EXISTS t (x)")
            connection.commit()
            return str(connection.execute("PRAGMA journal_mode").fetchone()[0])
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for attempt in range(100):
            path = tmp_path / f"{attempt}.db"
            modes = [f.result() for f in [pool.submit(open_and_write, path) for _ in range(8)]]
            assert modes == ["wal"] * 8


class _LockedCursor:
    """A cursor whose WAL switch finds the database locked a given number of times."""

    def __init__(self, locked_times: int, error: str = "database is locked") -> None:
        self.locked_times = locked_times
        self.error = error
        self.statements: list[str] = []

    def execute(self, sql: str) -> None:
        self.statements.append(sql)
        if sql == "PRAGMA journal_mode=WAL" and self.locked_times > 0:
            self.locked_times -= 1
            raise sqlite3.OperationalError(self.error)

    def close(self) -> None:
        pass


class _Connection:
    def __init__(self, cursor: _LockedCursor) -> None:
        self._cursor = cursor

    def cursor(self) -> Any:
        return self._cursor


def test_the_wal_switch_is_retried_while_the_database_is_locked() -> None:
    cursor = _LockedCursor(locked_times=3)
    use_wal(_Connection(cursor), busy_timeout_ms=2000)  # type: ignore[arg-type]
    assert cursor.statements == ["PRAGMA busy_timeout=2000"] + ["PRAGMA journal_mode=WAL"] * 4


def test_a_lock_outlasting_the_busy_timeout_is_raised() -> None:
    cursor = _LockedCursor(locked_times=10**6)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        use_wal(_Connection(cursor), busy_timeout_ms=50)  # type: ignore[arg-type]


def test_other_errors_are_not_retried() -> None:
    cursor = _LockedCursor(locked_times=1, error="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        use_wal(_Connection(cursor), busy_timeout_ms=2000)  # type: ignore[arg-type]
    assert cursor.statements.count("PRAGMA journal_mode=WAL") == 1
