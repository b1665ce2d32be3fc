"""The compiled token bucket against its pure-Python reference."""

from __future__ import annotations

import random

import pytest

from coyote_risk import TokenBucket, reference

pytestmark = pytest.mark.unit

SECOND = 1_000_000_000


@pytest.mark.parametrize("bucket_type", [TokenBucket, reference.TokenBucket])
def test_a_burst_of_capacity_passes_then_the_next_order_is_throttled(bucket_type: type) -> None:
    bucket = bucket_type(5, 1.0)

    passed = [bucket.try_acquire(0) for _ in range(6)]

    assert passed == [True] * 5 + [False]


@pytest.mark.parametrize("bucket_type", [TokenBucket, reference.TokenBucket])
def test_tokens_refill_at_the_sustained_rate_up_to_capacity(bucket_type: type) -> None:
    bucket = bucket_type(2, 4.0)
    assert bucket.try_acquire(0, 2.0)

    after_quarter_second = bucket.available(SECOND // 4)
    after_a_minute = bucket.available(60 * SECOND)

    assert after_quarter_second == pytest.approx(1.0)
    assert after_a_minute == 2.0


@pytest.mark.parametrize("bucket_type", [TokenBucket, reference.TokenBucket])
def test_a_clock_stepping_backwards_mints_no_tokens(bucket_type: type) -> None:
    bucket = bucket_type(1, 1.0, 10 * SECOND)
    assert bucket.try_acquire(10 * SECOND)

    assert not bucket.try_acquire(5 * SECOND)
    assert bucket.available(10 * SECOND) == 0.0


@pytest.mark.parametrize("bucket_type", [TokenBucket, reference.TokenBucket])
@pytest.mark.parametrize(("capacity", "rate"), [(0, 1.0), (1, 0.0), (-1, 1.0)])
def test_non_positive_settings_are_refused(bucket_type: type, capacity: float, rate: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        bucket_type(capacity, rate)


@pytest.mark.parametrize("bucket_type", [TokenBucket, reference.TokenBucket])
def test_a_resized_bucket_keeps_the_tokens_left_not_a_fresh_burst(bucket_type: type) -> None:
    bucket = bucket_type(5, 1.0)
    for _ in range(4):
        assert bucket.try_acquire(0)

    larger = bucket.resized(10, 2.0, 0)
    smaller = bucket_type(5, 1.0).resized(2, 1.0, 0)

    assert larger.capacity == 10 and larger.refill_per_second == 2.0
    assert larger.available(0) == 1.0  # what was left, not the new burst of 10
    assert larger.available(SECOND) == 3.0  # refilling at the new rate
    assert smaller.available(0) == 2.0  # a full bucket is cut to the new capacity


def test_compiled_and_reference_agree_on_a_random_order_flow() -> None:
    rng = random.Random(7)
    compiled, ref = TokenBucket(10, 3.5), reference.TokenBucket(10, 3.5)
    now = 0

    for _ in range(5000):
        now += rng.randint(0, SECOND // 2)
        tokens = rng.choice([0.5, 1.0, 2.0])
        assert compiled.try_acquire(now, tokens) == ref.try_acquire(now, tokens)
    assert compiled.available(now) == pytest.approx(ref.available(now))
