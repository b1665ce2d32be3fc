"""A control plane per test on the real stack: its own PostgreSQL schema, served over HTTP by
uvicorn, organisations with a user of every role, and an HTTP client for each."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis
import sqlalchemy
import uvicorn
from fastapi import FastAPI
from sqlmodel import Session

from coyote_control_plane.bootstrap import create_organization
from coyote_control_plane.config import Settings, SupervisorSettings
from coyote_control_plane.db import migrate
from coyote_control_plane.main import GRACEFUL_SHUTDOWN_S, create_app, runtime_env
from coyote_control_plane.models import Role
from coyote_control_plane.supervisor import LocalBackend, RuntimeBackend
from coyote_control_plane.supervisor.redis_acl import USER_PREFIX
from coyote_executor.store import Store
from coyote_reports import ReportsSettings
from coyote_sdk import protocol
from coyote_sdk.bundles import Bundle, build_bundle
from coyote_sdk.config import Endpoints, StackSettings

if TYPE_CHECKING:
    from tests.control_plane._trading import Trading

REPO = Path(__file__).resolve().parents[2]
ROLES = ("admin", "trader", "risk", "viewer")


@dataclasses.dataclass
class Org:
    """An organisation of the test, with a client authenticated as each role."""

    slug: str
    clients: dict[str, httpx.Client]

    def __getattr__(self, role: str) -> httpx.Client:
        try:
            return self.clients[role]
        except KeyError:
            raise AttributeError(role) from None


@dataclasses.dataclass
class ControlPlaneUnderTest:
    app: FastAPI
    url: str
    engine: sqlalchemy.Engine
    unique: str
    acme: Org
    globex: Org
    """A second organisation: nothing of acme's may be visible or touchable from it."""

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serves ``app`` (lifespan included) on a free port in a thread; yields its URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the control plane did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        if thread.is_alive() and thread.ident is not None:
            # Left behind (a daemon thread); its stack says what its shutdown waits for.
            print("[tests] the control plane did not stop in 30 s:", file=sys.__stderr__)
            traceback.print_stack(sys._current_frames()[thread.ident], file=sys.__stderr__)


def make_org(url: str, engine: sqlalchemy.Engine, slug: str) -> Org:
    with Session(engine) as session:
        _, _, admin_key = create_organization(
            session, slug=slug, name=slug.title(), admin_email=f"admin@{slug}.example"
        )
    clients = {"admin": _client(url, admin_key)}
    for role in ROLES[1:]:
        answer = clients["admin"].post(
            "/v1/users", json={"email": f"{role}@{slug}.example", "role": role}
        )
        assert answer.status_code == 201, answer.text
    # Keys of the other users are made by logging in as them: an admin cannot make keys for
    # someone else, so each user gets a password first.
    users = clients["admin"].get("/v1/users").json()
    for role in ROLES[1:]:
        user_id = next(u["id"] for u in users if u["role"] == role)
        clients["admin"].patch(f"/v1/users/{user_id}", json={"password": "correct-horse-battery"})
        session_client = httpx.Client(base_url=url, timeout=30)
        login = session_client.post(
            "/v1/auth/login",
            json={"email": f"{role}@{slug}.example", "password": "correct-horse-battery"},
        )
        assert login.status_code == 200, login.text
        key = session_client.post("/v1/api-keys", json={"name": "tests"}).json()["key"]
        clients[role] = _client(url, key)
    return Org(slug=slug, clients=clients)


def _client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def control_plane(
    postgres: sqlalchemy.Engine,
    unique: str,
    *,
    backend: RuntimeBackend | None = None,
    supervisor: SupervisorSettings | None = None,
    **settings: Any,
) -> Iterator[ControlPlaneUnderTest]:
    stack = StackSettings()
    # The reports read the executor's tables from the test's schema, as the executor makes them.
    schema = f"test_{unique}"
    executor_store = Store(
        stack.endpoints().database_url, connect_args={"options": f"-csearch_path={schema}"}
    )
    executor_store.create_schema()
    executor_store.close()
    settings.setdefault(
        "reports",
        ReportsSettings(database_url=stack.endpoints().database_url, database_schema=schema),
    )
    options = Settings(
        supervisor=supervisor or SupervisorSettings(backend="none"),
        stack=stack,
        auto_migrate=False,
        **settings,
    )
    migrate(postgres)
    app = create_app(options, engine=postgres, backend=backend, **_app_options())
    slugs = [f"acme{unique[:8]}", f"globex{unique[:8]}"]
    try:
        with serve(app) as url:
            acme = make_org(url, postgres, slugs[0])
            globex = make_org(url, postgres, slugs[1])
            yield ControlPlaneUnderTest(app, url, postgres, unique, acme, globex)
    finally:
        # Once the control plane has stopped: its supervisor would write them again.
        _forget_redis_keys(options.stack, slugs)


def _forget_redis_keys(stack: StackSettings, slugs: list[str]) -> None:
    """Removes the flags, heartbeats, halts, account documents and runtimes' Redis users the
    test's organisations left in Redis."""
    client = redis.Redis.from_url(stack.endpoints().redis_url)
    try:
        users = [
            name
            for name in client.acl_users()
            if any(name.startswith(f"{USER_PREFIX}{slug}.") for slug in slugs)
        ]
        if users:
            client.acl_deluser(*users)
        for slug in slugs:
            keys = list(client.scan_iter(match=f"{protocol.KEY_PREFIX}:bot:{slug}.*"))
            if keys:
                client.delete(*keys)
            fields = [
                f
                for f in client.hkeys(protocol.HALTS_KEY)
                if f.decode().split(":", 1)[1].startswith(f"{slug}.")
            ]
            if fields:
                client.hdel(protocol.HALTS_KEY, *fields)
            documents = [
                f for f in client.hkeys(protocol.ACCOUNTS_KEY) if f.decode().startswith(f"{slug}.")
            ]
            if documents:
                client.hdel(protocol.ACCOUNTS_KEY, *documents)
    finally:
        client.close()


def _app_options() -> dict[str, Any]:
    return {"notifier_options": {"backoff_base_s": 0.05, "poll_s": 0.05}}


@pytest.fixture
def cp(postgres: sqlalchemy.Engine, unique: str) -> Iterator[ControlPlaneUnderTest]:
    """A control plane without a supervisor (the API alone)."""
    yield from control_plane(postgres, unique)


@pytest.fixture
def backend(tmp_path: Path, endpoints: Endpoints) -> Iterator[LocalBackend]:
    """Runtimes as real processes on this machine (what the supervisor launches), killed after
    the test."""
    local = LocalBackend(tmp_path / "runtimes", env=runtime_env(endpoints))
    yield local
    local.shutdown()


@pytest.fixture
async def trading(
    postgres: sqlalchemy.Engine,
    unique: str,
    backend: LocalBackend,
    tmp_path: Path,
    endpoints: Endpoints,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Trading]:
    """A supervised control plane with the buyer bot pushed, whose account ``paper`` an executor
    with a paper broker serves (:func:`tests.control_plane._trading.trading_control_plane`)."""
    from tests.control_plane._trading import trading_control_plane  # it builds on this module

    async with trading_control_plane(
        postgres, unique, backend, tmp_path, endpoints, monkeypatch
    ) as trading:
        yield trading


BOT_SOURCE = '''
import os

from coyote_sdk import Bot, Param


class Buyer(Bot):
    """Buys on every bar; ``crash`` makes its process die at start (a crashing bot)."""

    symbols = ["GOOG"]
    timeframe = "1m"

    quantity: int = Param(1, ge=1)
    crash: bool = Param(False)

    def on_start(self):
        if self.crash:
            os._exit(3)

    def on_bar(self, bar):
        self.buy(bar.symbol, self.quantity)
'''


def buyer_bundle(tmp_path: Path, name: str = "buyer", *, variant: str = "") -> Bundle:
    """A small bot's bundle; a different ``variant`` gives a different digest."""
    folder = tmp_path / f"src-{name}-{variant or 'base'}"
    folder.mkdir()
    (folder / f"{name}.py").write_text(BOT_SOURCE + (f"\n# {variant}\n" if variant else ""))
    return build_bundle(folder / f"{name}.py", name=name)


def push(client: httpx.Client, bundle: Bundle, name: str | None = None) -> httpx.Response:
    return client.post(
        f"/v1/bots/{name or bundle.manifest.name}/versions",
        content=bundle.data,
        headers={"Content-Type": "application/gzip", "X-Bundle-Digest": bundle.digest},
    )


def add_account(client: httpx.Client, name: str = "paper", **fields: Any) -> dict[str, Any]:
    answer = client.post(
        "/v1/accounts", json={"name": name, "broker": "paper", "venue": "demo", **fields}
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def deploy(client: httpx.Client, name: str = "buy", **fields: Any) -> dict[str, Any]:
    answer = client.post(
        "/v1/deployments", json={"name": name, "bot": "buyer", "account": "paper", **fields}
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def error_code(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["code"])


__all__ = ["REPO", "ROLES", "ControlPlaneUnderTest", "Org", "Role", "buyer_bundle", "push"]
