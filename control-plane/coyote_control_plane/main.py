"""The FastAPI application: routes, error shapes, metrics, and the background parts (event
hub, supervisor, webhook notifier) started and stopped with it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.engine import Engine

from coyote_control_plane import dashboard, errors
from coyote_control_plane.api.routes import (
    accounts,
    audit,
    auth,
    bots,
    canaries,
    deployments,
    health,
    reports,
    risk,
    signing,
    users,
    webhooks,
)
from coyote_control_plane.api.routes import (
    events as event_routes,
)
from coyote_control_plane.config import Settings
from coyote_control_plane.context import ControlPlane
from coyote_control_plane.db import make_engine, migrate
from coyote_control_plane.events import EventHub
from coyote_control_plane.metrics import Metrics
from coyote_control_plane.notifications import Notifier
from coyote_control_plane.supervisor import (
    IntentProducer,
    LocalBackend,
    RuntimeBackend,
    Supervisor,
)
from coyote_control_plane.supervisor.redis_acl import RuntimeRedisAccess, secret_from_file
from coyote_reports import Reports
from coyote_reports import make_engine as make_reports_engine
from coyote_sdk import protocol
from coyote_sdk._version import __version__
from coyote_sdk.config import Endpoints
from coyote_sdk.runtime import ProcessLimits

logger = logging.getLogger("coyote.control_plane")


def _operation_id(route: APIRoute) -> str:
    # Stable names for generated clients: "<tag>-<function>", e.g. "bots-push_version".
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def runtime_env(endpoints: Endpoints) -> dict[str, str]:
    """What every bot runtime needs to find the stack. Its Redis URL is its own, with its own
    user: the supervisor adds it (:func:`runtime_redis_access`)."""
    return {"COYOTE_KAFKA_BOOTSTRAP": endpoints.kafka_bootstrap}


def runtime_redis_access(
    settings: Settings, endpoints: Endpoints, client: redis.Redis
) -> RuntimeRedisAccess:
    """How the supervisor's runtimes reach Redis: each with a user of its own, its password
    derived from ``supervisor.redis_acl_secret`` (or a key generated in the control plane's
    home), unless ``supervisor.redis_acl`` is off."""
    supervisor = settings.supervisor
    secret: bytes | None = None
    if supervisor.redis_acl and supervisor.redis_acl_secret is not None:
        secret = supervisor.redis_acl_secret.get_secret_value().encode()
    elif supervisor.redis_acl:
        home = settings.stack.home / "control-plane"
        home.mkdir(parents=True, exist_ok=True)
        secret = secret_from_file(home / "redis-acl.key")
    return RuntimeRedisAccess(client, endpoints.redis_url, secret=secret)


def make_backend(settings: Settings, endpoints: Endpoints) -> RuntimeBackend | None:
    chosen = settings.supervisor.backend
    if chosen == "none":
        return None
    if chosen == "kubernetes":
        from coyote_control_plane.supervisor.kubernetes import KubernetesBackend

        supervisor = settings.supervisor
        return KubernetesBackend.in_cluster(
            image=supervisor.kubernetes_image,
            namespace=supervisor.kubernetes_namespace,
            env=runtime_env(endpoints),
            service_account=supervisor.kubernetes_service_account,
            resources=supervisor.kubernetes_resources,
            image_pull_policy=supervisor.kubernetes_image_pull_policy,
        )
    limits = ProcessLimits(
        memory_mb=settings.supervisor.local_memory_mb,
        open_files=settings.supervisor.local_open_files,
        cpu_seconds=settings.supervisor.local_cpu_seconds,
    )
    return LocalBackend(
        settings.stack.home / "control-plane", env=runtime_env(endpoints), limits=limits
    )


GRACEFUL_SHUTDOWN_S = 10
"""How long the stopping server waits for the responses under way before cancelling them
(uvicorn's ``timeout_graceful_shutdown``): a live stream — the events, a runtime's log followed
— never ends by itself, and would hold the shutdown (the supervisor's stop, the event hub's)
until the process is killed."""


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    reports_engine: Engine | None = None,
    backend: RuntimeBackend | None = None,
    reports_topic: str = protocol.EXECUTION_REPORTS_TOPIC.name,
    notifier_options: dict[str, Any] | None = None,
) -> FastAPI:
    """The control plane's app.

    Args:
        settings: From the environment by default.
        engine: The database; made from ``settings.database_url`` by default.
        reports_engine: The executor's database the reports read; made from
            ``settings.reports`` by default.
        backend: Where the supervisor runs bots; from ``settings.supervisor.backend`` by
            default. No supervisor runs when the setting is ``none`` and none is given.
        reports_topic: The execution reports topic the live events follow.
        notifier_options: Options of the webhook :class:`Notifier` (tests shorten backoffs).
    """
    settings = settings or Settings()
    endpoints = settings.stack.endpoints()
    engine = engine or make_engine(settings.database_url, schema=settings.database_schema)
    reports_engine = reports_engine or make_reports_engine(
        settings.reports.database_url, schema=settings.reports.database_schema
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            migrate(engine)
        client = redis.Redis.from_url(endpoints.redis_url, socket_timeout=5)
        hub = EventHub(
            redis_url=endpoints.redis_url,
            kafka_bootstrap=endpoints.kafka_bootstrap,
            reports_topic=reports_topic,
        )
        context = ControlPlane(
            settings=settings,
            endpoints=endpoints,
            engine=engine,
            redis=client,
            events=hub,
            metrics=metrics,
            reports=Reports(reports_engine),
        )
        chosen = backend or make_backend(settings, endpoints)
        notifier = None
        if chosen is not None:
            context.supervisor = Supervisor(
                engine,
                client,
                chosen,
                settings.supervisor,
                IntentProducer(endpoints.kafka_bootstrap),
                redis_access=runtime_redis_access(settings, endpoints, client),
            )
            notifier = Notifier(engine, hub, **(notifier_options or {}))
        app.state.context = context
        await hub.start()
        if notifier is not None:
            await notifier.start()
        if context.supervisor is not None:
            context.supervisor.start()
        try:
            yield
        finally:
            if context.supervisor is not None:
                context.supervisor.stop()
            if notifier is not None:
                await notifier.close()
            await hub.close()
            client.close()

    app = FastAPI(
        title="Coyote control plane",
        version=__version__,
        description="Bots, releases, deployments, accounts, risk limits, users and live events. "
        "Authenticate with an API key (`Authorization: Bearer cyk_...`) or a dashboard session. "
        'Every error is `{"error": {"code", "message", "field"}}`.',
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    metrics = Metrics(engine)
    app.middleware("http")(metrics.middleware)
    errors.install(app)
    for module in (
        health,
        auth,
        users,
        accounts,
        bots,
        deployments,
        canaries,
        risk,
        audit,
        event_routes,
        webhooks,
        reports,
        signing,
    ):
        app.include_router(module.router)
    app.include_router(dashboard.router)  # the web dashboard at / and /ui/, not in the schema
    _document_validation_errors(app)
    return app


def _document_validation_errors(app: FastAPI) -> None:
    """Makes the OpenAPI schema tell the truth about errors: 422s have our error shape, not
    FastAPI's default ``HTTPValidationError``, and every error is JSON."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        ref = {"$ref": "#/components/schemas/ErrorResponse"}
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for status, answer in operation.get("responses", {}).items():
                    if status == "422":
                        answer["description"] = errors._DESCRIPTIONS[422]
                    # Errors are JSON even from routes whose success is text or a stream.
                    schemas = [c.get("schema") for c in answer.get("content", {}).values()]
                    if status == "422" or ref in schemas:
                        answer["content"] = {"application/json": {"schema": ref}}
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
