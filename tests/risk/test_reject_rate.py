"""The reject-rate breaker: a scope whose last N new orders are mostly rejected is halted for a
while, then starts again with a clean window."""

from __future__ import annotations

from decimal import Decimal

import pytest

from coyote_risk import Limits, RejectRateBreaker, risk_config_from_mapping

pytestmark = pytest.mark.unit

LIMITS = Limits(max_reject_rate=Decimal("0.5"), reject_rate_window=4, reject_halt_s=10.0)


def test_a_full_window_at_the_rate_trips_the_scope_until_its_halt_runs_out() -> None:
    breaker: RejectRateBreaker[str] = RejectRateBreaker()
    outcomes = [True, False, True]  # 2 of 3: the window is not full yet
    assert [breaker.note("bot", LIMITS, rejected=r, now=0.0) for r in outcomes] == [None] * 3

    trip = breaker.note("bot", LIMITS, rejected=False, now=1.0)  # 2 of 4 = 50 %

    assert trip is not None
    assert (trip.rejected, trip.window, trip.until) == (2, 4, 11.0)
    assert "2 of its last 4 new orders rejected (limit 50%)" in trip.describe()
    assert breaker.halted("bot") and breaker.scopes() == ["bot"]
    assert breaker.lift_due(10.9) == []
    assert breaker.lift_due(11.0) == ["bot"]
    assert not breaker.halted("bot")


def test_the_window_slides_and_under_the_rate_nothing_trips() -> None:
    breaker: RejectRateBreaker[str] = RejectRateBreaker()
    # Rejected, then accepted, alternately but with one accepted more each 4: never 2 of 4.
    for n in range(40):
        assert breaker.note("bot", LIMITS, rejected=n % 4 == 0, now=float(n)) is None

    # Only the last four count: the first rejection has slid out when the next one comes.
    for rejected in (True, False, False, False, False):
        assert breaker.note("other", LIMITS, rejected=rejected, now=0.0) is None
    assert breaker.note("other", LIMITS, rejected=True, now=0.0) is None  # 1 of 4
    assert breaker.note("other", LIMITS, rejected=True, now=0.0) is not None  # 2 of 4


def test_a_halted_scope_counts_nothing_and_restarts_with_an_empty_window() -> None:
    breaker: RejectRateBreaker[str] = RejectRateBreaker()
    for _ in range(4):
        breaker.note("bot", LIMITS, rejected=True, now=0.0)
    assert breaker.halted("bot")
    assert breaker.note("bot", LIMITS, rejected=True, now=1.0) is None  # not counted

    breaker.lift_due(20.0)
    # A fresh window: three more rejections do not trip it again at once.
    assert [breaker.note("bot", LIMITS, rejected=True, now=21.0) for _ in range(3)] == [None] * 3
    assert breaker.note("bot", LIMITS, rejected=True, now=21.0) is not None


def test_scopes_without_a_rate_limit_are_not_tracked() -> None:
    breaker: RejectRateBreaker[str] = RejectRateBreaker()
    for _ in range(100):
        assert breaker.note("bot", Limits(), rejected=True, now=0.0) is None
    assert breaker.scopes() == []


def test_defaults_apply_when_only_the_rate_is_set() -> None:
    breaker: RejectRateBreaker[str] = RejectRateBreaker()
    limits = Limits(max_reject_rate=Decimal(1))
    trips = [breaker.note("bot", limits, rejected=True, now=0.0) for _ in range(50)]
    assert trips[:49] == [None] * 49
    last = trips[49]
    assert last is not None and (last.window, last.until) == (50, 300.0)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("max_reject_rate", "1.5", "max_reject_rate must be in (0, 1]"),
        ("max_reject_rate", "0", "max_reject_rate must be in (0, 1]"),
        ("reject_rate_window", 0, "reject_rate_window must be positive"),
        ("reject_halt_s", 0, "reject_halt_s must be positive"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(
    setting: str, value: object, message: str
) -> None:
    with pytest.raises(
        ValueError, match=r"bots\.sma: " + message.replace("(", r"\(").replace("]", r"\]")
    ):
        risk_config_from_mapping(
            {"instruments": {}, "bots": {"sma": {setting: value}}}, account_id="acct"
        )
