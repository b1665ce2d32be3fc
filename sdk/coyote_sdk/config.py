"""Configuration shared by every Coyote process.

Settings come from environment variables and from a ``.env`` file in the working directory
(variables win), through pydantic-settings. Each service subclasses :class:`CoyoteSettings` with
its own prefix; :class:`StackSettings` says where the shared services are, and is the one place
that knows the local dev stack's defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REDACTED = "**********"


class CoyoteSettings(BaseSettings):
    """Base of every service's settings: environment first, then ``.env``, then defaults."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    def effective(self) -> dict[str, Any]:
        """The settings as plain values, with every secret redacted.

        Secret fields show as ``**********`` and passwords inside URLs are masked, so the result
        is safe to print at start-up and to put in logs.
        """
        return {name: _redact(getattr(self, name)) for name in type(self).model_fields}

    def describe(self) -> str:
        """One ``name = value`` line per setting, redacted, for a service's start-up banner."""
        width = max((len(name) for name in type(self).model_fields), default=0)
        return "\n".join(
            f"{name.ljust(width)} = {value}" for name, value in self.effective().items()
        )


def redact_url(url: str) -> str:
    """Masks the password of ``scheme://user:password@host/...``; other URLs pass unchanged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED if value.get_secret_value() else ""
    if isinstance(value, BaseSettings):
        return value.effective() if isinstance(value, CoyoteSettings) else REDACTED
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    if isinstance(value, Path):
        return str(value)
    return value


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """Resolved addresses of the shared services, local or external."""

    kafka_bootstrap: str
    redis_url: str
    database_url: str
    vault_addr: str
    vault_token: str = dataclasses.field(repr=False)


class StackSettings(CoyoteSettings):
    """Where Kafka, Redis, PostgreSQL and Vault are.

    Each of ``kafka_bootstrap``, ``redis_url``, ``database_url`` and ``vault_addr`` names an
    external service when set (``COYOTE_KAFKA_BOOTSTRAP`` …); ``coyote-sdk dev up`` then leaves
    that service alone. When unset, the local dev stack's service on its port is meant.
    """

    model_config = SettingsConfigDict(env_prefix="COYOTE_")

    home: Path = Path(".coyote")
    """Where the local stack keeps its data, logs and pid files."""
    cache_dir: Path = Path.home() / ".cache" / "coyote"
    """Downloads shared by every checkout on the machine (Kafka's jars)."""

    kafka_bootstrap: str | None = None
    redis_url: str | None = None
    database_url: SecretStr | None = None
    vault_addr: str | None = None
    vault_token: SecretStr | None = None
    vault_auth: Literal["token", "kubernetes"] = "token"
    """How to log in to Vault: a static ``vault_token``, or the pod's service-account token
    through Vault's Kubernetes auth method (see :func:`coyote_sdk.vault.vault_client`)."""
    vault_kubernetes_role: str | None = None
    """The Vault role to log in as with the Kubernetes method."""
    vault_kubernetes_mount: str = "kubernetes"
    """Where the Kubernetes auth method is mounted in Vault (``auth/<mount>``)."""
    vault_kubernetes_token_path: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    """The service-account token (a JWT) presented to Vault; re-read at every login, since the
    kubelet rotates projected tokens in place."""

    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_extra_port: int | None = None
    """A second client listener of the local Kafka broker (named ``EXTRA``), for clients that
    reach it some other way than ``kafka_port``, such as through a proxy (the fault tests'
    network faults). Off when unset."""
    kafka_extra_advertised: str | None = None
    """The ``host:port`` Kafka gives clients of the ``EXTRA`` listener, which they connect to
    for everything after bootstrap: a proxy in front of it names its own address here (default:
    ``127.0.0.1:<kafka_extra_port>``)."""
    redis_port: int = 16379
    postgres_port: int = 15432
    vault_port: int = 18200
    vault_dev_root_token: SecretStr = SecretStr("coyote-dev-root")
    """Root token of the local OpenBao dev server; development only."""

    @model_validator(mode="after")
    def _external_vault_needs_a_token(self) -> StackSettings:
        if self.vault_auth == "kubernetes":
            if not self.vault_kubernetes_role:
                raise ValueError(
                    "COYOTE_VAULT_KUBERNETES_ROLE must be set when COYOTE_VAULT_AUTH is "
                    "'kubernetes' (the Vault role of the Kubernetes auth method to log in as)"
                )
            return self
        if self.vault_addr is not None and self.vault_token is None:
            raise ValueError(
                "COYOTE_VAULT_TOKEN must be set when COYOTE_VAULT_ADDR names an external Vault "
                "(or set COYOTE_VAULT_AUTH=kubernetes to log in with the pod's service account)"
            )
        return self

    def is_external(self, service: str) -> bool:
        """Whether ``service`` (kafka, redis, postgres, vault) is given by URL."""
        field = {
            "kafka": "kafka_bootstrap",
            "redis": "redis_url",
            "postgres": "database_url",
            "vault": "vault_addr",
        }[service]
        return getattr(self, field) is not None

    def endpoints(self) -> Endpoints:
        """The address of each service: the external one if given, else the local stack's."""
        database_url = (
            self.database_url.get_secret_value()
            if self.database_url is not None
            else f"postgresql+psycopg://coyote@127.0.0.1:{self.postgres_port}/coyote"
        )
        vault_token = self.vault_token or self.vault_dev_root_token
        return Endpoints(
            kafka_bootstrap=self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}",
            redis_url=self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0",
            database_url=database_url,
            vault_addr=self.vault_addr or f"http://127.0.0.1:{self.vault_port}",
            vault_token=vault_token.get_secret_value(),
        )
