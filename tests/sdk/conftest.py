"""Fixtures of the SDK's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from coyote_sdk.config import Endpoints
from tests.sdk._runtime_harness import Harness


@pytest.fixture
async def harness(endpoints: Endpoints, unique: str) -> AsyncIterator[Harness]:
    h = Harness(endpoints, unique)
    await h.watch_intents()
    yield h
    await h.close()
