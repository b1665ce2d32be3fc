"""The local stack as a whole: bring services up, check them, stop them."""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from coyote_sdk.config import StackSettings
from coyote_sdk.dev._process import PidFile, port_is_free, spawn, stop_group, tail
from coyote_sdk.dev._services import SERVICES, Progress, Service, StackError


class Health(enum.StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    """Its process runs (or the external URL is set) but it does not answer."""
    STOPPED = "stopped"


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    """One row of ``coyote-sdk dev status``."""

    name: str
    mode: str
    """``local`` (started by the stack) or ``external`` (given by URL)."""
    address: str
    health: Health
    pid: int | None
    log: str | None


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _silent(_: str) -> None:
    pass


class Stack:
    """The local stack of real services described by ``settings``.

    Args:
        settings: Ports, data directory and external URLs; read from the environment when
            omitted.
    """

    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings()
        self.services: dict[str, Service] = {cls.name: cls(self.settings) for cls in SERVICES}

    def _select(self, names: Iterable[str] | None) -> list[Service]:
        if names is None:
            return list(self.services.values())
        selected = list(dict.fromkeys(names))
        unknown = [n for n in selected if n not in self.services]
        if unknown:
            raise StackError(
                f"unknown service {', '.join(unknown)}: expected one of {', '.join(self.services)}"
            )
        return [s for s in self.services.values() if s.name in selected]

    # -- UP ------------------------------------------------------------------------------

    def up(self, names: Iterable[str] | None = None, *, progress: Progress = _silent) -> list[str]:
        """Starts every selected local service that is not running, and waits until all are
        healthy. Running services are left as they are; external ones are only checked.

        Returns:
            The names of the services this call started.

        Raises:
            StackError: naming the service, and its log file, that could not start.
        """
        services = self._select(names)
        self.settings.home.mkdir(parents=True, exist_ok=True)
        starting: list[Service] = []
        waiting: list[Service] = []
        for service in services:
            if service.external:
                progress(f"{service.name}: external at {service.address}, not started")
                waiting.append(service)
                continue
            if PidFile(service.pid_path).read() is not None:
                waiting.append(service)
                continue
            self._check_ports_free(service)
            service.dir.mkdir(parents=True, exist_ok=True)
            service.prepare(progress)
            progress(f"{service.name}: starting on {service.address}")
            process = spawn(
                service.command(),
                log_path=service.log_path,
                cwd=service.dir,
                env=service.environment(),
                user=service.user,
            )
            PidFile(service.pid_path).write(process.pid)
            starting.append(service)
        for service in waiting + starting:
            self._wait_healthy(service, progress)
        for service in starting:
            service.after_start()
            progress(f"{service.name}: ready")
        return [service.name for service in starting]

    def _check_ports_free(self, service: Service) -> None:
        taken = [port for port in service.ports if not port_is_free(port)]
        if taken:
            variable = {
                "kafka": "COYOTE_KAFKA_PORT / COYOTE_KAFKA_CONTROLLER_PORT"
                " / COYOTE_KAFKA_EXTRA_PORT",
                "redis": "COYOTE_REDIS_PORT",
                "postgres": "COYOTE_POSTGRES_PORT",
                "vault": "COYOTE_VAULT_PORT",
            }[service.name]
            ports = ", ".join(str(p) for p in taken)
            raise StackError(
                f"{service.name} cannot start: port {ports} on 127.0.0.1 is already in use by "
                f"another process. Stop that process, choose another port ({variable}), or "
                f"point Coyote at a running {service.name} by URL."
            )

    def _wait_healthy(self, service: Service, progress: Progress) -> None:
        started = time.monotonic()
        deadline = started + service.start_timeout
        pid_file = PidFile(service.pid_path)
        while True:
            if service.healthy():
                if not service.external:
                    progress(f"{service.name}: healthy after {time.monotonic() - started:.1f} s")
                return
            if not service.external and pid_file.read() is None:
                pid_file.remove()
                raise StackError(self._failure(service, "exited during start-up"))
            if time.monotonic() > deadline:
                if service.external:
                    raise StackError(
                        f"{service.name}: the external service at {service.address} does not answer"
                    )
                raise StackError(
                    self._failure(
                        service, f"did not become healthy within {service.start_timeout:.0f} s"
                    )
                )
            time.sleep(0.25)

    @staticmethod
    def _failure(service: Service, what: str) -> str:
        last = "\n".join(f"    {line}" for line in tail(service.log_path, 15))
        return f"{service.name} {what}; its log is {service.log_path}" + (
            f"\n  last lines:\n{last}" if last else ""
        )

    # -- DOWN ----------------------------------------------------------------------------

    def down(self, names: Iterable[str] | None = None, *, progress: Progress = _silent) -> None:
        """Stops the selected local services and every process they started."""
        for service in reversed(self._select(names)):
            if service.external:
                continue
            pid_file = PidFile(service.pid_path)
            pid = pid_file.read()
            if pid is None:
                pid_file.remove()
                continue
            progress(f"{service.name}: stopping (pid {pid})")
            clean = stop_group(pid, sig=service.stop_signal, timeout=30)
            pid_file.remove()
            progress(f"{service.name}: stopped" + ("" if clean else " (killed)"))

    # -- STATUS --------------------------------------------------------------------------

    def status(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        """Health of each selected service, probed now."""
        rows = []
        for service in self._select(names):
            if service.external:
                health = Health.HEALTHY if service.healthy() else Health.UNHEALTHY
                rows.append(
                    ServiceStatus(service.name, "external", service.address, health, None, None)
                )
                continue
            pid = PidFile(service.pid_path).read()
            if pid is None:
                health = Health.STOPPED
            else:
                health = Health.HEALTHY if service.healthy() else Health.UNHEALTHY
            rows.append(
                ServiceStatus(
                    service.name, "local", service.address, health, pid, _relative(service.log_path)
                )
            )
        return rows

    def log_lines(self, name: str, lines: int = 50) -> Sequence[str]:
        """The last ``lines`` lines of a local service's log."""
        (service,) = self._select([name])
        if service.external:
            raise StackError(f"{name} is external ({service.address}); its log is not ours")
        return tail(service.log_path, lines)
