"""The executor's settings (``COYOTE_EXECUTOR_*``)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from coyote_sdk.config import CoyoteSettings, StackSettings


class Settings(CoyoteSettings):
    model_config = SettingsConfigDict(env_prefix="COYOTE_EXECUTOR_")

    database_url: str = "sqlite:///.coyote/executor.db"
    """Where orders and fills are persisted; SQLite is the embedded default."""
    accounts_file: Path = Path("examples/accounts.toml")
    """The trading accounts, their brokers and risk limits (see docs/executor.md)."""
    accounts_source: Literal["file", "control-plane"] = "file"
    """Where the accounts and their limits come from: ``accounts_file``, read once at start, or
    the control plane's account documents in Redis, followed while running (see
    :mod:`coyote_executor.remote_accounts`)."""
    accounts_match: str = "*"
    """With the control plane as source: the account ids this executor serves, a glob such as
    ``acme.*``."""
    group_id: str = "coyote-executor"
    """Kafka consumer group of the executors; partitions follow accounts."""
    instance_id: str = Field(default_factory=socket.gethostname)
    """This executor's stable name; a restart under the same name fences the old process."""
    batch_size: int = Field(default=500, ge=1, le=10_000)
    """Most intents handled in one step (one database transaction, one Kafka transaction)."""
    reconcile_interval_s: float = Field(default=5.0, gt=0)
    """How often open orders are compared with the brokers."""
    positions_interval_s: float = Field(default=60.0, gt=0)
    """How often positions are compared with the brokers (drift alerts)."""
    broker_failure_limit: int = Field(default=5, ge=1)
    """Consecutive failed broker calls that open an account's broker circuit (HALTED)."""
    dedupe_window: int = Field(default=100_000, ge=1)
    """How many recent intent ids are remembered in memory before the database is asked."""
    halts_refresh_s: float = Field(default=1.0, gt=0)
    """How often the kill-switch hash is read whole, besides its pub/sub announcements."""
    halts_hold_s: float = Field(default=10.0, ge=0)
    """After a Redis restart, kill switches missing from Redis stay in force this long, so an
    empty Redis cannot lift them before the control plane writes them back."""
    redis_timeout_s: float = Field(default=5.0, gt=0)
    """Longest wait for an answer from Redis (the paper venue, kill switches, prices): a call
    whose answer is lost fails after it instead of stalling every account, and the order it
    carried stays in flight until reconciliation finds it by client order id."""
    paper_match_interval_ms: int = Field(default=100, ge=1)
    """How often the paper broker checks resting orders against the last prices."""
    health_port: int | None = Field(default=None, ge=0, le=65535)
    """Serve ``/healthz``, ``/readyz`` and ``/metrics`` on this port (off when unset; the Helm
    chart sets it). See :mod:`coyote_executor.health`."""
    health_host: str = "0.0.0.0"
    """Address the health server binds to."""
    health_stale_after_s: float = Field(default=60.0, gt=0)
    """``/healthz`` fails when the loop has made no progress for this long."""
    stack: StackSettings = Field(default_factory=StackSettings)
