"""The executor's settings (``COYOTE_EXECUTOR_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from coyote_sdk.config import CoyoteSettings, StackSettings


class Settings(CoyoteSettings):
    model_config = SettingsConfigDict(env_prefix="COYOTE_EXECUTOR_")

    database_url: str = "sqlite:///.coyote/executor.db"
    """Where orders and fills are persisted; SQLite is the embedded default."""
    group_id: str = "coyote-executor"
    """Kafka consumer group of the executors; partitions follow accounts."""
    dedupe_window: int = 100_000
    """How many recent intent ids are remembered in memory before the database is asked."""
    stack: StackSettings = Field(default_factory=StackSettings)
