"""The supervisor: makes what runs match what the database wants, pass after pass.

Each pass, for every deployment, it

1. writes the Redis side of the database (control flags, halts, account documents, the
   runtimes' Redis users), which also repairs Redis after a restart or a flush;
2. looks at the runtime (the backend's process or pod, and its heartbeat in Redis) and records
   what it sees: ``starting``, ``running``, ``paused``, ``stale``, ``crashed``, ``failed``,
   ``stopping``, ``stopped``;
3. acts like an actor system's supervisor: launches what should run, relaunches a crashed
   runtime after an exponential backoff (1 s, 2 s, 4 s … up to a limit, then ``failed`` with
   the reason), kills a runtime that stays stale, and stops what should not run — gracefully
   first (the flag says stopped: it cancels its orders and exits), then by signal;
4. cancels the open orders of a bot whose runtime lost its heartbeat — found dead, or stale
   for ``heartbeat_loss_cancel_after_s`` — unless its deployment says not to: one
   :class:`~coyote_sdk.protocol.CancelAll` per loss, produced to the intents topic as the bot
   would produce it. Its next runtime is launched once Kafka has that cancel.

A Redis or database outage fails a pass, not the supervisor: the next pass converges again.
Only one supervisor acts at a time (a Redis lease), so several API replicas can run one each.
"""

from __future__ import annotations

import concurrent.futures
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
    AuditEntry,
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
from coyote_control_plane.supervisor.backends import (
    BackendError,
    Observation,
    RuntimeBackend,
    RuntimeSpec,
)
from coyote_control_plane.supervisor.intents import IntentProducer
from coyote_control_plane.supervisor.redis_acl import RuntimeRedisAccess, sync_runtime_users
from coyote_sdk import protocol
from coyote_sdk.control import read_status
from coyote_sdk.protocol import BotStatus, CancelAll, IntentOrigin, RuntimeState

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
# A runtime whose heartbeat says one of these looks after its orders; one stopping or stopped
# has cancelled them itself on its way out.
_MANAGES_ORDERS = frozenset(
    {RuntimeState.STARTING, RuntimeState.RUNNING, RuntimeState.PAUSED, RuntimeState.BLOCKED}
)
# What a deployment's recorded status says of a runtime this supervisor knows nothing of (it
# started after the runtime died): the last supervisor saw it looking after its orders.
_LAST_SEEN_MANAGING = frozenset({RuntimeStatus.RUNNING, RuntimeStatus.PAUSED, RuntimeStatus.STALE})


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
    manages_orders: bool = False
    """Its last heartbeat said it looks after its bot's orders, and they have not been cancelled
    for a loss since: losing it now leaves them unattended."""


@dataclasses.dataclass
class _Cancel:
    """The cancel of a lost runtime's orders, kept until Kafka has it."""

    org_id: int
    org_slug: str
    deployment: str
    account: str
    account_id: str
    reason: str
    sending: concurrent.futures.Future[None] | None = None
    intent: CancelAll | None = None
    """The intent of the latest attempt."""
    error: str | None = None
    """Why the latest attempt failed."""


class Supervisor:
    """Reconciles deployments with their runtimes.

    Args:
        engine: The control plane's database.
        client: Redis (flags, heartbeats, halts, events, the lease).
        backend: Where runtimes run.
        settings: Timings and limits.
        intents: Where the cancels of lost runtimes' orders go (the intents topic); the
            supervisor closes it when it stops.
        clock: Seconds, monotonic; tests may pass their own.
        redis_access: The Redis URL and user each runtime gets; without it, runtimes find
            Redis through the backend's environment.
    """

    def __init__(
        self,
        engine: Engine,
        client: redis.Redis,
        backend: RuntimeBackend,
        settings: SupervisorSettings,
        intents: IntentProducer,
        *,
        clock: Callable[[], float] = time.monotonic,
        redis_access: RuntimeRedisAccess | None = None,
    ) -> None:
        self.engine = engine
        self.redis = client
        self.backend = backend
        self.settings = settings
        self.intents = intents
        self._clock = clock
        self.redis_access = redis_access
        self._runtimes: dict[str, _Runtime] = {}
        self._cancels: dict[str, _Cancel] = {}
        """Cancels of lost runtimes' orders on their way to Kafka, by runtime id."""
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
        self.intents.close()

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
                if self.redis_access is not None:
                    sync_runtime_users(session, self.redis_access)
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
            self._send_cancels(session)
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
        self._watch_orders(session, deployment, known, heartbeat, seen, redis_up=redis_up)

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
            self._watch_alive(
                session, deployment, known, heartbeat, now, seen.restarts, heartbeat_read=redis_up
            )
            return

        # Nothing runs.
        if known is not None and known.restarting:
            if self._cancel_pending(session, deployment):
                return
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
        if due and not self._cancel_pending(session, deployment):
            self._launch(session, deployment, release, None)

    def _watch_alive(
        self,
        session: Session,
        deployment: Deployment,
        known: _Runtime,
        heartbeat: BotStatus | None,
        now: float,
        backend_restarts: int,
        *,
        heartbeat_read: bool,
    ) -> None:
        """Records what the heartbeat says of a runtime whose process lives; without one, the
        runtime is stale: its orders are cancelled, then it is killed. ``heartbeat_read``:
        whether Redis answered, so that no heartbeat means none was sent."""
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
        if (
            heartbeat_read
            and known.manages_orders
            and silent >= settings.heartbeat_loss_cancel_after_s
        ):
            self._heartbeat_lost(
                session, deployment, known, f"its runtime sent no heartbeat for {silent:.0f} s"
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
            account_id=_account_id(org, account),
            venue=account.venue,
            bundle=blob.data,
            digest=version.digest,
            params=release.params,
            capital=deployment.capital,
            release=release.content_hash,
            signature=version.signature,
            trusted_keys=tuple(trusted_keys(session, org.id)),  # type: ignore[arg-type]
            require_signature=signing_required(session, org.id),  # type: ignore[arg-type]
            secret_env=(
                self.redis_access.grant(deployment.runtime_id)
                if self.redis_access is not None
                else {}
            ),
        )
        deployment.runtime_ref = self.backend.launch(spec)
        deployment.next_start_ms = None
        self._runtimes[deployment.runtime_id] = _Runtime(
            launched_at=self._clock(), release=release.content_hash
        )
        logger.info("launched %s (release %d)", deployment.runtime_id, release.number)
        self._set_status(session, deployment, RuntimeStatus.STARTING, detail)

    # -- the orders of lost runtimes ---------------------------------------------------------

    def _watch_orders(
        self,
        session: Session,
        deployment: Deployment,
        known: _Runtime | None,
        heartbeat: BotStatus | None,
        seen: Observation,
        *,
        redis_up: bool,
    ) -> None:
        """Notes from its heartbeat whether the runtime looks after its orders, and cancels them
        if it died doing so. (A stale one is seen to in :meth:`_watch_alive`.)"""
        if known is not None and heartbeat is not None:
            known.manages_orders = heartbeat.state in _MANAGES_ORDERS
        if seen.alive:
            return
        if known.manages_orders if known is not None else deployment.status in _LAST_SEEN_MANAGING:
            how = f"exit code {seen.exit_code}" if seen.exit_code is not None else "vanished"
            if redis_up:
                # Its last heartbeat outlives it until it expires: read as its successor's, it
                # would have the successor look after orders before it even started.
                self.redis.delete(protocol.heartbeat_key(deployment.runtime_id))
            self._heartbeat_lost(session, deployment, known, f"its runtime died ({how})")

    def _heartbeat_lost(
        self, session: Session, deployment: Deployment, known: _Runtime | None, reason: str
    ) -> None:
        """The runtime can look after its bot's orders no more: they are cancelled, once for
        this loss (a heartbeat of a next runtime, or of this one back, makes a new loss)."""
        if known is not None:
            known.manages_orders = False
        if not deployment.cancel_orders_on_heartbeat_loss:
            logger.info("%s: %s; its orders stay (as its deployment says)", deployment.name, reason)
            return
        if deployment.runtime_id in self._cancels:
            return
        account = session.get(Account, deployment.account_id)
        org = session.get(Organization, deployment.org_id)
        assert account is not None and org is not None and org.id is not None
        self._cancels[deployment.runtime_id] = _Cancel(
            org_id=org.id,
            org_slug=org.slug,
            deployment=deployment.name,
            account=account.name,
            account_id=_account_id(org, account),
            reason=reason,
        )

    def _send_cancels(self, session: Session) -> None:
        """Sends the cancels of lost runtimes' orders, sends a failed one again, and records
        (audit log and event) each that Kafka has."""
        for runtime_id, cancel in list(self._cancels.items()):
            sending = cancel.sending
            if sending is not None:
                if not sending.done():
                    continue
                failure = None if sending.cancelled() else sending.exception()
                if failure is None and not sending.cancelled():
                    del self._cancels[runtime_id]
                    self._orders_cancelled(session, cancel)
                    continue
                error = (str(failure) or type(failure).__name__) if failure else "cancelled"
                if error != cancel.error:
                    logger.warning(
                        "cancel of %s's orders not sent (retrying): %s", runtime_id, error
                    )
                cancel.error = error
            # A new intent each attempt: the executor refuses stale intents, and a second
            # cancel-all, should a failed attempt have got through after all, cancels nothing.
            cancel.intent = CancelAll(
                intent_id=protocol.new_intent_id(),
                ts_ms=protocol.now_ms(),
                account_id=cancel.account_id,
                bot_id=runtime_id,
                origin=IntentOrigin.PLATFORM,
            )
            cancel.sending = self.intents.send(cancel.intent)

    def _orders_cancelled(self, session: Session, cancel: _Cancel) -> None:
        assert cancel.intent is not None
        intent_id = str(cancel.intent.intent_id)
        logger.warning(
            "%s: %s; cancel of its open orders sent (intent %s)",
            cancel.deployment,
            cancel.reason,
            intent_id,
        )
        session.add(
            AuditEntry(
                org_id=cancel.org_id,
                ts_ms=protocol.now_ms(),
                actor=ACTOR,
                action="deployment.orders_cancelled",
                target=f"deployment/{cancel.deployment}",
                detail={"reason": cancel.reason, "intent_id": intent_id},
            )
        )
        events.publish_safely(
            self.redis,
            events.Event.of(
                "bot.orders_cancelled",
                cancel.org_slug,
                f"{cancel.reason}: its open orders are being cancelled",
                deployment=cancel.deployment,
                account=cancel.account,
                intent_id=intent_id,
            ),
        )

    def _cancel_pending(self, session: Session, deployment: Deployment) -> bool:
        """Whether the cancel of the lost runtime's orders has yet to reach Kafka. The next
        runtime waits for it: its intents then follow the cancel on the account's partition,
        so the cancel cannot reach the new runtime's orders."""
        cancel = self._cancels.get(deployment.runtime_id)
        if cancel is None:
            return False
        detail = "waiting to cancel its orders before it starts again"
        if cancel.error is not None:
            detail += f": {cancel.error}"
        self._set_status(session, deployment, deployment.status, detail[:2000])
        return True

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


def _account_id(org: Organization, account: Account) -> str:
    """The account id intents and reports carry."""
    return f"{org.slug}.{account.name}"
