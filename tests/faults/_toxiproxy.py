"""Toxiproxy (github.com/Shopify/toxiproxy), a real TCP proxy whose faults — toxics: latency,
resets, a blackhole, a bandwidth cap — are added and removed through its HTTP admin API while
connections go through it. The fault tests put it between the executor and Kafka or Redis.

``scripts/bootstrap.sh`` builds ``toxiproxy-server`` into ``.coyote/tools/bin`` with
``go install``; the tests that need it are skipped when it is missing.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx

from coyote_sdk.dev._process import PidFile, spawn, stop_group
from tests.ports import free_ports

REPO = Path(__file__).resolve().parents[2]
TOXIPROXY = "toxiproxy"
"""The server's directory and pid file under a stack's home (``<home>/toxiproxy``)."""

Stream = Literal["upstream", "downstream", "both"]
"""Which direction a toxic affects: ``upstream`` is client → server (requests),
``downstream`` server → client (answers)."""


def toxiproxy_binary() -> Path | None:
    """``toxiproxy-server`` as ``scripts/bootstrap.sh`` installs it, else from ``PATH``."""
    local = REPO / ".coyote" / "tools" / "bin" / "toxiproxy-server"
    if local.is_file():
        return local
    found = shutil.which("toxiproxy-server")
    return Path(found) if found else None


class Proxy:
    """One proxy of a :class:`Toxiproxy` server: ``listen`` → ``upstream``.

    A toxic applies to the connections open when it is added and to those opened while it
    stays; removing it lets data flow again (removing a ``timeout`` toxic also closes the
    connections it held, as a peer that gave up would).
    """

    def __init__(self, api: httpx.Client, name: str, listen: str) -> None:
        self._api = api
        self.name = name
        self.listen = listen
        """Where clients connect: ``127.0.0.1:<port>``."""

    def add(
        self,
        kind: str,
        *,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
        **attributes: int,
    ) -> list[str]:
        """Adds a toxic of type ``kind`` (``latency``, ``timeout``, ``reset_peer``,
        ``bandwidth``, ``slicer``, ``limit_data`` …) with its ``attributes`` (milliseconds,
        KB/s, bytes: see Toxiproxy's README). Returns the names of the toxics added (two for
        ``stream="both"``), for :meth:`remove`."""
        names = []
        for direction in ("upstream", "downstream") if stream == "both" else (stream,):
            name = f"{kind}_{direction}"
            _check(
                self._api.post(
                    f"/proxies/{self.name}/toxics",
                    json={
                        "name": name,
                        "type": kind,
                        "stream": direction,
                        "toxicity": toxicity,
                        "attributes": attributes,
                    },
                )
            )
            names.append(name)
        return names

    def remove(self, *names: str) -> None:
        """Removes the named toxics."""
        for name in names:
            _check(self._api.delete(f"/proxies/{self.name}/toxics/{name}"))

    @contextlib.contextmanager
    def toxic(
        self, kind: str, *, stream: Stream = "downstream", **attributes: int
    ) -> Iterator[None]:
        """The toxic in force for the ``with`` block (see :meth:`add`)."""
        names = self.add(kind, stream=stream, **attributes)
        try:
            yield
        finally:
            self.remove(*names)

    def toxics(self) -> list[dict[str, Any]]:
        """The toxics in force, as the API describes them."""
        response = _check(self._api.get(f"/proxies/{self.name}/toxics"))
        toxics: list[dict[str, Any]] = response.json()
        return toxics


class Toxiproxy:
    """A ``toxiproxy-server`` of the tests' own on a free port of 127.0.0.1.

    It runs in a process group of its own with its pid file in ``home`` (a private stack's
    ``<home>/toxiproxy``), so that a test process that dies without stopping it leaves it to
    the next run's sweep of orphaned stacks.

    Args:
        binary: The ``toxiproxy-server`` executable.
        home: Its directory: pid file and log.
    """

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.home = home
        self.pid_file = PidFile(home / f"{TOXIPROXY}.pid")
        (self.port,) = free_ports(1)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def start(self, *, within: float = 15) -> None:
        """Starts the server and waits until its API answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        process = spawn(
            [str(self.binary), "-host", "127.0.0.1", "-port", str(self.port)],
            log_path=self.home / f"{TOXIPROXY}.log",
            cwd=self.home,
        )
        self.pid_file.write(process.pid)
        deadline = time.monotonic() + within
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"toxiproxy-server exited with {process.returncode}: see {self.home}"
                )
            with contextlib.suppress(httpx.TransportError):
                if self.api.get("/version").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"toxiproxy-server not answering within {within:.0f} s")
            time.sleep(0.1)

    def proxy(self, name: str, *, listen: int, upstream: str) -> Proxy:
        """Creates the proxy ``name`` from ``127.0.0.1:<listen>`` to ``upstream``
        (``host:port``)."""
        address = f"127.0.0.1:{listen}"
        _check(
            self.api.post(
                "/proxies",
                json={"name": name, "listen": address, "upstream": upstream, "enabled": True},
            )
        )
        return Proxy(self.api, name, address)

    def reset(self) -> None:
        """Removes every toxic and enables every proxy."""
        _check(self.api.post("/reset"))

    def stop(self) -> None:
        """Stops the server (SIGTERM to its group; killed if it lingers)."""
        self.api.close()
        pid = self.pid_file.read()
        if pid is not None:
            stop_group(pid, sig=signal.SIGTERM, timeout=10)
        self.pid_file.remove()


def _check(response: httpx.Response) -> httpx.Response:
    """The response, or an error naming the request and Toxiproxy's answer."""
    if response.is_error:
        raise RuntimeError(
            f"toxiproxy: {response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text.strip()}"
        )
    return response
