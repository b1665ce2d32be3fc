"""kill -9 the executor in the middle of 10,000 intents, restart it: every intent gets exactly one
terminal report, and the paper broker saw each client order id at most once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from coyote_executor.store import Store
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.dev import ensure_topics
from coyote_sdk.marketdata import MarketDataWriter
from coyote_sdk.protocol import ExecutionReport, NewOrder, Side, Trade

pytestmark = [pytest.mark.faults, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
INTENTS = 10_000


def start_executor(
    config: dict[str, str], log: Path, failpoint: str | None = None
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop("COYOTE_EXECUTOR_FAILPOINT", None)
    if failpoint is not None:
        env["COYOTE_EXECUTOR_FAILPOINT"] = failpoint
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.faults._executor_process", json.dumps(config)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


@pytest.mark.parametrize(
    "failpoint",
    [
        None,  # kill -9 from outside, wherever the executor happens to be
        "decided:4",  # orders recorded as pending_new, none sent
        "sent:4",  # orders at the broker, their outcome not recorded
        "recorded:4",  # outcome recorded, reports and offsets not committed to Kafka
    ],
)
async def test_kill_9_mid_flow_loses_no_intent_and_duplicates_no_order(
    endpoints: Endpoints, unique: str, tmp_path: Path, failpoint: str | None
) -> None:
    account, venue = f"crash-{unique}", f"v{unique}"
    accounts_file = tmp_path / "accounts.toml"
    accounts_file.write_text(
        f"""
[accounts.{account}]
broker = "paper"
venue = "{venue}"
[accounts.{account}.risk.instruments.EURUSD]
tick_size = "0.00001"
"""
    )
    config = {
        "accounts_file": str(accounts_file),
        "database_url": f"sqlite:///{tmp_path / 'executor.db'}",
        "group_id": f"crash-{unique}",
        "intents_topic": f"test.{unique}.intents",
        "reports_topic": f"test.{unique}.reports",
        "dead_letter_topic": f"test.{unique}.dlq",
    }
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [
            protocol.TopicSpec(name=config["intents_topic"], partitions=3, key="account_id"),
            protocol.TopicSpec(name=config["reports_topic"], partitions=3, key="account_id"),
            protocol.TopicSpec(name=config["dead_letter_topic"], partitions=1, key="-"),
        ],
    )
    client = redis.Redis.from_url(endpoints.redis_url)
    MarketDataWriter(client, venue=venue, publish=False).add_trades(
        [
            Trade(
                symbol="EURUSD",
                venue=venue,
                ts_ms=protocol.now_ms(),
                price=Decimal("1.075"),
                size=Decimal(1),
            )
        ]
    )
    log = tmp_path / "executor.log"
    process = start_executor(config, log, failpoint)
    producer = AIOKafkaProducer(
        bootstrap_servers=endpoints.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    reports = AIOKafkaConsumer(
        config["reports_topic"],
        bootstrap_servers=endpoints.kafka_bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        group_id=None,
    )
    await producer.start()
    await reports.start()
    received: list[ExecutionReport] = []

    async def read_reports(until: object, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not until() and time.monotonic() < deadline:  # type: ignore[operator]
            batch = await reports.getmany(timeout_ms=200)
            for records in batch.values():
                received.extend(protocol.decode(r.value, ExecutionReport) for r in records)

    try:
        sides = (Side.BUY, Side.SELL)
        intents = [
            NewOrder(
                intent_id=protocol.new_intent_id(),
                ts_ms=protocol.now_ms(),
                account_id=account,
                bot_id=f"bot-{i % 4}",
                symbol="EURUSD",
                side=sides[i % 2],
                quantity=Decimal(1 + i % 7),
            )
            for i in range(INTENTS)
        ]

        async def produce() -> None:
            for intent in intents:
                await producer.send(
                    config["intents_topic"], protocol.encode(intent), key=account.encode()
                )
            await producer.flush()

        producing = asyncio.create_task(produce())
        if failpoint is None:
            # Kill it once it is well into the flow, then start a new one on the same records.
            await read_reports(lambda: len(received) >= 3_000, 120)
            assert len(received) >= 3_000, f"the executor answered only {len(received)} intents"
            os.kill(process.pid, signal.SIGKILL)
        assert await asyncio.to_thread(process.wait, 120) != 0
        answered_at_kill = len({r.order_id for r in received if r.order_status.is_terminal})
        await producing
        process = start_executor(config, log)

        wanted = {i.intent_id for i in intents}

        def all_terminal() -> bool:
            return wanted <= {r.order_id for r in received if r.order_status.is_terminal}

        await read_reports(all_terminal, 180)

        terminal = Counter(r.order_id for r in received if r.order_status.is_terminal)
        missing = wanted - set(terminal)
        assert not missing, f"{len(missing)} intents never got a terminal report"
        assert {o: n for o, n in terminal.items() if n != 1} == {}
        report_ids = Counter(r.report_id for r in received)
        assert {r: n for r, n in report_ids.items() if n != 1} == {}
        submissions = client.hgetall(f"coyote:paper:{account}:submissions")
        assert len(submissions) == INTENTS
        assert {k: v for k, v in submissions.items() if v != b"1"} == {}
        assert answered_at_kill < INTENTS, "the kill landed after the flow had finished"
        if failpoint is not None:
            assert f"failpoint {failpoint.partition(':')[0]} reached" in log.read_text()
        store = Store(config["database_url"])
        assert store.verify_positions(account) == []
        store.close()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        await producer.stop()
        await reports.stop()
        for pattern in (f"coyote:md:{venue}:*", f"coyote:paper:{account}:*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
        client.close()
