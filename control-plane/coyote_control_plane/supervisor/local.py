"""Bot runtimes as local processes: the embedded default, and what the tests run.

Each runtime is ``python -m coyote_sdk run <bundle> ...`` in a session of its own, so a Ctrl-C
meant for the control plane does not reach the bots, and a restarted control plane adopts the
runtimes still running (their pid files say which). Output goes to one log file per runtime.

A runtime does not inherit the control plane's environment, which holds its database URL and
Vault token: it gets the few variables a process needs (:data:`INHERITED`), the stack's
endpoints and its own credentials (:attr:`RuntimeSpec.secret_env`: a Redis URL with a user of
its own). It caps its own memory, open files and (optionally) CPU time before it loads the
bundle (:class:`~coyote_sdk.runtime.ProcessLimits`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from coyote_control_plane.supervisor.backends import (
    LogChunk,
    Observation,
    RuntimeBackend,
    RuntimeSpec,
)
from coyote_sdk.runtime import ProcessLimits

_TAIL_BYTES = 1024 * 1024
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
"""The only variables of the control plane's environment a runtime gets."""
DEFAULT_LIMITS = ProcessLimits(memory_mb=2048, open_files=1024)


class LocalBackend(RuntimeBackend):
    """Runs each runtime as a child process of this machine.

    Args:
        home: Where bundles, pid files and logs are kept.
        env: The runtimes' environment (the stack's endpoints), besides :data:`INHERITED`;
            each spec's ``secret_env`` goes over it.
        python: The interpreter that runs them; this one by default.
        limits: Each runtime's resource limits.
    """

    name = "local"

    def __init__(
        self,
        home: Path,
        *,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
        limits: ProcessLimits = DEFAULT_LIMITS,
    ) -> None:
        self.home = home
        self.env = dict(env or {})
        self.python = python
        self.limits = limits
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        for folder in ("bundles", "logs", "runtimes"):
            (home / folder).mkdir(parents=True, exist_ok=True)

    # -- paths ------------------------------------------------------------------------------

    def log_path(self, runtime_id: str) -> Path:
        return self.home / "logs" / f"{runtime_id}.log"

    def _pid_path(self, runtime_id: str) -> Path:
        return self.home / "runtimes" / f"{runtime_id}.pid"

    # -- RuntimeBackend ---------------------------------------------------------------------

    def launch(self, spec: RuntimeSpec) -> str:
        self.terminate(spec.runtime_id, force=True)
        bundle = self.home / "bundles" / f"{spec.digest.removeprefix('sha256:')}.tar.gz"
        if not bundle.exists():
            partial = bundle.with_suffix(".partial")
            partial.write_bytes(spec.bundle)
            partial.replace(bundle)
        workdir = self.home / "runtimes" / spec.runtime_id
        workdir.mkdir(exist_ok=True)
        log = self.log_path(spec.runtime_id).open("ab")
        try:
            child = subprocess.Popen(
                [
                    self.python,
                    "-m",
                    "coyote_sdk",
                    *spec.command_args(str(bundle.resolve())),
                    *self.limits.command_args(),
                ],
                cwd=workdir,  # no stray .env of the control plane's folder is read
                env={**_inherited(), **self.env, **spec.secret_env, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self._children[spec.runtime_id] = child
        self._pid_path(spec.runtime_id).write_text(str(child.pid))
        return str(child.pid)

    def observe(self, runtime_id: str) -> Observation:
        child = self._children.get(runtime_id)
        if child is not None:
            code = child.poll()
            if code is None:
                return Observation(alive=True, ref=str(child.pid))
            return Observation(alive=False, exit_code=code, ref=str(child.pid))
        pid = self._adoptable(runtime_id)
        if pid is not None:
            return Observation(alive=True, ref=str(pid), detail="adopted after a restart")
        return Observation(alive=False)

    def terminate(self, runtime_id: str, *, force: bool = False) -> None:
        child = self._children.get(runtime_id)
        pid = child.pid if child is not None and child.poll() is None else None
        pid = pid or self._adoptable(runtime_id)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            # The whole session: a bot's own child processes go with it.
            os.killpg(pid, signal.SIGKILL if force else signal.SIGTERM)
        if force and child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)

    def remove(self, runtime_id: str) -> None:
        child = self._children.pop(runtime_id, None)
        if child is not None:
            child.poll()  # reaps it
        self._pid_path(runtime_id).unlink(missing_ok=True)

    def logs(
        self, runtime_id: str, *, tail: int = 200, since_offset: int | None = None
    ) -> LogChunk:
        path = self.log_path(runtime_id)
        if not path.exists():
            return LogChunk(lines=[], next_offset=since_offset or 0)
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            if since_offset is None:
                start = max(0, size - _TAIL_BYTES)  # a tail reads the last megabyte only
            else:
                start = since_offset if since_offset <= size else 0  # truncated: start over
            file.seek(start)
            data = file.read()
        # A line still being written waits for the next call.
        complete = data.rfind(b"\n") + 1
        lines = data[:complete].decode(errors="replace").splitlines()
        following = since_offset is not None
        return LogChunk(lines=lines if following else lines[-tail:], next_offset=start + complete)

    def close(self) -> None:
        self._children.clear()

    def shutdown(self) -> None:
        """Kills every runtime of this backend's home, those it launched and those it would
        adopt (tests and the demo clean up with it). After :meth:`close` — the control plane
        stopped, leaving its runtimes to a successor — only their pid files know them."""
        known = {path.stem for path in (self.home / "runtimes").glob("*.pid")}
        for runtime_id in sorted(known | set(self._children)):
            self.terminate(runtime_id, force=True)
            self.remove(runtime_id)

    # -- adoption ----------------------------------------------------------------------------

    def _adoptable(self, runtime_id: str) -> int | None:
        """The pid of a runtime launched by an earlier control plane, if it still runs."""
        try:
            pid = int(self._pid_path(runtime_id).read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        # The pid may have been reused by another process: it must be our runtime.
        if b"coyote_sdk" in cmdline and runtime_id.encode() in cmdline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            return pid
        return None


def _inherited() -> dict[str, str]:
    return {name: os.environ[name] for name in INHERITED if name in os.environ}
