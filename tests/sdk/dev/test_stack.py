"""`coyote-sdk dev up | down | status | logs` on stacks of their own, apart from the suite's.

Each test runs the real command line in a subprocess, on free ports and in a home directory of
its own, so it can start and stop servers without touching the stack the other tests use.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coyote_sdk.config import Endpoints
from coyote_sdk.dev._process import port_is_free, port_is_open
from tests.ports import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
PORT_VARIABLES = (
    "COYOTE_KAFKA_PORT",
    "COYOTE_KAFKA_CONTROLLER_PORT",
    "COYOTE_REDIS_PORT",
    "COYOTE_POSTGRES_PORT",
    "COYOTE_VAULT_PORT",
)


class IsolatedStack:
    """A stack home and port set of one test, driven through the real CLI."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.ports = dict(zip(PORT_VARIABLES, free_ports(len(PORT_VARIABLES)), strict=True))
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("COYOTE_") or key == "COYOTE_CACHE_DIR"
        }
        self.env.update({key: str(port) for key, port in self.ports.items()})
        self.env["COYOTE_HOME"] = str(home)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "coyote_sdk", "dev", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"dev {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def status(self, *services: str) -> dict[str, dict[str, object]]:
        result = self.run("status", "--json", *services, check=False)
        return {row["name"]: row for row in json.loads(result.stdout)}


@pytest.fixture
def isolated(unique: str) -> Iterator[IsolatedStack]:
    # Under the checkout, not /tmp: PostgreSQL runs as `postgres` when we are root and must be
    # able to enter the directory.
    home = REPO / ".coyote" / "test-stacks" / unique
    home.mkdir(parents=True)
    stack = IsolatedStack(home)
    yield stack
    stack.run("down", check=False)
    shutil.rmtree(home, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_up_twice_then_down_leaves_no_process_and_no_open_port(isolated: IsolatedStack) -> None:
    first = isolated.run("up")
    pids = {name: row["pid"] for name, row in isolated.status().items()}
    second = isolated.run("up")
    pids_after_second_up = {name: row["pid"] for name, row in isolated.status().items()}
    effective_config_printed = "kafka_port" in first.stdout and "**********" in first.stdout

    isolated.run("down")
    after_down = isolated.status()

    assert effective_config_printed
    assert "coyote-dev-root" not in first.stdout + first.stderr
    assert all(isinstance(pid, int) for pid in pids.values()), pids
    assert pids_after_second_up == pids, second.stdout
    assert "starting" not in second.stdout
    assert not any(_alive(pid) for pid in pids.values())  # type: ignore[arg-type]
    assert all(row["health"] == "stopped" for row in after_down.values())
    assert not any(port_is_open(port) for port in isolated.ports.values())
    assert all(port_is_free(port) for port in isolated.ports.values())


def test_a_service_given_by_url_is_checked_but_not_started(
    isolated: IsolatedStack, endpoints: Endpoints
) -> None:
    isolated.env["COYOTE_REDIS_URL"] = endpoints.redis_url

    result = isolated.run("up", "redis")
    status = isolated.status("redis")

    assert "external" in result.stdout
    assert status["redis"]["mode"] == "external"
    assert status["redis"]["health"] == "healthy"
    assert status["redis"]["pid"] is None
    assert not (isolated.home / "redis").exists()
    assert port_is_free(isolated.ports["COYOTE_REDIS_PORT"])


def test_a_port_already_taken_gives_a_clear_error_and_starts_nothing(
    isolated: IsolatedStack,
) -> None:
    port = isolated.ports["COYOTE_REDIS_PORT"]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()

        result = isolated.run("up", "redis", check=False)

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "COYOTE_REDIS_PORT" in result.stderr
    assert not (isolated.home / "redis" / "redis.pid").exists()


def test_a_service_that_fails_to_start_is_reported_with_its_log_file(
    isolated: IsolatedStack,
) -> None:
    # A corrupt append-only file: a real reason for Redis to refuse to start.
    aof = isolated.home / "redis" / "data" / "appendonlydir"
    aof.mkdir(parents=True)
    (aof / "appendonly.aof.manifest").write_text("this is not a manifest\n")

    result = isolated.run("up", "redis", check=False)
    logs = isolated.run("logs", "redis", "-n", "5")

    assert result.returncode == 1
    assert "redis exited during start-up" in result.stderr
    assert str(isolated.home / "redis" / "redis.log") in result.stderr.replace("\n", "")
    assert "manifest" in logs.stdout.lower()
    assert isolated.status("redis")["redis"]["health"] == "stopped"


def test_an_unknown_service_name_is_refused(isolated: IsolatedStack) -> None:
    result = isolated.run("up", "mongodb", check=False)

    assert result.returncode == 1
    assert "unknown service mongodb" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback is for a stack run as root")
def test_postgres_runs_from_var_tmp_when_the_stack_lives_in_a_private_directory(
    tmp_path: Path,
) -> None:
    home = tmp_path / "private" / "stack"  # pytest's tmp_path is readable by its owner only
    stack = IsolatedStack(home)

    up = stack.run("up", "postgres")
    location = Path((home / "postgres" / "data-location").read_text().strip())
    healthy = stack.status("postgres")["postgres"]["health"]
    stack.run("down")

    assert "is private to its owner" in up.stdout
    assert location.parent == Path("/var/tmp/coyote-postgres")
    assert (location / "data" / "PG_VERSION").exists()
    assert healthy == "healthy"
    assert port_is_free(stack.ports["COYOTE_POSTGRES_PORT"])
    shutil.rmtree(location)
