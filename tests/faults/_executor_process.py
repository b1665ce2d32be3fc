"""Runs an executor as its own process, for the tests that kill it.

Usage: python -m tests.faults._executor_process CONFIG_JSON
(keys: accounts_file, database_url, group_id, intents_topic, reports_topic, dead_letter_topic).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import redis.asyncio as aioredis

from coyote_executor.accounts import load_accounts
from coyote_executor.brokers.paper import PaperBroker
from coyote_executor.service import Executor, ExecutorOptions
from coyote_executor.store import Store
from coyote_sdk.config import StackSettings
from coyote_sdk.logs import configure_logging


async def main(config: dict[str, str]) -> None:
    endpoints = StackSettings().endpoints()
    accounts = load_accounts(config["accounts_file"])
    client = aioredis.Redis.from_url(endpoints.redis_url)
    broker = PaperBroker(client, {a: c.paper for a, c in accounts.items() if c.paper is not None})
    executor = Executor(
        accounts,
        brokers=dict.fromkeys(accounts, broker),
        store=Store(config["database_url"]),
        redis=client,
        kafka_bootstrap=endpoints.kafka_bootstrap,
        options=ExecutorOptions(
            group_id=config["group_id"],
            instance_id="crash-test",
            intents_topic=config["intents_topic"],
            reports_topic=config["reports_topic"],
            dead_letter_topic=config["dead_letter_topic"],
            reconcile_interval_s=1.0,
        ),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await executor.run(stop)


if __name__ == "__main__":
    configure_logging()
    asyncio.run(main(json.loads(sys.argv[1])))
