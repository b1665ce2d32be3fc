"""Liveness, readiness (database, Redis, Kafka) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from coyote_control_plane.api.deps import ContextDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/healthz")
def healthz() -> Health:
    """The process answers (liveness)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "A dependency is down"}},
)
async def readyz(context: ContextDep) -> JSONResponse:
    """Whether the database, Redis and Kafka answer (readiness); 503 names what does not."""

    def database() -> None:
        with context.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    async def kafka() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=context.endpoints.kafka_bootstrap, request_timeout_ms=3000
        )
        await admin.start()
        try:
            await admin.describe_cluster()
        finally:
            await admin.close()

    checks: dict[str, str] = {}
    for name, probe in (
        ("database", lambda: run_in_threadpool(database)),
        ("redis", lambda: run_in_threadpool(context.redis.ping)),
        ("kafka", kafka),
    ):
        started = time.monotonic()
        try:
            await asyncio.wait_for(probe(), timeout=5)
            checks[name] = f"ok ({(time.monotonic() - started) * 1000:.0f} ms)"
        except Exception as exc:
            checks[name] = f"down: {type(exc).__name__}: {exc}"[:300]
    ok = all(check.startswith("ok") for check in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(context: ContextDep) -> Response:
    """Prometheus metrics: requests by route and status, latencies, deployments by status."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(context.metrics.registry), media_type=CONTENT_TYPE_LATEST)
