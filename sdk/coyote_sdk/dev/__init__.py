"""The local stack: Kafka, Redis Stack, PostgreSQL and OpenBao on loopback, for development,
tests and the demo. ``coyote-sdk dev up | down | status | logs`` is its command line; see
``docs/dev-stack.md``.
"""

from coyote_sdk.dev._services import StackError, ensure_topics
from coyote_sdk.dev._stack import Health, ServiceStatus, Stack

__all__ = [
    "Health",
    "ServiceStatus",
    "Stack",
    "StackError",
    "ensure_topics",
]
