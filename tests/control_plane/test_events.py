"""Live events over Server-Sent Events, and webhooks with retries."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy

from coyote_control_plane.main import runtime_env
from coyote_control_plane.supervisor import LocalBackend
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import Alert
from tests.control_plane.conftest import ControlPlaneUnderTest, add_account, control_plane

pytestmark = pytest.mark.integration


def _read_events(
    client: httpx.Client, count: int, seconds: float, **params: Any
) -> list[dict[str, Any]]:
    """The first ``count`` events of the stream (or what came within ``seconds``)."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    with client.stream("GET", "/v1/events", params=params, timeout=seconds) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        # Nothing to read for ``seconds`` (the server's keep-alive is 15 s apart): no more events.
        with contextlib.suppress(httpx.ReadTimeout):
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    found.append(json.loads(line.removeprefix("data: ")))
                if len(found) >= count or time.monotonic() > deadline:
                    break
    return found


def test_the_stream_carries_an_organisations_events_and_no_one_elses(
    cp: ControlPlaneUnderTest, endpoints: Endpoints
) -> None:
    add_account(cp.acme.admin)
    add_account(cp.globex.admin)
    results: dict[str, list[dict[str, Any]]] = {}

    def listen(org: str, client: httpx.Client) -> None:
        results[org] = _read_events(client, 2, 15)

    listeners = [
        threading.Thread(target=listen, args=("acme", cp.acme.viewer)),
        threading.Thread(target=listen, args=("globex", cp.globex.viewer)),
    ]
    for listener in listeners:
        listener.start()
    time.sleep(1.0)  # both streams subscribed

    cp.acme.risk.post(
        "/v1/kill-switches", json={"scope": "account", "target": "paper", "reason": "drill"}
    )
    client = redis.Redis.from_url(endpoints.redis_url)
    alert = Alert(
        alert_id=protocol.new_intent_id(),
        ts_ms=protocol.now_ms(),
        severity="critical",
        kind="broker.circuit_open",
        account_id=f"{cp.acme.slug}.paper",
        message="5 broker calls failed in a row",
    )
    client.xadd(protocol.ALERTS_STREAM, {"alert": protocol.encode(alert)})
    client.close()
    for listener in listeners:
        listener.join(timeout=20)

    assert [e["kind"] for e in results["acme"]] == ["kill_switch.tripped", "alert"]
    assert results["acme"][1]["account"] == "paper"
    assert results["globex"] == []


def test_an_open_stream_does_not_hold_the_control_plane_when_it_stops(
    postgres: sqlalchemy.Engine, unique: str
) -> None:
    # A dashboard left open keeps a stream that never ends by itself; the server stopping waits
    # GRACEFUL_SHUTDOWN_S for it, then cancels it — and its own shutdown runs.
    planes = control_plane(postgres, unique)
    cp = next(planes)
    opened = threading.Event()

    def listen() -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            cp.acme.viewer.stream("GET", "/v1/events", timeout=120) as stream,
        ):
            opened.set()
            for _ in stream.iter_lines():
                pass

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(10)

    with contextlib.suppress(StopIteration):
        next(planes)  # the control plane stops
    listener.join(timeout=5)

    assert not listener.is_alive(), "the stream outlived the control plane"


def test_the_stream_requires_a_credential(cp: ControlPlaneUnderTest) -> None:
    assert cp.anonymous().get("/v1/events").status_code == 401


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook target that fails its first ``failures`` requests."""

    failures = 0
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        failing = len(type(self).received) <= type(self).failures
        self.send_response(503 if failing else 204)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"failures": 2, "received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()


@pytest.fixture
def notifying(
    postgres: sqlalchemy.Engine, unique: str, tmp_path: Path, endpoints: Endpoints
) -> Iterator[ControlPlaneUnderTest]:
    """A control plane with a supervisor, hence a webhook notifier."""
    backend = LocalBackend(tmp_path / "runtimes", env=runtime_env(endpoints))
    yield from control_plane(postgres, unique, backend=backend)


def test_a_webhook_is_retried_until_delivered_and_signed(
    notifying: ControlPlaneUnderTest, receiver: tuple[str, type[_Receiver]]
) -> None:
    cp = notifying
    url, handler = receiver
    add_account(cp.acme.admin)
    hook = cp.acme.admin.post(
        "/v1/webhooks", json={"url": url, "kinds": ["kill_switch.tripped"]}
    ).json()
    cp.acme.risk.post(
        "/v1/kill-switches", json={"scope": "account", "target": "paper", "reason": "drill"}
    )
    deadline = time.monotonic() + 20
    while len(handler.received) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)

    assert len(handler.received) == 3  # two 503s, then delivered
    headers, body = handler.received[-1]
    expected = "sha256=" + hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Coyote-Signature"] == expected
    assert json.loads(body)["kind"] == "kill_switch.tripped"
    deliveries = cp.acme.viewer.get(f"/v1/webhooks/{hook['id']}/deliveries").json()
    assert [(d["attempts"], d["delivered"]) for d in deliveries] == [(3, True)]


def test_a_webhook_with_unknown_kinds_is_refused(cp: ControlPlaneUnderTest) -> None:
    answer = cp.acme.admin.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/", "kinds": ["bot.exploded"]}
    )
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "kinds"
