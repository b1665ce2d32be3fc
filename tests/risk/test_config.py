"""Risk limits from plain data (TOML or JSON), and the errors bad files get."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from coyote_risk import Limits, risk_config_from_mapping

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_file_loads_and_limits_merge_strictest_wins() -> None:
    data = tomllib.loads((ROOT / "examples" / "risk.toml").read_text())

    config = risk_config_from_mapping(data, account_id="paper")
    goog = config.limits_for("any-bot", "GOOG")

    assert config.instruments["EURUSD"].tick_size == Decimal("0.00001")
    assert config.account.orders_per_second == 10.0
    assert goog.max_position == Decimal(10)
    assert goog.max_order_notional == Decimal(20000)


def test_bot_limits_tighten_the_account_s() -> None:
    config = risk_config_from_mapping(
        {"account": {"max_position": 100}, "bots": {"sma": {"max_position": "40"}}},
        account_id="a",
    )

    assert config.limits_for("sma", "X").max_position == Decimal(40)
    assert config.limits_for("other", "X").max_position == Decimal(100)
    assert Limits().merged(None) == Limits()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"acount": {}}, "unknown section 'acount'"),
        ({"account": {"max_positon": 1}}, "account.max_positon is not a setting"),
        ({"account": {"max_position": "lots"}}, "account.max_position: 'lots' is not valid"),
        ({"account": {"max_position": "-1"}}, "must be a finite, non-negative number"),
        ({"instruments": {"X": {"tick_size": "0"}}}, "tick_size and lot_size must be positive"),
        ({"bots": []}, "bots must be a table"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        risk_config_from_mapping(data, account_id="a")
