"""The control plane's tables, and the request and response models built on them.

Families follow FastAPI's full-stack template: ``XBase`` holds the shared fields, ``XCreate``
what a request may set, ``X(table=True)`` the row, ``XPublic`` what a route returns. Routes
never return rows.

Every row that belongs to an organisation carries ``org_id``; the routes filter on it, so one
organisation never sees another's rows. Timestamps are integer milliseconds, as on the wire.

Runtime names: a deployment runs as bot id ``<org slug>.<deployment name>`` and trades the
account ``<org slug>.<account name>`` (the ids in intents, reports, flags and heartbeats), so
names are unique within an organisation and the ids unique across all of them.
"""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import ConfigDict, StringConstraints
from sqlmodel import Field, SQLModel

Name = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,38}$", min_length=1, max_length=39)
]
"""Names of bots, deployments and accounts: lower case, no dots (dots join the org slug)."""
# Patterns are Annotated types: SQLModel does not enforce a Field's ``regex``.
Amount = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?$", max_length=40)]
"""Capital: a plain decimal in ASCII digits."""
Venue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
VaultPath = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./-]{1,200}$")]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]
WebhookUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=500)]
MAX_INT = 2**31 - 1
"""Largest row id or number: PostgreSQL's INTEGER."""
MAX_BIGINT = 2**63 - 1

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,23}$")]


def _json(**kwargs: Any) -> Any:
    return Field(sa_type=sa.JSON, **kwargs)


def _ms(**kwargs: Any) -> Any:
    return Field(sa_type=sa.BigInteger, **kwargs)


def _enum(cls: type[enum.StrEnum]) -> Any:
    """An enum column stored as its value in a VARCHAR (no database enum type to migrate)."""
    return sa.Enum(
        cls,
        native_enum=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
    )


class Role(enum.StrEnum):
    """What a user may do. ``risk`` is kept apart from ``trader``: a risk officer sets limits
    and resets kill switches but runs no bots, as the market access rule expects."""

    ADMIN = "admin"
    TRADER = "trader"
    RISK = "risk"
    VIEWER = "viewer"


class DesiredState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class RuntimeStatus(enum.StrEnum):
    """What the supervisor observes of a deployment's runtime."""

    PENDING = "pending"
    """Wanted but not launched yet (or waiting out a restart backoff)."""
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STALE = "stale"
    """Its process lives but its heartbeat expired: stuck, or cut off from Redis."""
    CRASHED = "crashed"
    """It exited unasked; a restart is scheduled."""
    FAILED = "failed"
    """It crashed more often than the restart limit allows; the supervisor gave up."""
    STOPPING = "stopping"
    STOPPED = "stopped"


class Broker(enum.StrEnum):
    PAPER = "paper"
    ALPACA = "alpaca"
    OANDA = "oanda"


# -- ORGANISATIONS, USERS, KEYS ------------------------------------------------------------


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, max_length=24)
    name: str = Field(max_length=200)
    created_ms: int = _ms()


class OrganizationPublic(SQLModel):
    slug: str
    name: str
    created_ms: int


class UserBase(SQLModel):
    email: Email = Field(max_length=254)
    name: str = Field(default="", max_length=200)
    role: Role


class UserCreate(UserBase):
    password: str | None = Field(default=None, min_length=12, max_length=200)
    """For the dashboard; users of the CLI only need API keys."""


class UserUpdate(SQLModel):
    name: str | None = Field(default=None, max_length=200)
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=12, max_length=200)


class User(UserBase, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organizations.id", index=True)
    email: str = Field(unique=True, max_length=254)
    role: Role = Field(sa_type=_enum(Role))
    password_hash: str | None = Field(default=None, max_length=200)
    disabled: bool = False
    created_ms: int = _ms()


class UserPublic(UserBase):
    id: int
    disabled: bool
    created_ms: int


class ApiKeyCreate(SQLModel):
    name: str = Field(min_length=1, max_length=100)
    role: Role | None = None
    """At most the owner's role; the owner's role by default. A key never outranks its owner:
    its permissions are those of both roles."""
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organizations.id", index=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str = Field(max_length=100)
    prefix: str = Field(unique=True, max_length=16)
    """Shown in listings and logs; the key's lookup id."""
    secret_hash: str = Field(max_length=64)
    """sha256 of the secret: keys are 256 random bits, so a fast hash cannot be brute forced."""
    role: Role = Field(sa_type=_enum(Role))
    created_ms: int = _ms()
    expires_ms: int | None = _ms(default=None, nullable=True)
    revoked_ms: int | None = _ms(default=None, nullable=True)
    last_used_ms: int | None = _ms(default=None, nullable=True)


class ApiKeyPublic(SQLModel):
    id: int
    name: str
    prefix: str
    role: Role
    user_email: str
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None
    last_used_ms: int | None


class ApiKeyCreated(ApiKeyPublic):
    key: str
    """The whole key. Shown once: only its hash is kept."""


class DashboardSession(SQLModel, table=True):
    __tablename__ = "sessions"

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    created_ms: int = _ms()
    expires_ms: int = _ms()


class AuditEntry(SQLModel, table=True):
    """One state-changing action: who, what, when, from where, and what it touched."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_org_ts", "org_id", "ts_ms"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organizations.id")
    ts_ms: int = _ms()
    actor: str = Field(max_length=300)
    """``user:<email>`` or ``key:<prefix> (<email>)``, or ``system:<component>``."""
    action: str = Field(max_length=64, index=True)
    target: str = Field(max_length=200)
    source_ip: str | None = Field(default=None, max_length=64)
    detail: dict[str, Any] = _json(default_factory=dict)


class AuditEntryPublic(SQLModel):
    id: int
    ts_ms: int
    actor: str
    action: str
    target: str
    source_ip: str | None
    detail: dict[str, Any]


# -- ACCOUNTS --------------------------------------------------------------------------------


class AccountBase(SQLModel):
    name: Name = Field(max_length=39)
    broker: Broker = Field(sa_type=_enum(Broker))
    venue: Venue = Field(max_length=64)
    """Market-data venue of its instruments (RedisTimeSeries keys)."""
    currency: Currency = Field(default="USD", min_length=3, max_length=3)
    credentials_path: VaultPath | None = Field(default=None, max_length=200)
    """The Vault path of the broker credentials; never the secret itself."""
    capital: Amount | None = Field(default=None, max_length=40)
    """Capital that the deployments on this account may be allocated, in total."""
    fill_model: dict[str, Any] | None = Field(
        default=None,
        sa_type=sa.JSON,
        description=(
            "A paper account's fill model, as the protocol's PaperFillModel: slippage_bps, "
            "fee_bps, latency_ms, liquidity, max_price_age_ms; none fills at the last price, "
            "with no fee."
        ),
    )
    broker_options: dict[str, str] = Field(
        default_factory=dict,
        sa_type=sa.JSON,
        sa_column_kwargs={"server_default": "{}"},
        description=(
            "A real broker's adapter options, as the protocol's BROKER_OPTIONS defines them: "
            "alpaca: environment (paper | live); oanda: environment (practice | live), "
            "oanda_account_id. Empty: the broker's sandbox. Paper accounts take none. Never "
            "credentials: those stay in Vault."
        ),
    )


class AccountCreate(AccountBase):
    pass


class Account(AccountBase, table=True):
    __tablename__ = "accounts"
    __table_args__ = (sa.UniqueConstraint("org_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organizations.id", index=True)
    name: str = Field(max_length=39)
    risk_limits: dict[str, Any] = _json(default_factory=dict)
    """The account's limits, as ``coyote_risk.risk_config_from_mapping`` reads them."""
    config_revision: int = Field(default=0, sa_type=sa.BigInteger)
    """The revision of the last account document written to Redis for the executors: a
    document written after a Redis restart continues above it (see ``flags.sync_accounts``)."""
    created_ms: int = _ms()


class AccountPublic(AccountBase):
    account_id: str
    """The id intents and reports carry: ``<org slug>.<name>``."""
    risk_limits: dict[str, Any]
    allocated: str
    """Capital allocated to its deployments."""
    halted: bool
    created_ms: int


# -- BOTS, VERSIONS, RELEASES ------------------------------------------------------------------


class Bot(SQLModel, table=True):
    __tablename__ = "bots"
    __table_args__ = (sa.UniqueConstraint("org_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organizations.id", index=True)
    name: str = Field(max_length=64)
    created_ms: int = _ms()
    created_by: str = Field(max_length=300)


class BotPublic(SQLModel):
    name: str
    created_ms: int
    created_by: str
    latest_version: int | None
    versions: int


class BundleBlob(SQLModel, table=True):
    """Bundle bytes by digest, in the database: stored in the same transaction as the version
    that names them, so an upload is all there or not at all."""

    __tablename__ = "bundle_blobs"

    digest: str = Field(primary_key=True, max_length=71)
    data: bytes = Field(sa_type=sa.LargeBinary)
    size: int


class BotVersion(SQLModel, table=True):
    __tablename__ = "bot_versions"
    __table_args__ = (
        sa.UniqueConstraint("bot_id", "number"),
        sa.UniqueConstraint("bot_id", "digest"),
    )

    id: int | None = Field(default=None, primary_key=True)
    bot_id: int = Field(foreign_key="bots.id", index=True)
    number: int
    digest: str = Field(foreign_key="bundle_blobs.digest", max_length=71)
    manifest: dict[str, Any] = _json()
    size: int
    pushed_by: str = Field(max_length=300)
    pushed_ms: int = _ms()
    signature: str | None = Field(default=None, max_length=200)
    """The organisation's signature of the digest (``coyote_sdk.signing``), when pushed with
    one; the runtime checks it against the organisation's keys before loading."""


class BotVersionPublic(SQLModel):
    bot: str
    number: int
    digest: str
    size: int
    bot_class: str
    symbols: list[str]
    timeframe: str
    params_schema: dict[str, Any]
    requirements: list[str]
    sdk_version: str
    pushed_by: str
    pushed_ms: int
    signed_by: str | None = None
    """The id of the signing key whose signature the version carries, if any."""
    created: bool = False
    """False when the same bundle had been pushed before: its existing version is answered."""


class ReleaseCreate(SQLModel):
    version: int | None = Field(default=None, ge=1, le=MAX_INT)
    """The bot version; the latest by default."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Validated against the bundle's parameters schema."""
    risk_profile: dict[str, Any] = Field(default_factory=dict)
    """Limits for this bot (the ``[bots.<id>]`` section of a risk document)."""


class Release(SQLModel, table=True):
    """Immutable and content-addressed: the same bundle, requirements, parameters and risk
    profile always make the same release."""

    __tablename__ = "releases"
    __table_args__ = (
        sa.UniqueConstraint("bot_id", "number"),
        sa.UniqueConstraint("bot_id", "content_hash"),
    )

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organizations.id", index=True)
    bot_id: int = Field(foreign_key="bots.id", index=True)
    number: int
    version_id: int = Field(foreign_key="bot_versions.id")
    content_hash: str = Field(max_length=71)
    params: dict[str, Any] = _json(default_factory=dict)
    risk_profile: dict[str, Any] = _json(default_factory=dict)
    created_by: str = Field(max_length=300)
    created_ms: int = _ms()


class ReleasePublic(SQLModel):
    bot: str
    number: int
    version: int
    digest: str
    requirements: list[str]
    content_hash: str
    params: dict[str, Any]
    risk_profile: dict[str, Any]
    created_by: str
    created_ms: int


# -- DEPLOYMENTS -------------------------------------------------------------------------------


_CANCEL_ON_LOSS = (
    "When the runtime dies or its heartbeat stays stale, the platform cancels the bot's open "
    "orders on the account (one `cancel_all` intent per loss). Turn it off for orders meant to "
    "rest while nothing watches them (GTC orders a restarted bot takes over)."
)


class DeploymentCreate(SQLModel):
    name: Name
    bot: str = Field(max_length=64)
    account: str = Field(max_length=39)
    release: int | None = Field(default=None, ge=1, le=MAX_INT)
    """A release number of the bot; omitted, a release is made from ``version`` and
    ``params`` (or found, if the same one exists)."""
    version: int | None = Field(default=None, ge=1, le=MAX_INT)
    params: dict[str, Any] | None = None
    risk_profile: dict[str, Any] | None = None
    capital: Amount = Field(default="0", max_length=40)
    """The deployment's capital allocation: its own sub-ledger of the account."""
    cancel_orders_on_heartbeat_loss: bool = Field(default=True, description=_CANCEL_ON_LOSS)
    start: bool = False
    """Start it right away."""


class DeploymentUpdate(SQLModel):
    """What ``PATCH /v1/deployments/{name}`` changes; an omitted (or null) field stays."""

    # A misspelt field must be refused, not silently change nothing.
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]  # SQLModel narrows it

    cancel_orders_on_heartbeat_loss: bool | None = Field(default=None, description=_CANCEL_ON_LOSS)


class Deployment(SQLModel, table=True):
    __tablename__ = "deployments"
    __table_args__ = (sa.UniqueConstraint("org_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organizations.id", index=True)
    name: str = Field(max_length=39)
    runtime_id: str = Field(unique=True, max_length=64)
    bot_id: int = Field(foreign_key="bots.id", index=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    release_id: int = Field(foreign_key="releases.id")
    capital: str = Field(default="0", max_length=40)
    cancel_orders_on_heartbeat_loss: bool = True
    desired: DesiredState = Field(default=DesiredState.STOPPED, sa_type=_enum(DesiredState))
    flag_generation: int = Field(default=0, sa_type=sa.BigInteger)
    """The last control-flag generation written: flags written after a Redis restart continue
    above it, so a runtime never mistakes them for stale ones."""
    status: RuntimeStatus = Field(default=RuntimeStatus.STOPPED, sa_type=_enum(RuntimeStatus))
    status_detail: str | None = Field(default=None, max_length=2000)
    status_ms: int = _ms(default=0)
    restarts: int = 0
    """Consecutive crashes since it last ran healthily."""
    next_start_ms: int | None = _ms(default=None, nullable=True)
    runtime_ref: str | None = Field(default=None, max_length=200)
    """The backend's handle on the runtime (a pid, a Kubernetes Deployment name)."""
    canary: bool = False
    """The runtime of a canary (see :class:`Canary`): run by the supervisor like any other,
    but reached only through its live deployment's ``/canary`` routes, never listed among the
    deployments. Kept after the canary ends, as the record its orders and fills point at."""
    created_by: str = Field(max_length=300)
    created_ms: int = _ms()
    updated_ms: int = _ms()


class DeploymentPublic(SQLModel):
    name: str
    runtime_id: str
    bot: str
    account: str
    account_id: str
    release: int
    version: int
    digest: str
    params: dict[str, Any]
    capital: str
    cancel_orders_on_heartbeat_loss: bool = Field(description=_CANCEL_ON_LOSS)
    desired: DesiredState
    status: RuntimeStatus
    status_detail: str | None
    status_ms: int
    restarts: int
    heartbeat: dict[str, Any] | None = None
    """The runtime's last heartbeat (state, counters), when it has one."""
    created_by: str
    created_ms: int
    updated_ms: int


class DeploymentRelease(SQLModel, table=True):
    """Which release a deployment ran from when: the history rollback walks back through."""

    __tablename__ = "deployment_releases"

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployments.id", index=True)
    release_id: int = Field(foreign_key="releases.id")
    ts_ms: int = _ms()
    set_by: str = Field(max_length=300)
    action: str = Field(max_length=16)
    """``deploy``, ``promote`` or ``rollback``."""


class DeploymentReleasePublic(SQLModel):
    release: int
    ts_ms: int
    set_by: str
    action: str


class ReleaseChange(SQLModel):
    release: int | None = Field(default=None, ge=1, le=MAX_INT)
    """For a rollback: the release to go back to; the one before the current by default."""


# -- CANARIES ----------------------------------------------------------------------------------


class CanaryState(enum.StrEnum):
    ACTIVE = "active"
    """Its runtime runs (or is wanted) beside the live deployment."""
    PROMOTED = "promoted"
    """The live deployment moved to its release; it was stopped."""
    DISCARDED = "discarded"
    """Stopped without promotion."""
    ENDED = "ended"
    """Stopped because its live deployment was stopped or deleted."""


class CanaryCreate(SQLModel):
    """A canary: a release run as a paper shadow beside a live deployment.

    Give ``release`` to try an existing release of the bot, or ``version`` (the latest by
    default) to make one; ``params`` override the parameters either way — by default the live
    deployment's (with ``version``) or the release's own (with ``release``).
    """

    release: int | None = Field(default=None, ge=1, le=MAX_INT)
    version: int | None = Field(default=None, ge=1, le=MAX_INT)
    params: dict[str, Any] | None = None
    """Parameters to change, merged over the release's (or the live deployment's)."""
    risk_profile: dict[str, Any] | None = None
    """With ``version``: the bot's own limits; the live release's by default."""
    account: str | None = Field(default=None, max_length=39)
    """A paper account to trade; by default ``<live account>-shadow``, a paper account on the
    live account's venue (made with its currency and risk limits when missing)."""
    capital: Amount | None = Field(default=None, max_length=40)
    """The canary's capital allocation; the live deployment's by default."""


class Canary(SQLModel, table=True):
    """A canary of a deployment: what ran, where, who started and ended it. Rows are kept
    after the canary ends (and after its live deployment is deleted), for the audit."""

    __tablename__ = "canaries"
    __table_args__ = (sa.UniqueConstraint("org_id", "deployment_name", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organizations.id", index=True)
    deployment_id: int | None = Field(default=None, foreign_key="deployments.id", index=True)
    """The live deployment; null once it is deleted."""
    deployment_name: str = Field(max_length=39)
    number: int
    """The deployment's canaries are numbered 1, 2 …"""
    active_for: int | None = Field(default=None, unique=True)
    """The live deployment's id while the canary is active, else null: the database keeps one
    active canary per deployment."""
    shadow_id: int = Field(foreign_key="deployments.id")
    """The canary's runtime: a deployment row of its own (``Deployment.canary``)."""
    release_id: int = Field(foreign_key="releases.id")
    live_release_id: int = Field(foreign_key="releases.id")
    """The live deployment's release when the canary started."""
    account_id: int = Field(foreign_key="accounts.id")
    capital: str = Field(max_length=40)
    state: CanaryState = Field(default=CanaryState.ACTIVE, sa_type=_enum(CanaryState))
    started_by: str = Field(max_length=300)
    started_ms: int = _ms()
    ended_by: str | None = Field(default=None, max_length=300)
    ended_ms: int | None = _ms(default=None, nullable=True)
    end_reason: str | None = Field(default=None, max_length=500)


class CanaryPublic(SQLModel):
    deployment: str
    """The live deployment."""
    number: int
    state: CanaryState
    name: str
    """The canary's bot name in reports, orders and fills (``<deployment>.canary-<n>``)."""
    runtime_id: str
    release: int
    version: int
    live_release: int
    """The live deployment's release when the canary started."""
    params: dict[str, Any]
    account: str
    account_id: str
    capital: str
    desired: DesiredState
    status: RuntimeStatus
    status_detail: str | None
    heartbeat: dict[str, Any] | None = None
    started_by: str
    started_ms: int
    ended_by: str | None
    ended_ms: int | None
    end_reason: str | None


class OrderCounts(SQLModel):
    """Orders created in the window, by their status now."""

    placed: int = 0
    open: int = 0
    """``pending_new`` or ``new``."""
    partially_filled: int = 0
    filled: int = 0
    cancelled: int = 0
    rejected: int = 0
    """Refused by the broker or the executor once placed."""
    expired: int = 0


class SymbolComparison(SQLModel):
    symbol: str
    orders: int
    fills: int
    bought: Decimal
    sold: Decimal
    realized: Decimal
    """Realised PnL of the window's fills in this symbol, before fees."""


class CanarySide(SQLModel):
    """One side of the comparison: what a runtime did in the window."""

    name: str
    """Its bot name in the reports."""
    runtime_id: str
    account: str
    broker: Broker
    release: int
    capital: Decimal
    orders: OrderCounts
    refused_intents: int
    """Intents the executor refused before any order (risk checks, invalid)."""
    fills: int
    traded_notional: Decimal
    realized: Decimal
    unrealized: Decimal
    """The change in value of its open positions over their cost, since the window's start."""
    fees: Decimal
    net: Decimal
    """``realized + unrealized - fees``."""
    return_pct: float | None
    """``net`` over its capital, in percent; null without capital."""
    max_drawdown_pct: float | None
    symbols: list[SymbolComparison]


class CanaryComparison(SQLModel):
    canary: CanaryPublic
    start_ms: int
    """When the canary started: both sides are compared from here."""
    end_ms: int
    """When it ended, or now."""
    live: CanarySide
    """The live deployment, from when the canary started."""
    shadow: CanarySide
    """The canary."""
    same_fill_model: bool
    """Both sides trade with the paper broker: their fills come from the same model."""
    notes: list[str]
    """What to keep in mind reading the comparison (different brokers, a live release changed
    while the canary ran …)."""


# -- RISK --------------------------------------------------------------------------------------


class KillSwitchScope(enum.StrEnum):
    ORGANIZATION = "organization"
    ACCOUNT = "account"
    DEPLOYMENT = "deployment"


class KillSwitch(SQLModel, table=True):
    """A tripped kill switch halts the orders of its scope until a risk officer resets it."""

    __tablename__ = "kill_switches"

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organizations.id", index=True)
    scope: KillSwitchScope = Field(sa_type=_enum(KillSwitchScope))
    target: str = Field(max_length=64)
    """The account or deployment name; the org slug for the organisation."""
    reason: str = Field(max_length=500)
    tripped_by: str = Field(max_length=300)
    tripped_ms: int = _ms()
    reset_by: str | None = Field(default=None, max_length=300)
    reset_ms: int | None = _ms(default=None, nullable=True)


class KillSwitchTrip(SQLModel):
    scope: KillSwitchScope
    target: str | None = Field(default=None, max_length=64)
    """The account or deployment name; omitted for the organisation."""
    reason: str = Field(min_length=1, max_length=500)


class KillSwitchPublic(SQLModel):
    id: int
    scope: KillSwitchScope
    target: str
    reason: str
    tripped_by: str
    tripped_ms: int
    reset_by: str | None
    reset_ms: int | None


# -- NOTIFICATIONS -----------------------------------------------------------------------------


class WebhookFormat(enum.StrEnum):
    GENERIC = "generic"
    """The event as JSON, signed with HMAC-SHA256 in ``X-Coyote-Signature``."""
    SLACK = "slack"
    TELEGRAM = "telegram"


class SigningKeyCreate(SQLModel):
    public_key: str = Field(max_length=100)
    """``ed25519:<base64>``, as ``coyote-sdk signing new`` prints it."""
    name: str = Field(min_length=1, max_length=100)


class SigningKey(SQLModel, table=True):
    """A public key whose signatures the organisation's bundles must carry (any one of its
    unrevoked keys); none registered, no signature needed."""

    __tablename__ = "signing_keys"
    __table_args__ = (sa.UniqueConstraint("org_id", "key_id"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organizations.id", index=True)
    key_id: str = Field(max_length=16)
    public_key: str = Field(max_length=100)
    name: str = Field(max_length=100)
    created_by: str = Field(max_length=300)
    created_ms: int = _ms()
    revoked_ms: int | None = Field(default=None, sa_type=sa.BigInteger)


class SigningKeyPublic(SQLModel):
    key_id: str
    public_key: str
    name: str
    created_by: str
    created_ms: int
    revoked_ms: int | None


class WebhookBase(SQLModel):
    url: WebhookUrl = Field(max_length=500)
    format: WebhookFormat = Field(default=WebhookFormat.GENERIC, sa_type=_enum(WebhookFormat))
    kinds: list[str] = _json(default_factory=lambda: ["bot.crashed", "bot.failed", "alert"])
    """Event kinds to deliver (``*`` for all)."""
    chat_id: str | None = Field(default=None, max_length=64)
    """Telegram's chat id."""


class WebhookCreate(WebhookBase):
    pass


class Webhook(WebhookBase, table=True):
    __tablename__ = "webhooks"

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organizations.id", index=True)
    secret: str = Field(max_length=64)
    created_ms: int = _ms()


class WebhookPublic(WebhookBase):
    id: int
    created_ms: int


class WebhookCreated(WebhookPublic):
    secret: str
    """The HMAC key of ``X-Coyote-Signature``. Shown once."""


class WebhookDelivery(SQLModel, table=True):
    """One event to one webhook: kept until delivered or given up on, so a restart of the
    control plane resumes retries instead of losing them."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.Index("ix_webhook_deliveries_pending", "delivered", "next_attempt_ms"),)

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(foreign_key="webhooks.id", index=True)
    event: dict[str, Any] = _json()
    attempts: int = 0
    delivered: bool = False
    given_up: bool = False
    next_attempt_ms: int = _ms()
    last_error: str | None = Field(default=None, max_length=1000)


class WebhookDeliveryPublic(SQLModel):
    id: int
    event: dict[str, Any]
    attempts: int
    delivered: bool
    given_up: bool
    last_error: str | None


TABLES: frozenset[str] = frozenset(
    str(model.__tablename__)
    for model in (
        Organization,
        User,
        ApiKey,
        DashboardSession,
        AuditEntry,
        Account,
        Bot,
        BundleBlob,
        BotVersion,
        Release,
        Deployment,
        DeploymentRelease,
        Canary,
        KillSwitch,
        Webhook,
        WebhookDelivery,
    )
)
"""The control plane's tables: its migrations touch these and no other service's."""
