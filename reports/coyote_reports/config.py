"""Where the reports read from (the control plane's ``COYOTE_CONTROL_PLANE_REPORTS__*``)."""

from __future__ import annotations

from pydantic import BaseModel


class ReportsSettings(BaseModel):
    database_url: str = "sqlite:///.coyote/executor.db"
    """The executor's database (``COYOTE_EXECUTOR_DATABASE_URL``), read only."""
    database_schema: str | None = None
    """Its PostgreSQL schema, when not the default."""
