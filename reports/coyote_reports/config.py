"""The reports API's settings (``COYOTE_REPORTS_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from coyote_sdk.config import CoyoteSettings, StackSettings


class Settings(CoyoteSettings):
    model_config = SettingsConfigDict(env_prefix="COYOTE_REPORTS_")

    database_url: str = "sqlite:///.coyote/executor.db"
    """The database the executor writes orders and fills to (read-only here)."""
    host: str = "127.0.0.1"
    port: int = 8401
    stack: StackSettings = Field(default_factory=StackSettings)
