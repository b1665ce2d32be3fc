"""Fixtures of the fault-injection tests: a private stack for the package's tests, which they
may kill and restart, and a scenario per test on it (see ``_harness.py``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults._harness import PrivateStack, Scenario, sweep_orphans


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
