"""The compiled memory of recent intent ids against its pure-Python reference."""

from __future__ import annotations

import random

import pytest

from coyote_executor import RecentIds, reference
from coyote_sdk.protocol import new_intent_id

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("ids_type", [RecentIds, reference.RecentIds])
def test_a_redelivered_id_is_recognised(ids_type: type) -> None:
    recent = ids_type(3)
    first = new_intent_id()

    assert recent.add(first)
    assert not recent.add(first)
    assert first in recent


@pytest.mark.parametrize("ids_type", [RecentIds, reference.RecentIds])
def test_the_oldest_id_is_forgotten_when_full(ids_type: type) -> None:
    recent = ids_type(3)
    ids = [new_intent_id() for _ in range(4)]

    for intent_id in ids:
        recent.add(intent_id)

    assert ids[0] not in recent
    assert all(i in recent for i in ids[1:])
    assert len(recent) == 3


@pytest.mark.parametrize("ids_type", [RecentIds, reference.RecentIds])
def test_capacity_must_be_positive(ids_type: type) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ids_type(0)


def test_compiled_and_reference_agree_on_a_redelivery_heavy_stream() -> None:
    rng = random.Random(11)
    pool = [new_intent_id() for _ in range(300)]
    compiled, ref = RecentIds(100), reference.RecentIds(100)

    for _ in range(20_000):
        intent_id = rng.choice(pool)
        assert compiled.add(intent_id) == ref.add(intent_id)
    assert len(compiled) == len(ref)
