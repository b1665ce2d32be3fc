"""Runtime backends: where a deployment's bot runtime process lives.

The supervisor decides *what* should run; a backend knows *how*: a local process
(:class:`~coyote_control_plane.supervisor.local.LocalBackend`) or a Kubernetes Deployment
(:class:`~coyote_control_plane.supervisor.kubernetes.KubernetesBackend`). Backends are
synchronous: the supervisor calls them from its own thread.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Mapping
from typing import Any


class BackendError(RuntimeError):
    """The backend could not do what it was asked; the message says why."""


@dataclasses.dataclass(frozen=True)
class RuntimeSpec:
    """Everything needed to launch one bot runtime.

    Attributes:
        runtime_id: The bot id of the runtime (``<org slug>.<deployment name>``).
        account_id: The account its intents name (``<org slug>.<account name>``).
        venue: The market-data venue of its symbols.
        bundle: The bundle's bytes.
        digest: The bundle's digest (``sha256:<hex>``); the runtime verifies it.
        params: The bot's parameters, validated against the bundle's schema.
        capital: Its capital allocation (decimal text).
        release: The release's content hash, reported in its heartbeat.
        signature: The version's signature, if it has one.
        trusted_keys: The organisation's unrevoked signing keys.
        require_signature: Whether the organisation runs signed bundles only (it has signing
            keys, revoked or not): the runtime then loads the bundle only with a
            ``signature`` by one of ``trusted_keys``.
        secret_env: Environment variables of this runtime alone that hold credentials (its
            ``COYOTE_REDIS_URL``, with its own Redis user); they override the backend's
            ``env``, and the Kubernetes backend keeps them in a Secret.
    """

    runtime_id: str
    account_id: str
    venue: str
    bundle: bytes = dataclasses.field(repr=False)
    digest: str
    params: dict[str, Any]
    capital: str
    release: str
    signature: str | None = None
    trusted_keys: tuple[str, ...] = ()
    require_signature: bool = False
    secret_env: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)

    def command_args(self, bundle_path: str) -> list[str]:
        """The ``coyote-sdk run`` arguments that launch this runtime from ``bundle_path``."""
        return [
            "run",
            bundle_path,
            "--digest",
            self.digest,
            "--bot-id",
            self.runtime_id,
            "--account",
            self.account_id,
            "--venue",
            self.venue,
            "--cash",
            self.capital,
            "--params-json",
            json.dumps(self.params, sort_keys=True),
            "--release",
            self.release,
            "--no-init-flag",
            *(["--signature", self.signature] if self.signature else []),
            *(arg for key in self.trusted_keys for arg in ("--trusted-key", key)),
            *(["--require-signature"] if self.require_signature else []),
        ]


@dataclasses.dataclass(frozen=True)
class Observation:
    """What a backend sees of one runtime.

    Attributes:
        alive: A process (or pod) of it runs now.
        exit_code: How its last process ended, when it is not alive and the backend knows.
        ref: The backend's handle (a pid, a Deployment name).
        detail: Something worth showing a user (a pod's waiting reason, say).
        restarts: Restarts the backend did itself (Kubernetes restarts crashed pods).
    """

    alive: bool
    exit_code: int | None = None
    ref: str | None = None
    detail: str | None = None
    restarts: int = 0


class RuntimeBackend(abc.ABC):
    """Launches, watches and removes bot runtimes."""

    name: str
    restarts_itself: bool = False
    """Whether the platform restarts crashed runtimes (Kubernetes does); if not, the
    supervisor relaunches them with backoff."""

    @abc.abstractmethod
    def launch(self, spec: RuntimeSpec) -> str:
        """Starts the runtime (replacing any earlier one of the same id); returns its ref."""

    @abc.abstractmethod
    def observe(self, runtime_id: str) -> Observation:
        """The runtime's state now; ``alive=False`` when none runs."""

    @abc.abstractmethod
    def terminate(self, runtime_id: str, *, force: bool = False) -> None:
        """Asks the runtime to stop (SIGTERM: it stops gracefully), or kills it if ``force``.
        Does nothing when none runs."""

    @abc.abstractmethod
    def remove(self, runtime_id: str) -> None:
        """Forgets a stopped runtime and frees what it held (not its logs)."""

    @abc.abstractmethod
    def logs(
        self, runtime_id: str, *, tail: int = 200, since_offset: int | None = None
    ) -> LogChunk:
        """The runtime's recent log lines: the last ``tail``, or those after ``since_offset``
        (the ``next_offset`` of an earlier chunk) when following."""

    def close(self) -> None:  # noqa: B027 - optional: most backends hold nothing
        """Releases the backend's own resources (clients); runtimes keep running."""


@dataclasses.dataclass(frozen=True)
class LogChunk:
    lines: list[str]
    next_offset: int
    """Pass back as ``since_offset`` to get only the lines written after these."""
