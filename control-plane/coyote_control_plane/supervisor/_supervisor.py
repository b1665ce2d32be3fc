"""The supervisor: makes what runs match what the database wants, pass after pass.

Each pass, for every deployment, it

1. writes the Redis side of the database (control flags, halts, account documents), which
   also repairs Redis after a restart or a flush;
2. looks at the runtime (the backend's process or pod, and its heartbeat in Redis) and records
   what it sees: ``starting``, ``running``, ``paused``, ``stale``, ``crashed``, ``failed``,
   ``stopping``, ``stopped``;
3. acts like an actor system's supervisor: launches what should run, relaunches a crashed
   runtime after an exponential backoff (1 s, 2 s, 4 s … up to a limit, then ``failed`` with
   the reason), kills a runtime that stays stale, and stops what should not run — gracefully
   first (the flag says stopped: it cancels its orders and exits), then by signal.

A Redis or database outage fails a pass, not the supervisor: the next pass converges again.
Only one supervisor acts at a time (a Redis lease), so several API replicas can run one each.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from coyote_control_plane import events
from coyote_control_plane.config import SupervisorSettings
from coyote_control_plane.flags import active_kill_switches, sync_accounts, sync_flag, sync_halts
from coyote_control_plane.models import (
    Account,
    BotVersion,
    BundleBlob,
    Deployment,
    DesiredState,
    KillSwitch,
    Organization,
    Release,
    RuntimeStatus,
)
from coyote_control_plane.registry import signing_required, trusted_keys
from coyote_control_plane.supervisor.backends import BackendError, RuntimeBackend, RuntimeSpec
from coyote_sdk import protocol
from coyote_sdk.control import read_status
from coyote_sdk.protocol import BotStatus, RuntimeState

logger = logging.getLogger("coyote.supervisor")

LEASE_KEY = f"{protocol.KEY_PREFIX}:cp:supervisor:lease"
ACTOR = "system:supervisor"

# What a heartbeat's state means for the deployment's status.
_FROM_HEARTBEAT = {
    RuntimeState.STARTING: RuntimeStatus.STARTING,
    RuntimeState.RUNNING: RuntimeStatus.RUNNING,
    RuntimeState.PAUSED: RuntimeStatus.PAUSED,
    RuntimeState.BLOCKED: RuntimeStatus.PAUSED,
    RuntimeState.STOPPING: RuntimeStatus.STOPPING,
    RuntimeState.STOPPED: RuntimeStatus.STOPPING,
    RuntimeState.FAILED: RuntimeStatus.STOPPING,
}


@dataclasses.dataclass
class _Runtime:
    """What the supervisor remembers of a runtime it launched (lost on restart: harmless)."""

    launched_at: float
    release: str
    stale_since: float | None = None
    stop_asked_at: float | None = None
    healthy_since: float | None = None
    restarting: bool = False
    """Stopped on purpose to relaunch on another release: its exit is no crash."""


class Supervisor:
    """Reconciles deployments with their runtimes.

    Args:
        engine: The control plane's database.
        client: Redis (flags, heartbeats, halts, events, the lease).
        backend: Where runtimes run.
        settings: Timings and limits.
        clock: Seconds, monotonic; tests may pass their own.
    """

    def __init__(
        self,
        engine: Engine,
        client: redis.Redis,
        backend: RuntimeBackend,
        settings: SupervisorSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.redis = client
        self.backend = backend
        self.settings = settings
        self._clock = clock
        self._runtimes: dict[str, _Runtime] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._instance = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self.passes = 0
        self.last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._release_lease()
        self.backend.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._hold_lease():
                    self.run_once()
                self.last_error = None
            except (redis.RedisError, sa.exc.SQLAlchemyError, BackendError, OSError) as exc:
                if str(exc) != self.last_error:
                    logger.warning("supervisor pass failed (retrying): %s", exc)
                self.last_error = str(exc)
            except Exception:
                logger.exception("supervisor pass failed unexpectedly (retrying)")
            self._stop.wait(self.settings.interval_s)

    def _hold_lease(self) -> bool:
        ttl_ms = int(max(self.settings.interval_s * 5, 5) * 1000)
        holder: Any = self.redis.get(LEASE_KEY)
        if holder is not None and holder.decode() == self._instance:
            self.redis.pexpire(LEASE_KEY, ttl_ms)
            return True
        return bool(self.redis.set(LEASE_KEY, self._instance, nx=True, px=ttl_ms))

    def _release_lease(self) -> None:
        try:
            holder: Any = self.redis.get(LEASE_KEY)
            if (holder or b"").decode() == self._instance:
                self.redis.delete(LEASE_KEY)
        except redis.RedisError:
            pass

    def forget(self, runtime_id: str) -> None:
        """Drops a deleted deployment's runtime (it must be stopped)."""
        self._runtimes.pop(runtime_id, None)
        self.backend.remove(runtime_id)

    # -- one pass ----------------------------------------------------------------------------

    def run_once(self) -> None:
        """One reconciliation pass over every deployment."""
        with Session(self.engine, expire_on_commit=False) as session:
            redis_up = True
            try:
                sync_halts(session, self.redis)
                sync_accounts(session, self.redis)
                session.commit()  # the account documents' revisions
            except redis.RedisError as exc:
                session.rollback()
                redis_up = False
                logger.warning("Redis unreachable; flags wait for it: %s", exc)
            ids = session.exec(select(Deployment.id)).all()
            switches: dict[int, list[KillSwitch]] = {}  # read once per organisation and pass
            for deployment_id in ids:
                deployment = session.get(Deployment, deployment_id)
                if deployment is None:
                    continue
                if deployment.org_id not in switches:
                    switches[deployment.org_id] = active_kill_switches(session, deployment.org_id)
                try:
                    self._reconcile(
                        session, deployment, redis_up=redis_up, switches=switches[deployment.org_id]
                    )
                    session.commit()
                except BackendError as exc:
                    session.rollback()
                    self._set_status(session, deployment, deployment.status, f"backend: {exc}")
                    session.commit()
        self.passes += 1

    def _reconcile(
        self,
        session: Session,
        deployment: Deployment,
        *,
        redis_up: bool,
        switches: list[KillSwitch],
    ) -> None:
        runtime_id = deployment.runtime_id
        heartbeat: BotStatus | None = None
        if redis_up:
            sync_flag(session, self.redis, deployment, set_by=ACTOR, switches=switches)
            heartbeat = read_status(self.redis, runtime_id)
        seen = self.backend.observe(runtime_id)
        known = self._runtimes.get(runtime_id)
        now = self._clock()
        if seen.alive and known is None:
            # Running since before this supervisor started: adopt it.
            known = self._runtimes[runtime_id] = _Runtime(
                launched_at=now,
                release=heartbeat.release if heartbeat and heartbeat.release else "",
            )

        if deployment.desired is DesiredState.STOPPED:
            self._reconcile_stopped(session, deployment, seen.alive, known, seen.exit_code)
            return

        release = session.get(Release, deployment.release_id)
        assert release is not None
        if seen.alive and known is not None:
            if known.release and known.release != release.content_hash and not known.restarting:
                # Promoted or rolled back: stop gracefully (orders cancelled), then relaunch.
                known.restarting = True
                known.stop_asked_at = now
                self.backend.terminate(runtime_id)
                self._set_status(
                    session,
                    deployment,
                    RuntimeStatus.STOPPING,
                    f"restarting on release {release.number}",
                )
                return
            if known.restarting:
                self._escalate_stop(runtime_id, known, now)
                return
            self._watch_alive(session, deployment, known, heartbeat, now, seen.restarts)
            return

        # Nothing runs.
        if known is not None and known.restarting:
            self._runtimes.pop(runtime_id, None)
            self._launch(session, deployment, release, "relaunched on a new release")
            return
        if known is not None or deployment.status in (
            RuntimeStatus.STARTING,
            RuntimeStatus.RUNNING,
            RuntimeStatus.PAUSED,
            RuntimeStatus.STALE,
        ):
            self._crashed(session, deployment, seen.exit_code)
            return
        if deployment.status is RuntimeStatus.FAILED:
            return
        due = deployment.next_start_ms is None or protocol.now_ms() >= deployment.next_start_ms
        if due:
            self._launch(session, deployment, release, None)

    def _watch_alive(
        self,
        session: Session,
        deployment: Deployment,
        known: _Runtime,
        heartbeat: BotStatus | None,
        now: float,
        backend_restarts: int,
    ) -> None:
        settings = self.settings
        if heartbeat is not None:
            known.stale_since = None
            status = _FROM_HEARTBEAT[heartbeat.state]
            self._set_status(session, deployment, status, heartbeat.detail)
            if status in (RuntimeStatus.RUNNING, RuntimeStatus.PAUSED):
                known.healthy_since = known.healthy_since or now
                if deployment.restarts and now - known.healthy_since >= settings.healthy_after_s:
                    deployment.restarts = 0  # healthy again: the next crash starts a new series
                    session.add(deployment)
            if self.backend.restarts_itself and backend_restarts > deployment.restarts:
                deployment.restarts = backend_restarts
                self._announce(session, deployment, "bot.crashed", "restarted by the platform")
            return
        if now - known.launched_at < settings.start_grace_s:
            self._set_status(session, deployment, RuntimeStatus.STARTING, None)
            return
        known.stale_since = known.stale_since or now
        known.healthy_since = None
        silent = now - known.stale_since
        self._set_status(
            session, deployment, RuntimeStatus.STALE, "its process runs but sends no heartbeat"
        )
        if silent >= settings.stale_restart_s and not self.backend.restarts_itself:
            logger.warning("%s stale for %.0f s: killing it", deployment.runtime_id, silent)
            self.backend.terminate(deployment.runtime_id, force=True)

    def _reconcile_stopped(
        self,
        session: Session,
        deployment: Deployment,
        alive: bool,
        known: _Runtime | None,
        exit_code: int | None,
    ) -> None:
        now = self._clock()
        if alive:
            if known is not None and known.stop_asked_at is None:
                known.stop_asked_at = now
            if known is not None:
                self._escalate_stop(deployment.runtime_id, known, now)
            self._set_status(session, deployment, RuntimeStatus.STOPPING, None)
            return
        if deployment.status is not RuntimeStatus.STOPPED:
            detail = None if exit_code in (0, None) else f"exited with code {exit_code}"
            self._set_status(session, deployment, RuntimeStatus.STOPPED, detail)
            deployment.restarts, deployment.next_start_ms = 0, None
            session.add(deployment)
        if known is not None:
            self._runtimes.pop(deployment.runtime_id, None)
            self.backend.remove(deployment.runtime_id)

    def _escalate_stop(self, runtime_id: str, known: _Runtime, now: float) -> None:
        """A runtime asked to stop gets ``stop_grace_s``, then SIGTERM, then SIGKILL."""
        asked = known.stop_asked_at or now
        known.stop_asked_at = asked
        waited = now - asked
        if waited >= 2 * self.settings.stop_grace_s:
            self.backend.terminate(runtime_id, force=True)
        elif waited >= self.settings.stop_grace_s:
            self.backend.terminate(runtime_id)

    def _crashed(self, session: Session, deployment: Deployment, exit_code: int | None) -> None:
        self._runtimes.pop(deployment.runtime_id, None)
        self.backend.remove(deployment.runtime_id)
        tail = self._last_lines(deployment.runtime_id)
        how = f"exit code {exit_code}" if exit_code is not None else "its process vanished"
        deployment.restarts += 1
        if deployment.restarts > self.settings.max_restarts:
            detail = f"gave up after {deployment.restarts - 1} restarts; last {how}{tail}"
            deployment.next_start_ms = None
            self._set_status(session, deployment, RuntimeStatus.FAILED, detail)
            self._announce(session, deployment, "bot.failed", detail)
            return
        delay = min(
            self.settings.backoff_base_s * 2 ** (deployment.restarts - 1),
            self.settings.backoff_max_s,
        )
        deployment.next_start_ms = protocol.now_ms() + int(delay * 1000)
        detail = f"crashed ({how}); restart {deployment.restarts} in {delay:g} s{tail}"
        self._set_status(session, deployment, RuntimeStatus.CRASHED, detail)
        self._announce(session, deployment, "bot.crashed", detail)

    def _last_lines(self, runtime_id: str) -> str:
        try:
            lines = self.backend.logs(runtime_id, tail=3).lines
        except BackendError:
            return ""
        return (": " + " | ".join(line.strip()[-300:] for line in lines)) if lines else ""

    def _launch(
        self, session: Session, deployment: Deployment, release: Release, detail: str | None
    ) -> None:
        version = session.get(BotVersion, release.version_id)
        account = session.get(Account, deployment.account_id)
        org = session.get(Organization, deployment.org_id)
        assert version is not None and account is not None and org is not None
        blob = session.get(BundleBlob, version.digest)
        assert blob is not None
        spec = RuntimeSpec(
            runtime_id=deployment.runtime_id,
            account_id=f"{org.slug}.{account.name}",
            venue=account.venue,
            bundle=blob.data,
            digest=version.digest,
            params=release.params,
            capital=deployment.capital,
            release=release.content_hash,
            signature=version.signature,
            trusted_keys=tuple(trusted_keys(session, org.id)),  # type: ignore[arg-type]
            require_signature=signing_required(session, org.id),  # type: ignore[arg-type]
        )
        deployment.runtime_ref = self.backend.launch(spec)
        deployment.next_start_ms = None
        self._runtimes[deployment.runtime_id] = _Runtime(
            launched_at=self._clock(), release=release.content_hash
        )
        logger.info("launched %s (release %d)", deployment.runtime_id, release.number)
        self._set_status(session, deployment, RuntimeStatus.STARTING, detail)

    # -- status ------------------------------------------------------------------------------

    def _set_status(
        self,
        session: Session,
        deployment: Deployment,
        status: RuntimeStatus,
        detail: str | None,
    ) -> None:
        if deployment.status is status and deployment.status_detail == detail:
            return
        changed = deployment.status is not status
        deployment.status, deployment.status_detail = status, detail
        deployment.status_ms = protocol.now_ms()
        session.add(deployment)
        if changed:
            message = f"{deployment.name} is {status.value}" + (f": {detail}" if detail else "")
            self._announce(session, deployment, "bot.status", message, status=status.value)

    def _announce(
        self, session: Session, deployment: Deployment, kind: str, message: str, **data: Any
    ) -> None:
        org = session.get(Organization, deployment.org_id)
        assert org is not None
        events.publish_safely(
            self.redis,
            events.Event.of(kind, org.slug, message, deployment=deployment.name, **data),
        )
