"""Trading accounts as the executor knows them: broker, market data venue, risk limits.

Accounts come from a TOML file (``COYOTE_EXECUTOR_ACCOUNTS_FILE``), or from the control plane's
account documents (``COYOTE_EXECUTOR_ACCOUNTS_SOURCE=control-plane``, see
:mod:`coyote_executor.remote_accounts`)::

    [accounts.paper-demo]
    broker = "paper"                      # paper | alpaca | oanda
    venue = "demo-fx"                     # market data venue of its prices
    currency = "USD"

    [accounts.paper-demo.paper]           # paper broker fill model (optional)
    slippage_bps = "1"
    fee_bps = "0.5"

    [accounts.paper-demo.risk]            # the limits, as in docs/risk.md
    [accounts.paper-demo.risk.instruments.EURUSD]
    tick_size = "0.00001"

    [accounts.fx-live]
    broker = "oanda"
    venue = "oanda-fx"
    credentials = "coyote/accounts/oanda-live"  # Vault KV v2 path (real brokers only)

    [accounts.fx-live.options]            # a real broker's adapter options (optional), those
    environment = "live"                  # coyote_sdk.protocol.BROKER_OPTIONS lists for it
    oanda_account_id = "101-004-1435156-001"

Every error names the account and the field at fault.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from coyote_executor.brokers.paper import PaperSettings
from coyote_risk import RiskConfig, risk_config_from_mapping
from coyote_sdk.protocol import check_broker_options

BROKERS = ("paper", "alpaca", "oanda")


@dataclasses.dataclass(frozen=True)
class AccountConfig:
    """One trading account.

    Attributes:
        account_id: As the intents name it.
        broker: ``paper``, ``alpaca`` or ``oanda``.
        venue: The market data venue whose prices the risk engine (and the paper broker) use.
        currency: The account's base currency.
        credentials: The Vault KV v2 path of the broker credentials (never the secret itself).
        paper: The paper broker's fill model, for paper accounts.
        options: Adapter options of a real broker (``environment``, ``oanda_account_id``),
            those ``coyote_sdk.protocol.BROKER_OPTIONS`` lists for it; never credentials.
        risk: The account's limits.
    """

    account_id: str
    broker: str
    venue: str
    risk: RiskConfig
    currency: str = "USD"
    credentials: str | None = None
    paper: PaperSettings | None = None
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)


def load_accounts(path: str | Path) -> dict[str, AccountConfig]:
    """Reads the accounts file.

    Raises:
        ValueError: naming the file, the account and the field that is wrong.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ValueError(f"accounts file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"accounts file {path} is not valid TOML: {exc}") from exc
    try:
        return accounts_from_mapping(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def accounts_from_mapping(data: Mapping[str, Any]) -> dict[str, AccountConfig]:
    """Builds the accounts from plain data (the parsed TOML)."""
    unknown = sorted(set(data) - {"accounts"})
    if unknown:
        raise ValueError(f"unknown section {unknown[0]!r}; expected [accounts.<id>]")
    accounts = data.get("accounts", {})
    if not isinstance(accounts, Mapping) or not accounts:
        raise ValueError("no [accounts.<id>] section")
    return {account_id: _account(account_id, spec) for account_id, spec in accounts.items()}


_FIELDS = {"broker", "venue", "currency", "credentials", "paper", "risk", "options"}
_PAPER_DECIMALS = ("slippage_bps", "fee_bps", "liquidity")
_PAPER_INTS = ("latency_ms", "max_price_age_ms")
_PAPER_RATES = ("error_rate", "lost_answer_rate")


def _account(account_id: str, spec: Any) -> AccountConfig:
    where = f"accounts.{account_id}"
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} must be a table")
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise ValueError(
            f"{where}.{unknown[0]} is not a setting; expected one of {sorted(_FIELDS)}"
        )
    broker = spec.get("broker", "paper")
    if broker not in BROKERS:
        raise ValueError(f"{where}.broker: {broker!r} is not one of {list(BROKERS)}")
    venue = spec.get("venue")
    if not isinstance(venue, str) or not venue:
        raise ValueError(f"{where}.venue is required: the market data venue of its prices")
    if broker != "paper" and not spec.get("credentials"):
        raise ValueError(f"{where}.credentials is required for a {broker} account (a Vault path)")
    try:
        risk = risk_config_from_mapping(spec.get("risk", {}), account_id=account_id)
    except ValueError as exc:
        raise ValueError(f"{where}.risk: {exc}") from exc
    paper = None
    if broker == "paper":
        paper = _paper(where, venue, spec.get("paper", {}))
    options = spec.get("options", {})
    if not isinstance(options, Mapping):
        raise ValueError(f"{where}.options must be a table")
    try:
        check_broker_options(broker, options)
    except ValueError as exc:
        raise ValueError(f"{where}.options.{exc}") from None
    return AccountConfig(
        account_id=account_id,
        broker=broker,
        venue=venue,
        risk=risk,
        currency=str(spec.get("currency", "USD")),
        credentials=spec.get("credentials"),
        paper=paper,
        options={str(k): str(v) for k, v in options.items()},
    )


def _paper(where: str, venue: str, spec: Any) -> PaperSettings:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}.paper must be a table")
    known = set(_PAPER_DECIMALS) | set(_PAPER_INTS) | set(_PAPER_RATES)
    values: dict[str, Any] = {"venue": venue}
    for name, value in spec.items():
        if name not in known:
            raise ValueError(
                f"{where}.paper.{name} is not a setting; expected one of {sorted(known)}"
            )
        try:
            if name in _PAPER_DECIMALS:
                values[name] = Decimal(str(value))
            else:
                values[name] = float(value) if name in _PAPER_RATES else int(value)
        except (InvalidOperation, ValueError, TypeError) as exc:
            raise ValueError(f"{where}.paper.{name}: {value!r} is not a number") from exc
    try:
        return PaperSettings(**values)
    except ValueError as exc:
        raise ValueError(f"{where}.paper: {exc}") from exc
