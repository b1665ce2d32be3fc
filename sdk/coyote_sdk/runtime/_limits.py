"""Resource limits a bot runtime puts on its own process before any bot code runs.

The supervisor's local backend asks for them on the command line (``coyote-sdk run
--limit-memory-mb …``); the runtime applies them with ``setrlimit`` as its first act, before it
loads the bundle, so a bot's module code is bound by them too. Soft and hard limits are set
alike: an unprivileged process can lower its hard limits but never raise them again, so the bot
cannot undo them. (On Kubernetes the pod's cgroup limits do this job.)
"""

from __future__ import annotations

import dataclasses
import resource

__all__ = ["ProcessLimits"]


@dataclasses.dataclass(frozen=True)
class ProcessLimits:
    """Limits of one runtime process; ``None`` leaves a limit as inherited.

    Attributes:
        memory_mb: Address space (``RLIMIT_AS``), in MiB. Allocations beyond it fail with
            ``MemoryError`` in the bot, which the runtime reports and survives or stops on
            like any handler error.
        open_files: Open file descriptors (``RLIMIT_NOFILE``), sockets included.
        cpu_seconds: CPU time (``RLIMIT_CPU``), in seconds over the process's life: the
            kernel sends ``SIGXCPU`` at the limit, which ends the process (the supervisor then
            restarts it with its backoff). Off by default: a bot that runs for weeks
            accumulates CPU time honestly.
    """

    memory_mb: int | None = None
    open_files: int | None = None
    cpu_seconds: int | None = None

    def __post_init__(self) -> None:
        for name in ("memory_mb", "open_files", "cpu_seconds"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"`{name}` must be a positive number, got {value}")

    def command_args(self) -> list[str]:
        """The ``coyote-sdk run`` options that ask for these limits."""
        args = []
        if self.memory_mb is not None:
            args += ["--limit-memory-mb", str(self.memory_mb)]
        if self.open_files is not None:
            args += ["--limit-open-files", str(self.open_files)]
        if self.cpu_seconds is not None:
            args += ["--limit-cpu-seconds", str(self.cpu_seconds)]
        return args

    def apply(self) -> None:
        """Sets the limits on this process.

        Raises:
            ValueError: A limit above the hard limit this process inherited (it cannot be
                raised), naming the limit.
        """
        for name, kind, value in (
            ("memory", resource.RLIMIT_AS, _mib(self.memory_mb)),
            ("open files", resource.RLIMIT_NOFILE, self.open_files),
            ("CPU seconds", resource.RLIMIT_CPU, self.cpu_seconds),
        ):
            if value is None:
                continue
            _, hard = resource.getrlimit(kind)
            if hard != resource.RLIM_INFINITY and value > hard:
                raise ValueError(
                    f"the {name} limit {value} is above this process's hard limit {hard}"
                )
            resource.setrlimit(kind, (value, value))


def _mib(value: int | None) -> int | None:
    return None if value is None else value * 1024 * 1024
