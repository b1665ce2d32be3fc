"""The local backend's sandboxing of a bot runtime: the control plane's secrets stay out of its
environment, and the runtime caps its own memory and open files before loading the bundle.
Checked on a real runtime process through /proc."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from coyote_control_plane.main import runtime_env
from coyote_control_plane.supervisor import LocalBackend
from coyote_control_plane.supervisor.backends import RuntimeSpec
from coyote_sdk.config import Endpoints
from coyote_sdk.control import set_control_flag
from coyote_sdk.protocol import BotState, heartbeat_key
from coyote_sdk.runtime import ProcessLimits
from tests.control_plane.conftest import buyer_bundle

pytestmark = [pytest.mark.integration]

SECRETS = {
    "COYOTE_CONTROL_PLANE_DATABASE_URL": "postgresql://cp:hunter2@db/coyote",
    "COYOTE_VAULT_TOKEN": "s.control-plane-root",
    "AWS_SECRET_ACCESS_KEY": "not-for-bots",
}


@pytest.fixture
def backend(
    tmp_path: Path, endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalBackend]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)  # the control plane's own environment
    local = LocalBackend(
        tmp_path / "runtimes",
        env=runtime_env(endpoints),
        limits=ProcessLimits(memory_mb=1536, open_files=200),
    )
    yield local
    local.shutdown()


def _spec(tmp_path: Path, org: str, unique: str, endpoints: Endpoints) -> RuntimeSpec:
    """A runtime of the buyer bot, bot ``<org>.buy`` on account ``<org>.paper``."""
    bundle = buyer_bundle(tmp_path)
    return RuntimeSpec(
        runtime_id=f"{org}.buy",
        account_id=f"{org}.paper",
        venue=f"v{unique}",
        bundle=bundle.data,
        digest=bundle.digest,
        params={},
        capital="1000",
        release="r1",
        secret_env={"COYOTE_REDIS_URL": endpoints.redis_url},  # as the supervisor gives it
    )


def _limit(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(name):
            return line[len(name) :].split()[0]
    raise AssertionError(f"no {name!r} in /proc/{pid}/limits")


def test_a_runtime_gets_no_control_plane_secrets_and_runs_under_its_limits(
    backend: LocalBackend,
    tmp_path: Path,
    unique: str,
    redis_ts: tuple[redis.Redis, str],
    endpoints: Endpoints,
) -> None:
    spec = _spec(tmp_path, f"sandbox{unique}", unique, endpoints)

    set_control_flag(redis_ts[0], spec.runtime_id, BotState.RUNNING, set_by="test")
    pid = int(backend.launch(spec))
    deadline = time.monotonic() + 20
    while _limit(pid, "Max open files") != "200":  # applied by the runtime as it starts
        assert backend.observe(spec.runtime_id).alive, backend.log_path(spec.runtime_id).read_text()
        assert time.monotonic() < deadline, "the runtime never applied its limits"
        time.sleep(0.05)

    environ = dict(
        entry.split("=", 1)
        for entry in Path(f"/proc/{pid}/environ").read_text().split("\0")
        if "=" in entry
    )
    assert not set(SECRETS) & set(environ)
    assert not any(value in environ.values() for value in SECRETS.values())
    assert environ["COYOTE_KAFKA_BOOTSTRAP"] == backend.env["COYOTE_KAFKA_BOOTSTRAP"]
    assert environ["COYOTE_REDIS_URL"] == endpoints.redis_url
    assert environ["PATH"] == os.environ["PATH"]
    assert _limit(pid, "Max address space") == str(1536 * 1024 * 1024)
    # Under its limits the bot runs: its heartbeat says so.
    deadline = time.monotonic() + 20
    while redis_ts[0].get(heartbeat_key(spec.runtime_id)) is None:
        assert backend.observe(spec.runtime_id).alive, backend.log_path(spec.runtime_id).read_text()
        assert time.monotonic() < deadline, backend.log_path(spec.runtime_id).read_text()
        time.sleep(0.1)
    assert backend.observe(spec.runtime_id).alive, backend.log_path(spec.runtime_id).read_text()


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="memory_mb"):
        ProcessLimits(memory_mb=0)


def test_shutdown_kills_the_runtimes_a_stopped_control_plane_left_running(
    backend: LocalBackend, tmp_path: Path, unique: str, endpoints: Endpoints
) -> None:
    # A stopped control plane leaves its runtimes to a successor (close); a test's or the
    # demo's clean-up must still find and kill them.
    spec = _spec(tmp_path, f"left{unique}", unique, endpoints)
    pid = int(backend.launch(spec))
    backend.close()
    deadline = time.monotonic() + 5
    while not backend.observe(spec.runtime_id).alive:  # adoptable, by its pid file, once exec'd
        assert time.monotonic() < deadline, "the runtime was never adoptable"
        time.sleep(0.05)

    backend.shutdown()

    assert not backend.observe(spec.runtime_id).alive
    deadline = time.monotonic() + 5
    # This test process is its parent (a control plane's successor would not be): reap it.
    while os.waitpid(pid, os.WNOHANG)[0] != pid:
        assert time.monotonic() < deadline, "the runtime outlived the shutdown"
        time.sleep(0.05)
