"""Coyote's executor: order intents from Kafka, through the risk engine, to brokers.

The hot path is compiled with Cython; references of each compiled piece live in
:mod:`coyote_executor.reference`.
"""

from coyote_executor._dedupe import RecentIds

__all__ = [
    # Hot-path pieces
    "RecentIds",
]
