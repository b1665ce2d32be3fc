"""Fixtures of the SDK's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from coyote_sdk.config import Endpoints
from tests.sdk._runtime_harness import Harness


@pytest.fixture
async def harness(endpoints: Endpoints, unique: str) -> AsyncIterator[Harness]:
    h = Harness(endpoints, unique)
    await h.watch_intents()
    yield h
    await h.close()


@pytest.fixture
def md(endpoints: Endpoints, unique: str) -> Iterator[tuple[redis.Redis, str]]:
    """A Redis client and a market-data venue of this test's own; its series go after."""
    client = redis.Redis.from_url(endpoints.redis_url)
    venue = f"v{unique}"
    yield client, venue
    keys = list(client.scan_iter(match=f"coyote:md:{venue}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
