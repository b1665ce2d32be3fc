"""``coyote-executor``: run the executor, check its books."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Annotated, Any, Literal

import redis
import redis.asyncio as aioredis
import typer
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from coyote_executor.accounts import load_accounts
from coyote_executor.brokers import build_brokers
from coyote_executor.config import Settings
from coyote_executor.health import health_server
from coyote_executor.remote_accounts import RemoteAccounts, read_accounts
from coyote_executor.service import Executor, ExecutorOptions
from coyote_executor.store import Store
from coyote_sdk.logs import configure_logging
from coyote_sdk.protocol import ACCOUNTS_KEY
from coyote_sdk.tracing import configure_tracing
from coyote_sdk.vault import vault_client

app = typer.Typer(
    help="The Coyote executor: order intents from Kafka through risk to brokers.",
    no_args_is_help=True,
)
log = logging.getLogger("coyote.executor")

AccountsOpt = Annotated[
    Path | None,
    typer.Option(
        "--accounts", help="Accounts file (default: settings, COYOTE_EXECUTOR_ACCOUNTS_FILE)."
    ),
]
AccountsSourceOpt = Annotated[
    Literal["file", "control-plane"] | None,
    typer.Option(
        "--accounts-source",
        help="Where the accounts come from: the accounts file, or the account documents the "
        "control plane writes to Redis (default: settings, COYOTE_EXECUTOR_ACCOUNTS_SOURCE, "
        "itself 'file' by default).",
    ),
]
AccountsMatchOpt = Annotated[
    str | None,
    typer.Option(
        "--accounts-match",
        help="With the control plane as source: the account ids served, a glob such as "
        "'acme.*' (default: settings, COYOTE_EXECUTOR_ACCOUNTS_MATCH, itself '*').",
    ),
]


def _settings(
    accounts: Path | None,
    source: Literal["file", "control-plane"] | None,
    match: str | None,
    **others: Any,
) -> Settings:
    """The settings, with the options given on the command line (those not None) over the
    environment's. The source decides: an accounts file given while the accounts come from the
    control plane is not read (the Helm chart always passes one; an environment variable
    switches the source)."""
    given: dict[str, Any] = {
        "accounts_file": accounts,
        "accounts_source": source,
        "accounts_match": match,
    }
    # The settings are frozen: what the command line sets is given when they are made.
    return Settings(**{k: v for k, v in (given | others).items() if v is not None})


@app.command()
def run(
    accounts: AccountsOpt = None,
    accounts_source: AccountsSourceOpt = None,
    accounts_match: AccountsMatchOpt = None,
    instance: Annotated[
        str | None, typer.Option(help="Stable instance name (default: the host name).")
    ] = None,
) -> None:
    """Consume intents until interrupted.

    Example: COYOTE_EXECUTOR_DATABASE_URL=postgresql://... coyote-executor run --accounts a.toml

    Example: coyote-executor run --accounts-source control-plane --accounts-match 'acme.*'
    """
    configure_logging()
    settings = _settings(accounts, accounts_source, accounts_match, instance_id=instance)
    log.info("effective configuration:\n%s", settings.describe())
    try:
        # Spans are exported only when the OTEL_* variables ask (docs/executor.md#traces).
        configure_tracing(
            "coyote-executor", attributes={"service.instance.id": settings.instance_id}
        )
        asyncio.run(serve(settings))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def verify(
    accounts: AccountsOpt = None,
    accounts_source: AccountsSourceOpt = None,
    accounts_match: AccountsMatchOpt = None,
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object: each account id with its list of mismatches."
    ),
) -> None:
    """Recompute every position from its fills and report mismatches (exit 1 if any, 2 if the
    accounts cannot be read).

    The accounts are those `run` serves with the same settings: the accounts file, or the
    control plane's account documents in Redis that --accounts-match selects (an account whose
    document is invalid is verified all the same, with a warning; --accounts is not read then).

    Example: coyote-executor verify --accounts examples/accounts.toml

    Example: coyote-executor verify --accounts-source control-plane --accounts-match 'acme.*'
    """
    settings = _settings(accounts, accounts_source, accounts_match)
    if accounts is not None and settings.accounts_source != "file":
        typer.echo(
            f"note: {accounts} is not read: the accounts come from the control plane "
            "(--accounts-source file reads the file)",
            err=True,
        )
    try:
        account_ids = _accounts_to_verify(settings)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    store = Store(settings.database_url)
    store.create_schema()
    problems = {a: store.verify_positions(a) for a in account_ids}
    if as_json:
        typer.echo(json.dumps(problems))
    else:
        for account_id, found in problems.items():
            typer.echo(f"{account_id}: {'ok' if not found else '; '.join(found)}")
    if any(problems.values()):
        raise typer.Exit(1)


def _accounts_to_verify(settings: Settings) -> list[str]:
    """The ids of the accounts ``settings`` serve, from the accounts file or from the control
    plane's documents in Redis.

    Raises:
        ValueError: the file is wrong, Redis cannot be read or holds no document of the
            accounts.
    """
    if settings.accounts_source == "file":
        return list(load_accounts(settings.accounts_file))
    client = redis.Redis.from_url(
        settings.stack.endpoints().redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
    )
    try:
        found, refused = read_accounts(client, match=settings.accounts_match)
    except redis.RedisError as exc:
        raise ValueError(f"the account documents in Redis could not be read: {exc}") from exc
    finally:
        client.close()
    for account_id, why in refused.items():
        typer.echo(
            f"warning: account {account_id}'s document is invalid ({why}); its positions are "
            "verified all the same",
            err=True,
        )
    if not found and not refused:
        raise ValueError(
            f"no account document in Redis (hash {ACCOUNTS_KEY}) matches "
            f"{settings.accounts_match!r}: the control plane writes one per account"
        )
    return sorted({*found, *refused})


def redis_client(url: str, *, timeout_s: float) -> aioredis.Redis:
    """The executor's Redis client: the paper venue, the kill switches, prices and alerts.

    A call fails after ``timeout_s`` without an answer, and the client never sends it again by
    itself. Both are explicit because redis-py's defaults differ by version: before 8.0 a call
    whose answer is lost on an open connection waits forever (the whole executor with it), and
    8.0's ``Redis()`` retries ten times, which sends a paper submission whose answer was lost
    again (the venue counts it twice). The executor resolves a failed call by client order id.
    """
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


async def serve(
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Builds the executor from ``settings`` and runs it until ``stop`` (or SIGINT/SIGTERM
    when no ``stop`` is given); ``ready`` is set once it owns its partitions."""
    from_file = settings.accounts_source == "file"
    accounts = load_accounts(settings.accounts_file) if from_file else {}
    endpoints = settings.stack.endpoints()
    client = redis_client(endpoints.redis_url, timeout_s=settings.redis_timeout_s)
    store = Store(settings.database_url)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    remote: RemoteAccounts | None = None
    if from_file:
        brokers = build_brokers(
            accounts,
            redis=client,
            vault=vault_client(settings.stack),
            paper_match_interval_ms=settings.paper_match_interval_ms,
        )
    else:
        remote = RemoteAccounts(
            client,
            vault=vault_client(settings.stack),
            match=settings.accounts_match,
            refresh_s=settings.halts_refresh_s,
            paper_match_interval_ms=settings.paper_match_interval_ms,
        )
        found = await remote.initial(stop)
        if found is None:  # stopped while waiting for the control plane
            store.close()
            await client.aclose()
            return
        accounts, brokers = found
    executor = Executor(
        accounts,
        brokers=brokers,
        store=store,
        redis=client,
        kafka_bootstrap=endpoints.kafka_bootstrap,
        options=ExecutorOptions(
            group_id=settings.group_id,
            instance_id=settings.instance_id,
            batch_size=settings.batch_size,
            reconcile_interval_s=settings.reconcile_interval_s,
            positions_interval_s=settings.positions_interval_s,
            broker_failure_limit=settings.broker_failure_limit,
            dedupe_window=settings.dedupe_window,
            halts_refresh_s=settings.halts_refresh_s,
            halts_hold_s=settings.halts_hold_s,
        ),
    )
    if remote is not None:
        remote.attach(executor)
    if ready is not None:
        waiter = asyncio.create_task(executor.ready.wait())
        waiter.add_done_callback(lambda _: ready.set())
    health = health_server(settings, executor.health)
    try:
        await executor.run(stop)
    finally:
        if remote is not None:
            await remote.close()
        if health is not None:
            health.close()
        store.close()
        await client.aclose()


def main() -> None:
    app()
