"""Accounts from the control plane: the account documents in Redis, followed while running.

With ``COYOTE_EXECUTOR_ACCOUNTS_SOURCE=control-plane`` the executor takes its accounts from the
Redis hash :data:`~coyote_sdk.protocol.ACCOUNTS_KEY`, which the control plane writes from its
database (one :class:`~coyote_sdk.protocol.AccountDocument` per account), instead of the
accounts file:

- **at start** it waits, saying so in the log, until at least one document of its accounts
  (``accounts_match``, a glob of account ids) is there and valid;
- **while running** it follows the hash like the kill switches: a change announced on
  :data:`~coyote_sdk.protocol.ACCOUNTS_CHANNEL` is read at once, and the whole hash again every
  ``refresh_s``. Changes are applied between two steps of the loop, never during one:

  - new limits or capital allocations reconfigure the account's risk engine in place
    (positions, open orders, throttles, daily PnL and breaker states stay);
  - a new account becomes tradable, its broker built as at start;
  - a paper account's new fill model applies to its next orders;
  - a document removed, or one that does not validate, halts its account (fail closed) until a
    valid one is back; so does a change of broker, venue, currency, credentials path or broker
    options (a real broker's ``environment``, ``oanda_account_id``) of an account already
    trading, which only a restart applies (its open orders live at the old broker, or the old
    environment or OANDA account);
  - a document with a revision older than the one applied is ignored.

- while Redis is unreachable the last documents applied stay in force.

Each deployment's capital allocation in the document becomes its bot's
``capital_allocation`` limit on the account (the stricter one wins when the risk document
also sets one); an allocation of ``0`` (none given) sets no limit. A real broker's
``broker_options`` become the account's adapter ``options``, as an accounts file gives them.

``coyote-executor verify`` reads the same documents once (:func:`read_accounts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import functools
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio as aioredis
from aiokafka.partitioner import DefaultPartitioner

from coyote_executor._follow import follow_hash
from coyote_executor.accounts import BROKERS, AccountConfig
from coyote_executor.brokers import build_brokers
from coyote_executor.brokers.base import Broker
from coyote_executor.brokers.paper import PaperBroker, PaperSettings
from coyote_risk import Limits, risk_config_from_mapping
from coyote_sdk import protocol
from coyote_sdk.protocol import (
    ACCOUNTS_CHANNEL,
    ACCOUNTS_KEY,
    AccountDocument,
    PaperFillModel,
    ProtocolError,
    now_ms,
)
from coyote_sdk.tasks import cancel_and_wait

if TYPE_CHECKING:
    from coyote_executor.service import Executor

log = logging.getLogger("coyote.executor")

_CLOSE_WITHIN_S = 5.0
"""How long closing waits for the documents' watcher to end."""

_RESTART_FIELDS = ("broker", "venue", "currency", "credentials", "options")
"""What a running executor does not change under an account's open orders. The broker options
choose the adapter itself (live or sandbox endpoint, the OANDA account the orders go to)."""
_HALTS_UNREAD = "its kill switches could not be read yet"


def account_from_document(document: AccountDocument) -> AccountConfig:
    """The executor's account from a control plane document: its risk limits with each
    deployment's capital allocation as its bot's ``capital_allocation``.

    Raises:
        ValueError: naming the account and what is wrong with it.
    """
    account_id = document.account_id
    if document.broker not in BROKERS:
        raise ValueError(f"{account_id}: broker {document.broker!r} is not one of {BROKERS}")
    if document.broker != "paper" and not document.credentials_path:
        raise ValueError(
            f"{account_id}: a {document.broker} account needs a credentials path (Vault)"
        )
    try:
        risk = risk_config_from_mapping(document.risk, account_id=account_id)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{account_id}: risk: {exc}") from exc
    bots = dict(risk.bots)
    for bot_id, capital in document.deployments.items():
        if capital > 0:
            bots[bot_id] = bots.get(bot_id, Limits()).merged(Limits(capital_allocation=capital))
    return AccountConfig(
        account_id=account_id,
        broker=document.broker,
        venue=document.venue,
        risk=dataclasses.replace(risk, bots=bots),
        currency=document.currency,
        credentials=document.credentials_path,
        paper=_paper_settings(document) if document.broker == "paper" else None,
        options=dict(document.broker_options),
    )


def _paper_settings(document: AccountDocument) -> PaperSettings:
    fill = document.fill_model or PaperFillModel()
    return PaperSettings(
        venue=document.venue,
        slippage_bps=fill.slippage_bps,
        fee_bps=fill.fee_bps,
        latency_ms=fill.latency_ms,
        liquidity=fill.liquidity,
        max_price_age_ms=fill.max_price_age_ms,
    )


def read_document(field: str, value: bytes) -> tuple[AccountDocument, AccountConfig]:
    """Decodes and validates the document stored in ``field``.

    Raises:
        ValueError: the document is not valid protocol, names another account or holds
            limits the risk engine refuses.
    """
    try:
        document = protocol.decode(value, AccountDocument)
    except ProtocolError as exc:
        raise ValueError(f"{exc.code} JSON: {exc}") from exc
    if document.account_id != field:
        raise ValueError(f"the document in field {field!r} is of account {document.account_id!r}")
    return document, account_from_document(document)


def read_accounts(
    client: redis.Redis, *, match: str = "*", key: str = ACCOUNTS_KEY
) -> tuple[dict[str, AccountConfig], dict[str, str]]:
    """The accounts of the documents in Redis now, read once (``coyote-executor verify``): those
    of the account ids ``match`` selects that validate, and why each other one does not.

    Raises:
        redis.RedisError: Redis could not be read.
    """
    stored = _matching(client.hgetall(key), match)
    accounts: dict[str, AccountConfig] = {}
    refused: dict[str, str] = {}
    for field, value in sorted(stored.items()):
        try:
            _, accounts[field] = read_document(field, value)
        except ValueError as exc:
            refused[field] = str(exc)
    return accounts, refused


def _matching(stored: Any, match: str) -> dict[str, bytes]:
    """The fields of a hash as read (bytes or text) whose account id ``match`` selects."""
    found = {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v if isinstance(v, bytes) else str(v).encode()
        )
        for k, v in stored.items()
    }
    return {f: v for f, v in found.items() if fnmatch.fnmatchcase(f, match)}


class RemoteAccounts:
    """The accounts an executor takes from the control plane (see the module's doc).

    Args:
        client: Async Redis client of the stack.
        vault: The Vault client real brokers read their credentials with.
        match: Which account ids this executor serves (a glob, e.g. ``acme.*``).
        refresh_s: How often the whole hash is read, besides the announced changes.
        paper_match_interval_ms: The paper broker's matching interval.
        key, channel: The protocol's hash and channel; other names only for isolated tests.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        vault: Any,
        match: str = "*",
        refresh_s: float = 1.0,
        paper_match_interval_ms: int = 100,
        key: str = ACCOUNTS_KEY,
        channel: str = ACCOUNTS_CHANNEL,
    ) -> None:
        self._redis = client
        self._vault = vault
        self._match = match
        self._refresh_s = refresh_s
        self._paper_interval = paper_match_interval_ms
        self._key = key
        self._channel = channel
        self._stored: dict[str, bytes] = {}
        """The hash as last read (this executor's fields only)."""
        self._seen: dict[str, bytes] = {}
        """The value of each field when it was last acted on."""
        self._revisions: dict[str, int] = {}
        """The revision applied of each account."""
        self._unchecked: set[str] = set()
        """Accounts added whose kill switches have not been read yet."""
        self._changed = False
        self._unreachable = False
        self._watcher: asyncio.Task[None] | None = None
        self._brokers: list[Broker] = []
        """Brokers started here for accounts added while running (closed by :meth:`close`)."""

    # -- start -----------------------------------------------------------------------------

    async def initial(
        self, stop: asyncio.Event
    ) -> tuple[dict[str, AccountConfig], dict[str, Broker]] | None:
        """The accounts and their brokers to start with: waits until at least one document of
        this executor's accounts is in Redis and valid. None if ``stop`` was set first."""
        waiting_since: float | None = None
        refused: dict[str, bytes] = {}  # documents found wrong (and logged) until they change
        while not stop.is_set():
            try:
                stored = await self._read()
            except (aioredis.RedisError, OSError) as exc:
                self._lost(exc)
            else:
                configs: dict[str, AccountConfig] = {}
                for field, value in sorted(stored.items()):
                    if refused.get(field) == value:
                        continue
                    try:
                        document, config = read_document(field, value)
                    except ValueError as exc:
                        log.error("account %s is not traded: %s", field, exc)
                        refused[field] = value
                        continue
                    configs[field] = config
                    self._revisions[field] = document.revision
                brokers = self._build(configs)
                refused.update({a: stored[a] for a in configs if a not in brokers})
                if brokers:
                    self._stored = stored
                    self._seen = dict(stored)
                    configs = {a: c for a, c in configs.items() if a in brokers}
                    log.info(
                        "%d accounts from the control plane: %s",
                        len(configs),
                        ", ".join(f"{a} (revision {self._revisions[a]})" for a in configs),
                    )
                    return configs, brokers
            now = time.monotonic()
            if waiting_since is None or now - waiting_since >= 30:
                waiting_since = now
                log.warning(
                    "waiting for account documents in Redis (hash %s, accounts %r): the "
                    "control plane writes them when accounts are created; no intent is taken "
                    "until one is there",
                    self._key,
                    self._match,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._refresh_s)
        return None

    def attach(self, executor: Executor) -> None:
        """Makes ``executor`` apply the documents' changes between its steps."""
        executor.between_steps.append(functools.partial(self._apply, executor))

    async def close(self) -> None:
        """Stops following the documents; closes the brokers of accounts added while running."""
        if self._watcher is not None:
            await cancel_and_wait([self._watcher], within=_CLOSE_WITHIN_S, log=log)
        for broker in self._brokers:
            await broker.close()

    def _build(self, configs: Mapping[str, AccountConfig]) -> dict[str, Broker]:
        """Brokers of ``configs``, as the accounts file's are built: one paper broker for the
        paper accounts, each real one on its own so that one bad account spoils no other."""
        brokers: dict[str, Broker] = {}
        paper = {a: c for a, c in configs.items() if c.paper is not None}
        if paper:
            brokers.update(self._brokers_of(paper))
        for account_id, config in configs.items():
            if config.paper is None:
                brokers.update(self._brokers_of({account_id: config}))
        return brokers

    def _brokers_of(self, configs: Mapping[str, AccountConfig]) -> dict[str, Broker]:
        try:
            return build_brokers(
                configs,
                redis=self._redis,
                vault=self._vault,
                paper_match_interval_ms=self._paper_interval,
            )
        except ValueError as exc:
            log.error("account %s is not traded: %s", ", ".join(configs), exc)
            return {}

    # -- following -------------------------------------------------------------------------

    async def _read(self) -> dict[str, bytes]:
        stored: Any = await self._redis.hgetall(self._key)
        if self._unreachable:
            self._unreachable = False
            log.info("account documents readable again")
        return _matching(stored, self._match)

    def _lost(self, error: Exception) -> None:
        if not self._unreachable:
            self._unreachable = True
            log.error("account documents unreadable (%s): the last applied stay in force", error)

    async def _refresh(self) -> None:
        stored = await self._read()
        if stored != self._stored:
            self._stored = stored
            self._changed = True

    async def _watch(self, stop: asyncio.Event) -> None:
        """Follows the hash: a change announced on the channel is read at once, and the whole
        hash again every ``refresh_s``."""
        await follow_hash(
            self._redis,
            self._channel,
            refresh_s=self._refresh_s,
            read=self._refresh,
            lost=self._lost,
            stop=stop,
        )

    # -- applying, between steps -----------------------------------------------------------

    async def _apply(self, executor: Executor, stop: asyncio.Event) -> None:
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(stop), name="coyote-executor-accounts")
        elif self._watcher.done():
            self._watcher.result()  # a watcher that died must stop the executor, not blind it
        if self._unchecked:
            await self._check_halts(executor)
        if not self._changed:
            return
        self._changed = False
        stored = self._stored
        added: list[tuple[AccountDocument, AccountConfig]] = []
        for field in sorted(set(stored) | set(self._seen)):
            value = stored.get(field)
            if value is not None and value == self._seen.get(field):
                continue
            if value is None:
                del self._seen[field]
                if field in executor._configs:
                    self._halt(executor, field, "its account document was removed")
                continue
            self._seen[field] = value
            try:
                document, config = read_document(field, value)
            except ValueError as exc:
                if field in executor._configs:
                    self._halt(executor, field, f"its account document is invalid: {exc}")
                else:
                    log.error("account %s is not traded: %s", field, exc)
                continue
            applied = self._revisions.get(field)
            if applied is not None and document.revision < applied:
                log.warning(
                    "account %s: document revision %d is older than the applied %d: ignored",
                    field,
                    document.revision,
                    applied,
                )
                continue
            if field in executor._configs:
                self._update(executor, document, config)
            else:
                added.append((document, config))
        for document, config in added:
            await self._add(executor, document, config, stop)

    def _update(self, executor: Executor, document: AccountDocument, config: AccountConfig) -> None:
        account_id = config.account_id
        current = executor._configs[account_id]
        moved = [f for f in _RESTART_FIELDS if getattr(current, f) != getattr(config, f)]
        if moved:
            changes = ", ".join(
                f"{f} {getattr(current, f)!r} → {getattr(config, f)!r}" for f in moved
            )
            self._halt(
                executor,
                account_id,
                f"its {changes} changed: restart the executor to apply that",
            )
            return
        executor._configs[account_id] = config
        self._revisions[account_id] = document.revision
        broker = executor._brokers.get(account_id)
        if config.paper != current.paper and isinstance(broker, PaperBroker):
            broker.reconfigure(account_id, config.paper)  # the venue is the same (above)
        owned = executor._accounts.get(account_id)
        if owned is not None:
            owned.config = config
            owned.engine.reconfigure(config.risk, now_ms())
        log.info(
            "account %s: revision %d applied%s",
            account_id,
            document.revision,
            " (limits reconfigured)" if owned is not None else " (owned by another executor)",
        )
        self._lift(executor, account_id)

    async def _add(
        self,
        executor: Executor,
        document: AccountDocument,
        config: AccountConfig,
        stop: asyncio.Event,
    ) -> None:
        account_id = config.account_id
        broker = self._brokers_of({account_id: config}).get(account_id)
        if broker is None:
            return  # logged; retried when its document changes
        await broker.start(executor._on_broker_update)
        await broker.serve(())  # until the account is owned here (below, or at a rebalance)
        self._brokers.append(broker)
        executor._brokers[account_id] = broker
        executor._configs[account_id] = config
        self._revisions[account_id] = document.revision
        # Its kill switches are known before it trades (the executor obeys only those of the
        # accounts it knows); until they are read it stays halted.
        executor.config_halts[account_id] = _HALTS_UNREAD
        self._unchecked.add(account_id)
        owned = await self._own(executor, account_id, stop)
        log.info(
            "account %s added: %s broker, venue %s, revision %d%s",
            account_id,
            config.broker,
            config.venue,
            document.revision,
            "" if owned else " (owned by another executor)",
        )
        await self._check_halts(executor)

    async def _check_halts(self, executor: Executor) -> None:
        try:
            await executor._read_halts()
        except (aioredis.RedisError, OSError) as exc:
            log.warning("kill switches of new accounts unread (%s); they wait", exc)
            return
        for account_id in self._unchecked:
            if executor.config_halts.get(account_id) == _HALTS_UNREAD:
                del executor.config_halts[account_id]
                owned = executor._accounts.get(account_id)
                if owned is not None:
                    executor._sync_states(owned)
        self._unchecked.clear()

    async def _own(self, executor: Executor, account_id: str, stop: asyncio.Event) -> bool:
        """Takes a new account on if its intents' partition is this executor's, as a
        rebalance would: its risk state and open orders from the database."""
        consumer = executor._consumer
        if consumer is None or executor._assigned is not None:
            return False  # the coming take-over includes it
        topic = executor.options.intents_topic
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        owned = {tp.partition for tp in consumer.assignment() if tp.topic == topic}
        if (
            not partitions
            or DefaultPartitioner()(account_id.encode(), partitions, partitions) not in owned
        ):
            return False
        await executor.own_account(account_id, stop)
        return True

    def _halt(self, executor: Executor, account_id: str, reason: str) -> None:
        if executor.config_halts.get(account_id) == reason:
            return
        executor.config_halts[account_id] = reason
        owned = executor._accounts.get(account_id)
        if owned is not None:
            executor._sync_states(owned)
        executor._alert(
            "critical",
            "account.config_halted",
            f"account {account_id} halted: {reason}; executor {executor.options.instance_id}",
            account_id=account_id,
        )

    def _lift(self, executor: Executor, account_id: str) -> None:
        reason = executor.config_halts.get(account_id)
        if reason is None or reason == _HALTS_UNREAD:
            return
        del executor.config_halts[account_id]
        owned = executor._accounts.get(account_id)
        if owned is not None:
            executor._sync_states(owned)
        executor._alert(
            "info",
            "account.config_restored",
            f"account {account_id} has a valid document again (was: {reason}); executor "
            f"{executor.options.instance_id}",
            account_id=account_id,
        )
