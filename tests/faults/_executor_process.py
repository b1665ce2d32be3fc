"""Runs an executor as its own process, for the tests that kill it.

Usage: python -m tests.faults._executor_process CONFIG_JSON

Keys: ``accounts_file``, ``database_url``, ``group_id``; optional ``kafka_bootstrap`` and
``redis_url`` (a private stack's; the environment's stack otherwise), ``intents_topic``,
``reports_topic``, ``dead_letter_topic`` (the protocol's topics otherwise), ``instance_id``,
``reconcile_interval_s``. A failpoint is armed with ``COYOTE_EXECUTOR_FAILPOINT``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

from coyote_executor.accounts import load_accounts
from coyote_executor.brokers.paper import PaperBroker
from coyote_executor.cli import redis_client
from coyote_executor.config import Settings
from coyote_executor.service import Executor, ExecutorOptions
from coyote_executor.store import Store
from coyote_sdk.config import StackSettings
from coyote_sdk.logs import configure_logging


async def main(config: dict[str, Any]) -> None:
    endpoints = StackSettings().endpoints()
    accounts = load_accounts(config["accounts_file"])
    client = redis_client(
        config.get("redis_url") or endpoints.redis_url, timeout_s=Settings().redis_timeout_s
    )
    broker = PaperBroker(client, {a: c.paper for a, c in accounts.items() if c.paper is not None})
    topics = {
        name: config[name]
        for name in ("intents_topic", "reports_topic", "dead_letter_topic")
        if name in config
    }
    executor = Executor(
        accounts,
        brokers=dict.fromkeys(accounts, broker),
        store=Store(config["database_url"]),
        redis=client,
        kafka_bootstrap=config.get("kafka_bootstrap") or endpoints.kafka_bootstrap,
        options=ExecutorOptions(
            group_id=config["group_id"],
            instance_id=config.get("instance_id", "crash-test"),
            **topics,
            **(
                {"reconcile_interval_s": float(config["reconcile_interval_s"])}
                if "reconcile_interval_s" in config
                else {}
            ),
        ),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await executor.run(stop)


if __name__ == "__main__":
    configure_logging()
    asyncio.run(main(json.loads(sys.argv[1])))
