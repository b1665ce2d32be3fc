"""The supervisor and its runtime backends (local processes, Kubernetes)."""

from coyote_control_plane.supervisor._supervisor import Supervisor
from coyote_control_plane.supervisor.backends import (
    BackendError,
    LogChunk,
    Observation,
    RuntimeBackend,
    RuntimeSpec,
)
from coyote_control_plane.supervisor.intents import IntentProducer
from coyote_control_plane.supervisor.local import LocalBackend

__all__ = [
    "BackendError",
    "IntentProducer",
    "LocalBackend",
    "LogChunk",
    "Observation",
    "RuntimeBackend",
    "RuntimeSpec",
    "Supervisor",
]
