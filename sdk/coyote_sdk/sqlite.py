"""Opening SQLite databases that several Coyote processes share (the embedded default)."""

from __future__ import annotations

import sqlite3
import time

BUSY_TIMEOUT_MS = 5000


def use_wal(connection: sqlite3.Connection, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
    """Put a new DB-API connection in WAL mode, so readers run beside the writer, and make it
    wait up to ``busy_timeout_ms`` for another connection's lock instead of failing at once.

    Switching to WAL is retried up to the same time-out: SQLite answers "database is locked" at
    once, without consulting the busy time-out, while another connection opens, recovers or
    closes the same WAL file (sqlite.org/wal.html, "Sometimes queries return SQLITE_BUSY in WAL
    mode") — as replicas starting together on a new database do.
    """
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        deadline = time.monotonic() + busy_timeout_ms / 1000
        while True:
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
    finally:
        cursor.close()
