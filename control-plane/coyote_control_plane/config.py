"""The control plane's settings (``COYOTE_CONTROL_PLANE_*``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from coyote_reports import ReportsSettings
from coyote_sdk.config import CoyoteSettings, StackSettings


class SupervisorSettings(BaseModel):
    """How bot runtimes are run and watched (``COYOTE_CONTROL_PLANE_SUPERVISOR__*``)."""

    backend: Literal["local", "kubernetes", "none"] = "local"
    """``none`` runs no supervisor in this process (another replica, or a separate one, does)."""
    interval_s: float = 1.0
    """Seconds between reconciliation passes."""
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_restarts: int = 5
    """Crashes in a row after which the supervisor gives up (status ``failed``)."""
    healthy_after_s: float = 60.0
    """Running this long without a crash resets the crash count."""
    start_grace_s: float = 20.0
    """Time a new runtime has to send its first heartbeat before it counts as stale."""
    stale_restart_s: float = 30.0
    """A runtime stale this long is killed and restarted."""
    heartbeat_loss_cancel_after_s: float = Field(default=5.0, ge=0)
    """A runtime stale this long has lost its heartbeat: its bot's open orders are cancelled
    (deployments with ``cancel_orders_on_heartbeat_loss``). A runtime found dead has them
    cancelled at once."""
    stop_grace_s: float = 15.0
    """Time a stopping runtime has to cancel orders and exit before it is terminated."""
    local_memory_mb: int | None = Field(default=2048, ge=64)
    """Address space of each local runtime process (MiB); ``None``: unlimited."""
    local_open_files: int | None = Field(default=1024, ge=32)
    """Open files and sockets of each local runtime process."""
    local_cpu_seconds: int | None = Field(default=None, ge=1)
    """CPU time of each local runtime process over its life; unlimited by default."""
    kubernetes_namespace: str | None = None
    """Where the Kubernetes backend runs the bots; the control plane's own namespace if unset."""
    kubernetes_image: str = "ghcr.io/coyote/coyote-bot:latest"
    """The bot runtime image (``coyote-sdk`` on its ``PATH``, a numeric non-root user)."""
    kubernetes_service_account: str | None = None
    """The bot pods' service account; without one they run as the namespace's default account
    and get no API token."""
    kubernetes_resources: dict[str, Any] | None = None
    """The bot container's ``resources`` as Kubernetes takes them, e.g. (JSON in the
    environment) ``{"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory":
    "512Mi"}}``; without them the namespace's LimitRange applies."""
    kubernetes_image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    redis_acl: bool = True
    """Give each bot runtime a Redis ACL user of its own that reaches only its own keys; turn it
    off for a Redis that forbids ACL commands (runtimes then share the control plane's URL)."""
    redis_acl_secret: SecretStr | None = None
    """The key the runtimes' Redis passwords are derived from (HMAC-SHA256 of the runtime id).
    Required with the ``kubernetes`` backend, where every replica must derive the same ones;
    the local backend generates one into ``<home>/control-plane/redis-acl.key`` if unset."""

    @model_validator(mode="after")
    def _replicas_share_the_redis_acl_secret(self) -> SupervisorSettings:
        if self.backend == "kubernetes" and self.redis_acl and self.redis_acl_secret is None:
            raise ValueError(
                "COYOTE_CONTROL_PLANE_SUPERVISOR__REDIS_ACL_SECRET must be set with the "
                "kubernetes backend (every replica must derive the same bot passwords), or turn "
                "per-bot Redis users off with COYOTE_CONTROL_PLANE_SUPERVISOR__REDIS_ACL=false"
            )
        return self

    @field_validator("kubernetes_resources")
    @classmethod
    def _resources_shape(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - {"requests", "limits", "claims"})
        if unknown:
            raise ValueError(
                f"kubernetes_resources takes 'requests', 'limits' and 'claims', got {unknown[0]!r}"
            )
        for key in ("requests", "limits"):
            if not isinstance(value.get(key, {}), dict):
                raise ValueError(
                    f"kubernetes_resources.{key} must map resource names to quantities, "
                    f'e.g. {{"cpu": "100m", "memory": "256Mi"}}'
                )
        return value


class Settings(CoyoteSettings):
    model_config = SettingsConfigDict(env_prefix="COYOTE_CONTROL_PLANE_", env_nested_delimiter="__")

    database_url: str = "sqlite:///.coyote/control-plane/control-plane.db"
    """SQLite is the embedded default; production points this at PostgreSQL."""
    database_schema: str | None = None
    """PostgreSQL schema (search path) of the tables; the database's default if unset."""
    host: str = "127.0.0.1"
    port: int = 8400
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    """Bundles larger than this are refused (413) before they are read whole."""
    session_ttl_hours: float = 12.0
    cookie_secure: bool = False
    """Mark the dashboard's session cookie Secure (set it behind HTTPS)."""
    auto_migrate: bool = True
    """Bring the schema up to date at start-up."""
    supervisor: SupervisorSettings = Field(default_factory=SupervisorSettings)
    reports: ReportsSettings = Field(default_factory=ReportsSettings)
    """The executor's database the reports read (``COYOTE_CONTROL_PLANE_REPORTS__DATABASE_URL``)."""
    stack: StackSettings = Field(default_factory=StackSettings)
