"""Fixtures of the fault-injection tests: a private stack for the package's tests, which they
may kill and restart, and a scenario per test on it (see ``_harness.py``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults._harness import PrivateStack, ProxiedPaths, Scenario, sweep_orphans
from tests.faults._toxiproxy import TOXIPROXY, Toxiproxy, toxiproxy_binary


@pytest.fixture(scope="package")
def fault_stack() -> Iterator[PrivateStack]:
    """Kafka, Redis and PostgreSQL of the fault tests' own, started once for the package:
    killing them never disturbs the shared stack. Removed afterwards, failed tests or not."""
    sweep_orphans()
    stack = PrivateStack(f"faults-{uuid.uuid4().hex[:12]}")
    try:
        stack.up()
        yield stack
    finally:
        stack.close()


@pytest.fixture
def private_stack(fault_stack: PrivateStack) -> PrivateStack:
    """The private stack with every service up: a test that left one down (it failed while
    the service was stopped) does not take the next test with it."""
    fault_stack.up()
    return fault_stack


@pytest.fixture(scope="package")
def proxied_paths(fault_stack: PrivateStack) -> Iterator[ProxiedPaths]:
    """Toxiproxy in front of the private stack's Kafka and Redis, for an executor behind it,
    started once for the package; skips the test when ``toxiproxy-server`` is not installed."""
    binary = toxiproxy_binary()
    if binary is None:
        pytest.skip(
            "toxiproxy-server is not installed: scripts/bootstrap.sh installs it into "
            ".coyote/tools/bin (go install github.com/Shopify/toxiproxy/v2/cmd/server from the "
            "Go module proxy)"
        )
    toxiproxy = Toxiproxy(binary, fault_stack.home / TOXIPROXY)
    try:
        toxiproxy.start()
        yield fault_stack.proxy_executor(toxiproxy)
    finally:
        toxiproxy.stop()


@pytest.fixture
def network(proxied_paths: ProxiedPaths, private_stack: PrivateStack) -> ProxiedPaths:
    """The executor's paths through Toxiproxy, with no toxic left over from a test that
    failed while one was in force."""
    proxied_paths.toxiproxy.reset()
    return proxied_paths


@pytest.fixture
async def scenario(
    private_stack: PrivateStack, tmp_path: Path
) -> AsyncIterator[Callable[..., Scenario]]:
    """Makes the test's scenario (``scenario(name, **flow_options)``): its bots, executor and
    database on the private stack, all stopped after the test."""
    made: list[Scenario] = []

    def make(name: str, **flow_options: Any) -> Scenario:
        made.append(Scenario(private_stack, name, tmp_path, **flow_options))
        return made[-1]

    yield make
    for each in made:
        await each.close()
