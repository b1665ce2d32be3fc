"""The main job behind `make demo`.

Until the whole pipeline lands (bots → Kafka → executor → reports), the demo is a smoke run of
the platform's foundations on the real local stack: real EURUSD quotes go into RedisTimeSeries
and come back as daily bars derived by a compaction rule, an order intent makes a round trip
through Kafka, a broker credential through Vault, and a fill row through PostgreSQL.

Environment:
    DEMO_SECONDS: stop by itself after this many seconds instead of running until Ctrl-C.
        Either way the demo then stops the services it started (a stack that was already
        running is left running). The exit code is non-zero if any round trip failed.
"""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import hvac
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table
from sqlmodel import Field, Session, SQLModel, create_engine, select

from coyote_sdk import protocol
from coyote_sdk.config import Endpoints, StackSettings
from coyote_sdk.dev import Stack, StackError

ROOT = Path(__file__).resolve().parents[1]
console = Console()


def _say(line: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {line}", highlight=False, soft_wrap=True)


# -- ROUND TRIPS ---------------------------------------------------------------------------


def market_data_round_trip(endpoints: Endpoints) -> str:
    """Real EURUSD hourly closes in, daily highs out via a RedisTimeSeries compaction rule."""
    client = redis.Redis.from_url(endpoints.redis_url)
    ts = client.ts()
    raw = protocol.market_data_key("demo", "EURUSD", "price")
    daily_high = protocol.market_data_key("demo", "EURUSD", "high", protocol.Timeframe.D1)
    client.delete(raw, daily_high)
    labels = {"venue": "demo", "symbol": "EURUSD"}
    ts.create(raw, labels={**labels, "field": "price", "timeframe": "raw"})
    ts.create(daily_high, labels={**labels, "field": "high", "timeframe": "1d"})
    ts.createrule(raw, daily_high, "max", protocol.Timeframe.D1.milliseconds)

    with (ROOT / "examples" / "data" / "EURUSD.csv").open() as f:
        rows = list(csv.reader(f))[1:]
    samples = [
        (raw, int(datetime.fromisoformat(row[0]).replace(tzinfo=UTC).timestamp() * 1000), row[4])
        for row in rows
    ]
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(samples), 1000):
        pipe.ts().madd(samples[start : start + 1000])
    pipe.execute()

    stored = ts.range(raw, "-", "+")
    days = ts.range(daily_high, "-", "+")
    client.close()
    if len(stored) != len(samples):
        raise RuntimeError(f"wrote {len(samples)} ticks but read back {len(stored)}")
    if not days:
        raise RuntimeError("the compaction rule derived no daily bars")
    return f"{len(stored)} ticks in, {len(days)} daily bars derived (rule max/1d)"


async def intent_round_trip(endpoints: Endpoints) -> str:
    """One order intent through Kafka with the idempotent producer, read back by offset."""
    intent = protocol.NewOrder(
        intent_id=protocol.new_intent_id(),
        ts_ms=protocol.now_ms(),
        account_id="paper-demo",
        bot_id="smoke",
        symbol="EURUSD",
        side=protocol.Side.BUY,
        quantity=Decimal("10000"),
        order_type=protocol.OrderType.LIMIT,
        limit_price=Decimal("1.07219"),
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=endpoints.kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            protocol.INTENTS_TOPIC.name, protocol.encode(intent), key=intent.account_id.encode()
        )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=endpoints.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        partition = TopicPartition(sent.topic, sent.partition)
        consumer.assign([partition])
        consumer.seek(partition, sent.offset)
        record = await asyncio.wait_for(consumer.getone(), timeout=15)
    finally:
        await consumer.stop()
    received = protocol.decode_intent(record.value)
    if received != intent:
        raise RuntimeError(f"sent {intent} but read back {received}")
    return (
        f"{received.intent_id} → {sent.topic}[{sent.partition}]@{sent.offset}, "
        f"limit {received.limit_price} exact"  # type: ignore[union-attr]
    )


def secret_round_trip(endpoints: Endpoints) -> str:
    """A broker credential written to and read from Vault's KV v2 engine."""
    client = hvac.Client(url=endpoints.vault_addr, token=endpoints.vault_token)
    path = "coyote/demo/paper-broker"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"api_key": "demo-key"})
    read = client.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)
    if read["data"]["data"] != {"api_key": "demo-key"}:
        raise RuntimeError("Vault returned another secret than the one written")
    return f"secret/{path} version {read['data']['metadata']['version']}"


class DemoFill(SQLModel, table=True):
    __tablename__ = "demo_fills"

    id: int | None = Field(default=None, primary_key=True)
    symbol: str
    quantity: Decimal = Field(max_digits=28, decimal_places=10)
    price: Decimal = Field(max_digits=28, decimal_places=10)


def database_round_trip(endpoints: Endpoints) -> str:
    """One fill row written to and read from PostgreSQL through SQLModel."""
    engine = create_engine(endpoints.database_url)
    SQLModel.metadata.create_all(engine, tables=[DemoFill.__table__])  # type: ignore[list-item]
    with Session(engine) as session:
        fill = DemoFill(symbol="EURUSD", quantity=Decimal("10000"), price=Decimal("1.07219"))
        session.add(fill)
        session.commit()
        stored = session.exec(select(DemoFill).where(DemoFill.id == fill.id)).one()
        count = len(session.exec(select(DemoFill)).all())
    engine.dispose()
    if stored.price != Decimal("1.07219"):
        raise RuntimeError(f"stored price came back as {stored.price}")
    return f"fill #{stored.id} at {stored.price.normalize()} ({count} rows in demo_fills)"


# -- MAIN ----------------------------------------------------------------------------------


def main() -> int:
    seconds = os.environ.get("DEMO_SECONDS")
    deadline = time.monotonic() + float(seconds) if seconds else None
    stack = Stack(StackSettings())
    _say("starting the local stack (the first run downloads Kafka's jars)")
    try:
        started = stack.up(progress=_say)
    except StackError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 1
    endpoints = stack.settings.endpoints()

    checks: list[tuple[str, Callable[[], str]]] = [
        ("market data → RedisTimeSeries", lambda: market_data_round_trip(endpoints)),
        ("order intent → Kafka", lambda: asyncio.run(intent_round_trip(endpoints))),
        ("broker secret → Vault", lambda: secret_round_trip(endpoints)),
        ("fill → PostgreSQL", lambda: database_round_trip(endpoints)),
    ]
    table = Table("round trip", "result", "detail", "ms", title="Coyote smoke run")
    failures = 0
    for name, check in checks:
        began = time.perf_counter()
        try:
            detail, result = check(), "[green]ok[/green]"
        except Exception as exc:
            detail, result = f"{type(exc).__name__}: {exc}", "[red]failed[/red]"
            failures += 1
        table.add_row(name, result, detail, f"{(time.perf_counter() - began) * 1000:.0f}")
    console.print(table)
    console.print(
        "The full pipeline (bots, executor, dashboard) joins this demo as it lands; see README.md.",
        highlight=False,
    )

    try:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                _say(f"running for {remaining:.0f} more s (DEMO_SECONDS={seconds})")
                time.sleep(remaining)
        else:
            _say("the stack is running; press Ctrl-C to stop it")
            signal.pause()
    except KeyboardInterrupt:
        pass
    # Stop what the demo started; a stack that was already running stays as it was.
    if started:
        _say("shutting down the services the demo started")
        stack.down(started, progress=_say)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
