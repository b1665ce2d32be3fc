"""Broker adapters behind one interface (:mod:`coyote_executor.brokers.base`), and the one
place that builds them from the accounts file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from coyote_executor.brokers.alpaca import AlpacaBroker
from coyote_executor.brokers.base import Broker, BrokerOrder, BrokerOrderState
from coyote_executor.brokers.oanda import OandaAccount, OandaBroker
from coyote_executor.brokers.paper import PaperBroker, PaperSettings
from coyote_executor.credentials import VaultCredentials
from coyote_sdk.protocol import BROKER_OPTIONS

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from coyote_executor.accounts import AccountConfig

__all__ = [
    "AlpacaBroker",
    "Broker",
    "BrokerOrder",
    "BrokerOrderState",
    "OandaBroker",
    "PaperBroker",
    "PaperSettings",
    "build_brokers",
]

_SANDBOX = {kind: BROKER_OPTIONS[kind]["environment"].default for kind in ("alpaca", "oanda")}
"""The ``environment`` that selects a real broker's sandbox (the default)."""


def build_brokers(
    accounts: Mapping[str, AccountConfig],
    *,
    redis: aioredis.Redis,
    vault: Any,
    paper_match_interval_ms: int = 100,
) -> dict[str, Broker]:
    """The broker of each account: one paper broker for all paper accounts, one adapter per
    real broker kind with each account's credentials read from Vault.

    Real brokers default to their sandbox (Alpaca paper, OANDA practice); an account trades
    live only with ``options.environment = "live"``.

    Raises:
        ValueError: naming the account whose options are missing or wrong.
    """
    brokers: dict[str, Broker] = {}
    paper = {a: c.paper for a, c in accounts.items() if c.paper is not None}
    if paper:
        shared = PaperBroker(redis, paper, match_interval_ms=paper_match_interval_ms)
        brokers.update(dict.fromkeys(paper, shared))
    for kind in ("alpaca", "oanda"):
        for environment in ("sandbox", "live"):
            chosen = {
                a: c
                for a, c in accounts.items()
                if c.broker == kind and _environment(c, kind) == environment
            }
            if not chosen:
                continue
            sandbox = environment == "sandbox"
            adapter: Broker
            if kind == "alpaca":
                adapter = AlpacaBroker(
                    {
                        a: _credentials(vault, c, ("api_key_id", "api_secret_key"))
                        for a, c in chosen.items()
                    },
                    paper=sandbox,
                )
            else:
                adapter = OandaBroker(
                    {a: _oanda_account(vault, c) for a, c in chosen.items()}, practice=sandbox
                )
            brokers.update(dict.fromkeys(chosen, adapter))
    return brokers


def _environment(config: AccountConfig, kind: str) -> str:
    value = config.options.get("environment", _SANDBOX[kind])
    if value not in (_SANDBOX[kind], "live"):
        raise ValueError(
            f"accounts.{config.account_id}.options.environment: {value!r} is not "
            f"{_SANDBOX[kind]!r} or 'live'"
        )
    return "live" if value == "live" else "sandbox"


def _credentials(vault: Any, config: AccountConfig, keys: tuple[str, ...]) -> VaultCredentials:
    assert config.credentials is not None  # the accounts file requires it for real brokers
    return VaultCredentials(vault, config.credentials, required_keys=keys)


def _oanda_account(vault: Any, config: AccountConfig) -> OandaAccount:
    oanda_id = config.options.get("oanda_account_id")
    if not oanda_id:
        raise ValueError(
            f"accounts.{config.account_id}.options.oanda_account_id is required: the v20 "
            "account id, e.g. 101-004-1435156-001 (an account from the control plane: set its "
            "broker options)"
        )
    return OandaAccount(
        account_id=oanda_id,
        credentials=_credentials(vault, config, ("token",)),
        home_currency=config.currency,
    )
