"""The control plane's settings (``COYOTE_CONTROL_PLANE_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from coyote_sdk.config import CoyoteSettings, StackSettings


class Settings(CoyoteSettings):
    model_config = SettingsConfigDict(env_prefix="COYOTE_CONTROL_PLANE_")

    database_url: str = "sqlite:///.coyote/control-plane.db"
    """SQLite is the embedded default; production points this at PostgreSQL."""
    host: str = "127.0.0.1"
    port: int = 8400
    stack: StackSettings = Field(default_factory=StackSettings)
