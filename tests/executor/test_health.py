"""The executor's health endpoints on the real stack: live and ready once it owns its
partitions, not ready before, not ready (but alive) through a database outage, dead when its
loop stalls; Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from coyote_executor.config import Settings
from coyote_executor.health import ExecutorHealth, HealthServer, health_server
from coyote_executor.service import Executor
from coyote_executor.store import Store
from coyote_sdk.config import Endpoints
from tests.executor._harness import ExecutorHarness, risk_section

pytestmark = pytest.mark.integration


async def get(server: HealthServer, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        return await client.get(path, timeout=5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_running_executor_is_live_ready_and_reports_its_partitions(
    endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    harness = ExecutorHarness(endpoints, unique, tmp_path)
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    try:
        executor = await harness.start_executor()
        with HealthServer(executor.health, host="127.0.0.1") as server:
            live, ready = await get(server, "/healthz"), await get(server, "/readyz")
            steps_before = executor.health.steps
            order = harness.order(quantity="1000")
            await harness.send(order)
            await harness.terminal_reports([order.intent_id])
            metrics = await get(server, "/metrics")

        assert live.status_code == 200
        assert live.json()["status"] == "ok"
        assert ready.status_code == 200
        assert ready.json()["checks"] == {
            "partitions": "ok (0, 1, 2; 1 accounts)",
            "database": "ok",
            "kafka": "ok",
        }
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert "coyote_executor_ready 1.0" in text
        assert "coyote_executor_partitions 3.0" in text
        assert "coyote_executor_accounts 1.0" in text
        assert 'coyote_executor_dependency_up{dependency="database"} 1.0' in text
        assert "process_resident_memory_bytes" in text
        assert executor.health.steps > steps_before
    finally:
        await harness.close()


async def test_metrics_count_the_trading(endpoints: Endpoints, unique: str, tmp_path: Path) -> None:
    harness = ExecutorHarness(
        endpoints,
        unique,
        tmp_path,
        risk=risk_section(max_order_notional="5000"),
        options={"reconcile_interval_s": 60},
    )
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    try:
        executor = await harness.start_executor()
        filled, too_big = harness.order(quantity="1000"), harness.order(quantity="10000")
        resting = harness.limit("1.00000")
        await harness.send(filled, too_big, resting)
        await harness.terminal_reports([filled.intent_id, too_big.intent_id])
        await harness.reports_until(lambda rs: resting.intent_id in {r.order_id for r in rs})
        await asyncio.sleep(1.2)  # open orders and lag are counted once a second
        with HealthServer(executor.health, host="127.0.0.1") as server:
            text = (await get(server, "/metrics")).text
    finally:
        await harness.close()

    def value(sample: str) -> float:
        (line,) = [x for x in text.splitlines() if x.startswith(sample + " ")]
        return float(line.rsplit(" ", 1)[1])

    assert value('coyote_executor_intents_total{action="new"}') == 3
    assert value('coyote_executor_rejections_total{reason="risk.max_order_notional"}') == 1
    assert value('coyote_executor_reports_total{exec_type="trade"}') == 1
    assert value('coyote_executor_reports_total{exec_type="accepted"}') == 2
    assert value('coyote_executor_open_orders{status="new"}') == 1
    submits = 'coyote_executor_broker_call_seconds_count{broker="paper",call="submit"}'
    assert value(submits) >= 1
    assert sum(value(f'coyote_executor_consumer_lag{{partition="{p}"}}') for p in range(3)) == 0


async def test_before_it_owns_partitions_it_is_alive_but_not_ready(
    endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    harness = ExecutorHarness(endpoints, unique, tmp_path)
    client = aioredis.Redis.from_url(endpoints.redis_url)
    executor = Executor(
        harness.accounts,
        brokers=dict.fromkeys(harness.accounts, object()),  # type: ignore[arg-type]
        store=harness.store,
        redis=client,
        kafka_bootstrap=endpoints.kafka_bootstrap,
        options=harness.options,
    )
    try:
        with HealthServer(executor.health, host="127.0.0.1") as server:
            live, ready = await get(server, "/healthz"), await get(server, "/readyz")
            missing = await get(server, "/nope")
    finally:
        await client.aclose()
        harness.store.close()
        harness.sync_redis.close()

    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["checks"]["partitions"].startswith("down: not assigned yet")
    assert missing.status_code == 404


async def test_through_a_database_outage_it_stays_alive_but_is_not_ready(
    endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    harness = ExecutorHarness(endpoints, unique, tmp_path)
    client = aioredis.Redis.from_url(endpoints.redis_url)
    # A PostgreSQL that does not answer: the executor waits it out before doing anything.
    store = Store(f"postgresql+psycopg://coyote@127.0.0.1:{closed_port()}/coyote")
    executor = Executor(
        harness.accounts,
        brokers=dict.fromkeys(harness.accounts, object()),  # type: ignore[arg-type]
        store=store,
        redis=client,
        kafka_bootstrap=endpoints.kafka_bootstrap,
        options=harness.options,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(executor.run(stop))
    try:
        with HealthServer(executor.health, host="127.0.0.1", stale_after_s=2.0) as server:
            for _ in range(100):  # the first failed connection, within 10 s
                if executor.health.database_error is not None:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.5)  # longer than stale_after_s: retries count as progress
            live, ready = await get(server, "/healthz"), await get(server, "/readyz")
            metrics = await get(server, "/metrics")
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
        store.close()
        await client.aclose()
        harness.store.close()
        harness.sync_redis.close()

    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("down: OperationalError")
    assert 'coyote_executor_dependency_up{dependency="database"} 0.0' in metrics.text


async def test_a_stalled_loop_fails_liveness(
    endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    harness = ExecutorHarness(endpoints, unique, tmp_path)
    await harness.setup()
    try:
        executor = await harness.start_executor()
        await harness.stop_executor()  # the loop no longer makes progress
        with HealthServer(executor.health, host="127.0.0.1", stale_after_s=0.3) as server:
            await asyncio.sleep(0.5)
            live, ready = await get(server, "/healthz"), await get(server, "/readyz")
    finally:
        await harness.close()

    assert live.status_code == 503
    assert live.json()["checks"]["loop"].startswith("stalled: no progress for")
    assert ready.status_code == 503
    assert ready.json()["checks"]["executor"] == "down: stopping"


@pytest.mark.unit
async def test_the_server_is_off_unless_a_port_is_set() -> None:
    health = ExecutorHealth()

    assert health_server(Settings(health_port=None), health) is None
    server = health_server(Settings(health_port=0, health_host="127.0.0.1"), health)
    assert server is not None
    try:
        assert (await get(server, "/healthz")).status_code == 200
    finally:
        server.close()


@pytest.mark.unit
def test_liveness_and_readiness_follow_what_the_loop_reports() -> None:
    now = [100.0]
    health = ExecutorHealth(clock=lambda: now[0])

    health.assigned([2, 0], accounts=3)
    health.stepped()
    assert health.readiness().ok
    assert health.readiness().checks["partitions"] == "ok (0, 2; 3 accounts)"

    health.kafka(ConnectionError("broker gone\nsecond line"))
    assert health.readiness().checks["kafka"] == "down: ConnectionError: broker gone"
    health.kafka(None)
    health.revoked()
    assert not health.readiness().ok

    now[0] += 61
    assert not health.liveness(60).ok
    health.database(TimeoutError())  # an outage retried is progress
    assert health.liveness(60).ok
    assert health.readiness().checks["database"] == "down: TimeoutError"
