"""Round trips through each real service of the local stack."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import hvac
import pytest
import redis
import sqlalchemy
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlmodel import Field, Session, SQLModel, select

from coyote_sdk import protocol
from coyote_sdk.config import Endpoints, StackSettings
from coyote_sdk.dev import _services
from coyote_sdk.dev._services import _kafka_cluster_id

pytestmark = pytest.mark.integration


def test_redis_stack_loads_the_timeseries_module(redis_ts: tuple[redis.Redis, str]) -> None:
    client, _ = redis_ts

    names = {m[b"name"] for m in client.module_list()}

    assert b"timeseries" in names


def test_timeseries_round_trip_with_labels_and_a_compaction_rule(
    redis_ts: tuple[redis.Redis, str],
) -> None:
    client, prefix = redis_ts
    ts = client.ts()
    raw, per_minute = f"{prefix}GOOG:raw:price", f"{prefix}GOOG:1m:high"
    labels = {"symbol": "GOOG", "field": "price", "suite": prefix.rstrip(":")}
    ts.create(raw, labels=labels, duplicate_policy="last")
    ts.create(per_minute, labels={**labels, "timeframe": "1m"})
    ts.createrule(raw, per_minute, aggregation_type="max", bucket_size_msec=60_000)
    # Two full minutes of ticks, then one tick that closes the second bucket.
    ticks = [(0, 100.5), (15_000, 101.25), (59_999, 100.75), (60_000, 99.5), (119_000, 98.0)]
    ts.madd([(raw, t, price) for t, price in ticks] + [(raw, 120_000, 97.0)])

    raw_points = ts.range(raw, 0, "+")
    bars = ts.range(per_minute, 0, "+")
    found = ts.mrange(0, "+", filters=[f"suite={labels['suite']}", "timeframe=1m"])

    assert raw_points[:5] == ticks
    assert bars == [(0, 101.25), (60_000, 99.5)]
    assert [next(iter(series)) for series in found] == [per_minute]


async def test_kafka_idempotent_producer_and_consumer_group_commit(
    endpoints: Endpoints, kafka_topic: str, unique: str
) -> None:
    intents = [
        protocol.NewOrder(
            intent_id=protocol.new_intent_id(),
            ts_ms=protocol.now_ms(),
            account_id=f"acct-{i % 2}",
            bot_id="smoke",
            symbol="GOOG",
            side=protocol.Side.BUY,
            quantity=Decimal("1.5"),
        )
        for i in range(6)
    ]
    producer = AIOKafkaProducer(
        bootstrap_servers=endpoints.kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        for intent in intents:
            await producer.send_and_wait(
                kafka_topic, protocol.encode(intent), key=intent.account_id.encode()
            )
    finally:
        await producer.stop()

    group = f"test-group-{unique}"
    first = AIOKafkaConsumer(
        kafka_topic,
        bootstrap_servers=endpoints.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await first.start()
    received: list[protocol.OrderIntent] = []
    partitions_of: dict[str, set[int]] = {}
    try:
        while len(received) < len(intents):
            batches = await asyncio.wait_for(first.getmany(timeout_ms=1000), timeout=30)
            for tp, records in batches.items():
                for record in records:
                    intent = protocol.decode_intent(record.value)
                    received.append(intent)
                    partitions_of.setdefault(intent.account_id, set()).add(tp.partition)
        await first.commit()
        committed = {
            p: await first.committed(TopicPartition(kafka_topic, p))
            for p in first.partitions_for_topic(kafka_topic) or ()
        }
    finally:
        await first.stop()

    # A second member of the group starts from the committed offsets: nothing is redelivered.
    second = AIOKafkaConsumer(
        kafka_topic,
        bootstrap_servers=endpoints.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await second.start()
    try:
        redelivered = await second.getmany(timeout_ms=3000)
    finally:
        await second.stop()

    assert sorted(i.intent_id for i in received) == sorted(i.intent_id for i in intents)
    assert all(len(parts) == 1 for parts in partitions_of.values())  # keyed by account
    assert sum(offset or 0 for offset in committed.values()) == len(intents)
    assert not any(redelivered.values())


class SmokeFill(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    symbol: str
    quantity: Decimal = Field(max_digits=28, decimal_places=10)
    price: Decimal = Field(max_digits=28, decimal_places=10)


def test_postgres_round_trip_through_sqlmodel_keeps_decimals_exact(
    postgres: sqlalchemy.Engine,
) -> None:
    SQLModel.metadata.create_all(postgres, tables=[SmokeFill.__table__])  # type: ignore[list-item]
    with Session(postgres) as session:
        session.add(SmokeFill(symbol="EURUSD", quantity=Decimal("0.1"), price=Decimal("1.07219")))
        session.add(SmokeFill(symbol="EURUSD", quantity=Decimal("0.2"), price=Decimal("1.0726")))
        session.commit()

    with Session(postgres) as session:
        fills = session.exec(select(SmokeFill).order_by(SmokeFill.id)).all()  # type: ignore[arg-type]
        server_version = session.connection().dialect.server_version_info

    assert [f.quantity for f in fills] == [Decimal("0.1"), Decimal("0.2")]
    assert sum(f.quantity for f in fills) == Decimal("0.3")
    assert fills[0].price == Decimal("1.07219")
    assert server_version is not None
    assert server_version[0] >= 15


def test_vault_kv_v2_round_trip_keeps_versions(vault: tuple[hvac.Client, str]) -> None:
    client, prefix = vault
    path = f"{prefix}/paper-broker"

    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"api_key": "k1"})
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"api_key": "k2"})
    latest = client.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)
    first = client.secrets.kv.v2.read_secret_version(
        path=path, version=1, raise_on_deleted_version=True
    )

    assert latest["data"]["data"] == {"api_key": "k2"}
    assert latest["data"]["metadata"]["version"] == 2
    assert first["data"]["data"] == {"api_key": "k1"}
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(
            path=f"{prefix}/missing", raise_on_deleted_version=True
        )


def test_kafka_storage_is_formatted_whatever_its_cluster_id_begins_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # URL-safe base64 has "-": one id in 64 begins with it, which the format tool once took for
    # an option (a fresh machine's `make test` failed on it).
    cluster_id = "-" + _kafka_cluster_id()[1:]
    monkeypatch.setattr(_services, "_kafka_cluster_id", lambda: cluster_id)
    kafka = _services.Kafka(StackSettings(home=tmp_path))

    kafka.prepare(lambda _: None)

    meta = (kafka.dir / "data" / "meta.properties").read_text()
    assert f"cluster.id={cluster_id}" in meta
