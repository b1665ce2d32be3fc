"""The main job behind `make demo`: the pipeline as far as it exists, on the real local stack.

1. The stack starts (Kafka, Redis Stack, PostgreSQL, OpenBao), and a broker credential makes
   a round trip through Vault.
2. The executor starts on the stack's PostgreSQL, serving the paper account of
   examples/accounts.toml: risk engine, paper broker, records, execution reports.
3. Real EURUSD hourly bars (examples/data/EURUSD.csv), shifted to start now, are replayed into
   RedisTimeSeries, each published as it is written.
4. Two example bots — the mean-reversion bot and the market maker — are pushed to the control
   plane as bundles and deployed to the paper account, started: its supervisor launches each
   as a process of its own (a Redis user of its own, resource limits) and sets its control
   flag. They read their history from RedisTimeSeries, send their order intents to Kafka, and
   get fills back from the executor. At the end the demo stops them through the API.
5. A tap follows the account's intents and execution reports on Kafka.
6. The control plane serves its API, the reports and the web dashboard on
   http://127.0.0.1:8400/ for the demo organisation (`demo`, account `paper`): log in with the
   admin's email and the password printed at start (a new one every run) to watch the blotter,
   positions and PnL live, or trip the kill switch (the executor then refuses the orders).

At the end the demo prints, per bot, for this run: bars received (its last heartbeat), intents,
fills, rejections, realised PnL (from the bot's own portfolio, which its runtime saved as it
stopped), its position (earlier runs on the account included: the portfolio carries over) and
its final state; then the same run as the reports API sees it (fills, fees, realised and net
PnL).

Environment:
    DEMO_SECONDS: stop by itself after this many seconds instead of running until Ctrl-C.
        The bots are stopped through the control plane; the demo then stops the services it
        started (a stack that was already running is left running). The exit code is non-zero
        if no order made the round trip from a bot to a fill.
    DEMO_BARS_PER_SECOND: replay pace (default 20).
    DEMO_PORT: the control plane's port (default 8400).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import hvac
import msgspec
import redis
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from coyote_control_plane.bootstrap import create_organization
from coyote_control_plane.config import Settings as ControlPlaneSettings
from coyote_control_plane.config import SupervisorSettings
from coyote_control_plane.db import make_engine, migrate
from coyote_control_plane.main import GRACEFUL_SHUTDOWN_S, create_app
from coyote_control_plane.models import Account, Broker, Organization, User
from coyote_control_plane.security import hash_password
from coyote_executor.cli import serve as serve_executor
from coyote_executor.config import Settings as ExecutorSettings
from coyote_reports import ReportsSettings
from coyote_sdk import protocol
from coyote_sdk.client import ControlPlaneClient
from coyote_sdk.config import Endpoints, StackSettings
from coyote_sdk.control import read_status
from coyote_sdk.csvdata import read_bars_csv
from coyote_sdk.dev import Stack, StackError
from coyote_sdk.feeds import ReplayPace, rebase, replay_bars
from coyote_sdk.kafka import account_partition
from coyote_sdk.logs import configure_logging
from coyote_sdk.marketdata import MarketDataWriter
from coyote_sdk.protocol import RuntimeState
from coyote_sdk.runtime import SavedPortfolio

ROOT = Path(__file__).resolve().parents[1]
VENUE = "demo-fx"
ORG = "demo"
ACCOUNT = f"{ORG}.paper"
"""The executor's account id: the control plane's account ``paper`` of organisation ``demo``."""
BOTS = {"mean-reversion": "mean_reversion.py", "market-maker": "market_maker.py"}
ADMIN_EMAIL = "admin@demo.local"
console = Console()


def _say(line: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {line}", highlight=False, soft_wrap=True)


# -- SERVICE CHECKS ------------------------------------------------------------------------


def secret_round_trip(endpoints: Endpoints) -> str:
    """A broker credential written to and read from Vault's KV v2 engine."""
    client = hvac.Client(url=endpoints.vault_addr, token=endpoints.vault_token)
    path = "coyote/demo/paper-broker"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"api_key": "demo-key"})
    read = client.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)
    if read["data"]["data"] != {"api_key": "demo-key"}:
        raise RuntimeError("Vault returned another secret than the one written")
    return f"secret/{path} version {read['data']['metadata']['version']}"


# -- PIPELINE ------------------------------------------------------------------------------


async def follow_demo_account(
    endpoints: Endpoints, counts: Counter[tuple[str, str]], stop: asyncio.Event
) -> None:
    """Follows the demo account's intents and execution reports from now on, decoding every
    message: counts intents, fills and rejections per bot."""
    producer = AIOKafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap)
    await producer.start()
    try:
        partitions = [
            await account_partition(producer, topic.name, ACCOUNT)
            for topic in (protocol.INTENTS_TOPIC, protocol.EXECUTION_REPORTS_TOPIC)
        ]
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=endpoints.kafka_bootstrap,
        group_id=None,
        isolation_level="read_committed",
    )
    await consumer.start()
    seen: set[object] = set()  # intents of this run: older ones' reports are not counted
    try:
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        while not stop.is_set():
            batches = await consumer.getmany(*partitions, timeout_ms=200)
            for record in batches.get(partitions[0], []):
                intent = protocol.decode_intent(record.value)
                if intent.account_id == ACCOUNT:
                    counts[(intent.bot_id, "intents")] += 1
                    seen.add(intent.intent_id)
            for record in batches.get(partitions[1], []):
                report = protocol.decode(record.value, protocol.ExecutionReport)
                if report.account_id == ACCOUNT and (
                    report.intent_id in seen or report.order_id in seen
                ):
                    counts[(report.bot_id, report.exec_type.value)] += 1
    finally:
        await consumer.stop()


async def start_executor(endpoints: Endpoints, stop: asyncio.Event) -> asyncio.Task[None]:
    """The executor on the stack's PostgreSQL, serving the accounts of examples/accounts.toml."""
    settings = ExecutorSettings(
        database_url=endpoints.database_url,
        accounts_file=ROOT / "examples" / "accounts.toml",
        group_id="coyote-executor-demo",
        instance_id="demo",
    )
    ready = asyncio.Event()
    task = asyncio.create_task(serve_executor(settings, stop, ready=ready))
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiting}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    if not ready.is_set():
        raise RuntimeError("the executor did not take over its partitions within 60 s")
    return task


class _QuietServer(uvicorn.Server):
    """uvicorn in the demo's own event loop; Ctrl-C stays the demo's to handle."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def prepare_organisation(engine: Engine) -> str:
    """The demo organisation, its admin and its paper account; returns the admin's new
    password (a fresh one every run: the database outlives the demo)."""
    password = secrets.token_urlsafe(12)
    with Session(engine) as session:
        org = session.exec(select(Organization).where(Organization.slug == ORG)).first()
        if org is None:
            org, _, _ = create_organization(
                session,
                slug=ORG,
                name="Coyote demo",
                admin_email=ADMIN_EMAIL,
                admin_password=password,
            )
        else:
            admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
            admin.password_hash = hash_password(password)
            admin.disabled = False
            session.add(admin)
        assert org.id is not None
        if session.exec(select(Account).where(Account.org_id == org.id)).first() is None:
            session.add(
                Account(
                    org_id=org.id,
                    name="paper",
                    broker=Broker.PAPER,
                    venue=VENUE,
                    capital="100000",
                    risk_limits={},
                    created_ms=protocol.now_ms(),
                )
            )
        session.commit()
    return password


async def start_control_plane(
    endpoints: Endpoints, port: int
) -> tuple[_QuietServer, asyncio.Task[None], str]:
    """The control plane (API, reports, dashboard over the executor's records, and the
    supervisor that runs the bots as local processes). Returns the server, its task and the
    admin's password."""
    settings = ControlPlaneSettings(
        port=port,
        supervisor=SupervisorSettings(backend="local"),
        reports=ReportsSettings(database_url=endpoints.database_url),
    )
    engine = make_engine(settings.database_url)
    migrate(engine)
    password = prepare_organisation(engine)
    server = _QuietServer(
        uvicorn.Config(
            create_app(settings, engine=engine),
            host=settings.host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"the control plane did not start on port {port}")
        if time.monotonic() > deadline:
            raise RuntimeError("the control plane did not start within 30 s")
        await asyncio.sleep(0.05)
    return server, task, password


async def demo_api_key(url: str, password: str) -> dict[str, Any]:
    """An API key of the demo's admin for this run, made over HTTP as a user makes one in the
    dashboard: the CLI's way in (``coyote-sdk push``, ``deploy``, ``stop``)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        login = await http.post("/v1/auth/login", json={"email": ADMIN_EMAIL, "password": password})
        login.raise_for_status()
        made = await http.post("/v1/api-keys", json={"name": "demo run", "expires_in_days": 1})
        made.raise_for_status()
        return dict(made.json())


async def revoke_api_key(url: str, key: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        answer = await http.delete(
            f"/v1/api-keys/{key['prefix']}", headers={"Authorization": f"Bearer {key['key']}"}
        )
        answer.raise_for_status()


def deploy_bots(api: ControlPlaneClient) -> None:
    """Pushes each example bot (its bundle) and deploys it to the paper account, started: the
    supervisor launches its runtime. A deployment an interrupted run left behind goes first."""
    existing = {d["name"] for d in api.deployments()}
    for name, file in BOTS.items():
        if name in existing:
            retire(api, name)
        version, _ = api.push(ROOT / "examples" / file, name=name)
        api.deploy(name, bot=name, account="paper", version=version["number"], start=True)


def retire(api: ControlPlaneClient, name: str, within_s: float = 60) -> None:
    """Stops the deployment ``name`` (its runtime cancels its orders, saves its portfolio and
    exits), waits for the supervisor to see it ended, and deletes it."""
    if api.deployment(name)["desired"] != "stopped":
        api.action(name, "stop", reason="the demo ends")
    deadline = time.monotonic() + within_s
    while api.deployment(name)["status"] not in ("stopped", "failed"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"deployment {name} did not stop within {within_s:.0f} s")
        time.sleep(0.2)
    api.delete_deployment(name)


def saved_portfolio(client: redis.Redis, bot_id: str) -> SavedPortfolio | None:
    """The portfolio a bot's runtime saved (as it stopped, or on its schedule)."""
    raw = client.get(protocol.portfolio_key(bot_id))
    return msgspec.json.decode(raw, type=SavedPortfolio) if raw is not None else None


def _eurusd(saved: SavedPortfolio | None) -> tuple[Decimal, Decimal]:
    """(position, realised PnL) in EURUSD of a saved portfolio."""
    for position in saved.portfolio.positions if saved else ():
        if position.symbol == "EURUSD":
            return position.quantity, position.realized_pnl
    return Decimal(0), Decimal(0)


async def reports_of_the_run(url: str, password: str, since_ms: int) -> Table:
    """The bots as the reports API sees them: logged in as the demo's admin, over HTTP."""
    table = Table(
        "bot",
        "fills",
        "closing fills",
        "fees",
        "realised",
        "net PnL",
        title="The same run in /v1/reports/metrics",
    )
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        login = await client.post(
            "/v1/auth/login", json={"email": ADMIN_EMAIL, "password": password}
        )
        login.raise_for_status()
        answer = await client.get("/v1/reports/metrics", params={"start": since_ms, "bucket": "1m"})
        answer.raise_for_status()
    for bot in answer.json()["bots"]:
        table.add_row(
            bot["bot"],
            str(bot["fills"]),
            str(bot["trades"]),
            f"{Decimal(bot['fees']):.2f}",
            f"{Decimal(bot['realized']):.2f}",
            f"{Decimal(bot['net']):.2f}",
        )
    return table


async def run_pipeline(endpoints: Endpoints, seconds: float | None) -> int:
    client = redis.Redis.from_url(endpoints.redis_url)
    # The demo owns its venue: earlier runs' bars would otherwise sit in its history.
    stale = list(client.scan_iter(match=f"coyote:md:{VENUE}:*", count=1000))
    if stale:
        client.delete(*stale)
    bars = rebase(
        read_bars_csv(ROOT / "examples" / "data" / "EURUSD.csv", venue=VENUE), protocol.now_ms()
    )
    pace = ReplayPace(bars_per_second=float(os.environ.get("DEMO_BARS_PER_SECOND", "20")))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    counts: Counter[tuple[str, str]] = Counter()
    started_ms = protocol.now_ms()
    port = int(os.environ.get("DEMO_PORT", "8400"))
    _say("starting the control plane: API, reports and the dashboard")
    control_plane, serving, password = await start_control_plane(endpoints, port)
    url = f"http://127.0.0.1:{port}"
    console.print(
        f"[bold]dashboard:[/bold] {url}/  —  log in as [bold]{ADMIN_EMAIL}[/bold] with "
        f"password [bold]{password}[/bold]",
        highlight=False,
    )
    _say("starting the executor (risk engine, paper broker, PostgreSQL records)")
    executor_stop = asyncio.Event()
    executor = await start_executor(endpoints, executor_stop)
    tap = asyncio.create_task(follow_demo_account(endpoints, counts, stop))
    await asyncio.sleep(0.5)  # the tap is positioned before the first intent can exist

    _say("pushing the example bots and deploying them: the supervisor launches their runtimes")
    key = await demo_api_key(url, password)
    api = ControlPlaneClient(url, key["key"])
    bot_ids = {name: f"{ORG}.{name}" for name in BOTS}
    realised_before = {name: _eurusd(saved_portfolio(client, b))[1] for name, b in bot_ids.items()}
    replay: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(deploy_bots, api)
        for _ in range(600):  # at most a minute: the processes start, rebuild their portfolios
            states = [read_status(client, bot_id) for bot_id in bot_ids.values()]
            if all(s is not None and s.state is RuntimeState.RUNNING for s in states):
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the bots' runtimes did not report running within a minute")
        await asyncio.sleep(1.0)  # they subscribe to the bars a moment after their first beat

        _say(f"replaying {len(bars)} EURUSD hourly bars into {VENUE} at {pace.bars_per_second}/s")
        replay = asyncio.create_task(
            replay_bars(MarketDataWriter(client, venue=VENUE), bars, pace=pace, stop=stop)
        )
        started = time.monotonic()
        while not stop.is_set() and not replay.done():
            await asyncio.sleep(1.0)
            elapsed = time.monotonic() - started
            if int(elapsed) % 10 == 0:
                sent = ", ".join(
                    f"{b} {counts[(f'{ORG}.{b}', 'intents')]} intents / "
                    f"{counts[(f'{ORG}.{b}', 'trade')]} fills"
                    for b in BOTS
                )
                _say(f"{elapsed:.0f} s: {sent}")
            if seconds is not None and elapsed >= seconds:
                break
    finally:
        _say("stopping the bots through the control plane")
        stopped = await asyncio.gather(
            *(asyncio.to_thread(retire, api, name) for name in BOTS), return_exceptions=True
        )
        api.close()
        await revoke_api_key(url, key)
        await asyncio.sleep(1.0)  # the last intents and reports reach the tap
        stop.set()
        executor_stop.set()
        if replay is not None:
            replay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replay
        await tap
        await executor
        reports = await reports_of_the_run(url, password, started_ms)
        control_plane.should_exit = True
        await serving

    table = Table(
        "bot",
        "bars",
        "intents",
        "fills",
        "risk/broker rejects",
        "position",
        "realised PnL",
        "final state",
        title="Coyote demo — bots live on replayed EURUSD bars, orders through the executor",
    )
    for name, bot_id in bot_ids.items():
        status = read_status(client, bot_id)
        quantity, realised = _eurusd(saved_portfolio(client, bot_id))
        table.add_row(
            name,
            str(status.bars if status else "?"),
            str(counts[(bot_id, "intents")]),
            str(counts[(bot_id, "trade")]),
            str(counts[(bot_id, "rejected")]),
            str(quantity),
            f"{realised - realised_before[name]:.2f}",
            status.state.value if status else "?",
        )
    console.print(table)
    console.print(reports)
    for name, outcome in zip(BOTS, stopped, strict=True):
        if isinstance(outcome, BaseException):
            console.print(f"[red]{name} did not stop cleanly:[/red] {outcome!r}")
    console.print(
        "Orders and fills are recorded in PostgreSQL (tables orders, fills, positions); "
        "`make demo` again serves the dashboard while the bots trade.",
        highlight=False,
    )
    client.close()
    return sum(n for (_, kind), n in counts.items() if kind == "trade")


def main() -> int:
    configure_logging(json_lines=False, level=int(os.environ.get("DEMO_LOG_LEVEL", "30")))
    seconds_text = os.environ.get("DEMO_SECONDS")
    seconds = float(seconds_text) if seconds_text else None
    stack = Stack(StackSettings())
    _say("starting the local stack (the first run downloads Kafka's jars)")
    try:
        started = stack.up(progress=_say)
    except StackError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 1
    endpoints = stack.settings.endpoints()
    failures = 0
    checks = Table("service check", "result", "detail")
    for name, check in (("broker credential → Vault", secret_round_trip),):
        try:
            checks.add_row(name, "[green]ok[/green]", check(endpoints))
        except Exception as exc:
            checks.add_row(name, "[red]failed[/red]", f"{type(exc).__name__}: {exc}")
            failures += 1
    console.print(checks)

    if seconds is None:
        _say("bots running; press Ctrl-C to stop")
    fills = asyncio.run(run_pipeline(endpoints, seconds))
    if fills == 0:
        console.print("[red]no order made the round trip from a bot to a fill[/red]")
        failures += 1

    # Stop what the demo started; a stack that was already running stays as it was.
    if started:
        _say("shutting down the services the demo started")
        stack.down(started, progress=_say)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
