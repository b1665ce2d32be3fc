"""The bot API: parameters, orders outside an engine, symbols, precision, loading from files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from coyote_sdk import Bar, Bot, Param, ParameterError
from coyote_sdk.backtest import run_backtest
from coyote_sdk.loading import BotLoadError, load_bot_class, parse_params
from coyote_sdk.protocol import NewOrder, OrderType, Timeframe

pytestmark = pytest.mark.unit


class Tuned(Bot):
    symbols = ["EURUSD"]
    timeframe = "1h"
    window: int = Param(20, ge=2, description="bars")
    threshold: Decimal = Param(Decimal("1.5"), gt=0)
    label: str = "x"


def test_parameters_have_defaults_are_validated_and_converted() -> None:
    default = Tuned()
    tuned = Tuned(window="50", threshold="2.25")

    assert (default.window, default.threshold, default.label) == (20, Decimal("1.5"), "x")
    assert (tuned.window, tuned.threshold) == (50, Decimal("2.25"))
    assert Tuned.timeframe is Timeframe.H1
    schema = Tuned.params_schema()
    assert schema["properties"]["window"]["minimum"] == 2
    assert schema["properties"]["window"]["description"] == "bars"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"window": 1}, "parameter `window`: Input should be greater than or equal to 2"),
        ({"window": "many"}, "parameter `window`: Input should be a valid integer"),
        ({"windw": 3}, "`windw` is not a parameter of Tuned"),
    ],
)
def test_bad_parameters_are_refused_with_a_message_naming_them(params: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        Tuned(**params)


def test_a_lower_case_symbol_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="'eurusd' is not a canonical symbol"):

        class Bad(Bot):
            symbols = ["eurusd"]


def test_an_unknown_timeframe_is_refused() -> None:
    with pytest.raises(ValueError, match="'7m' is not a valid Timeframe"):

        class Bad(Bot):
            timeframe = "7m"


def test_ordering_outside_an_engine_says_so() -> None:
    with pytest.raises(RuntimeError, match="Tuned is not running"):
        Tuned().buy("EURUSD", 1)


class Recorder(Bot):
    symbols = ["EURUSD"]
    timeframe = "1h"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.errors: list[str] = []

    def on_bar(self, bar: Bar) -> None:
        self.handle = self.buy("EURUSD", 0.1, limit=1.07219)
        try:
            self.buy("GBPUSD", 1)
        except ValueError as exc:
            self.errors.append(str(exc))
        try:
            self.sell("EURUSD", -1)
        except ValueError as exc:
            self.errors.append(str(exc))


def test_orders_keep_every_digit_and_bad_ones_fail_in_the_handler() -> None:
    bar = Bar(
        symbol="EURUSD",
        venue="fx",
        timeframe=Timeframe.H1,
        ts_ms=0,
        open=Decimal("1.07"),
        high=Decimal("1.08"),
        low=Decimal("1.06"),
        close=Decimal("1.07"),
        volume=Decimal(1),
    )
    bot = Recorder()

    result = run_backtest(bot, [bar])

    (intent,) = result.intents
    assert isinstance(intent, NewOrder)
    assert (intent.quantity, intent.limit_price) == (Decimal("0.1"), Decimal("1.07219"))
    assert intent.order_type is OrderType.LIMIT
    assert bot.handle.intent_id == intent.intent_id
    assert "'GBPUSD' is not one of Recorder's symbols" in bot.errors[0]
    assert "`quantity` must be a positive finite decimal" in bot.errors[1]


def test_loading_a_file_with_a_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("from coyote_sdk import Bot\n\nclass B(Bot):\n    def on_bar(self, bar)\n")

    with pytest.raises(BotLoadError, match=r"broken.py:4: syntax error"):
        load_bot_class(path)


def test_loading_a_file_without_a_bot_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")

    with pytest.raises(BotLoadError, match="expected one Bot subclass, found none"):
        load_bot_class(path)


def test_params_from_the_command_line_must_be_name_value() -> None:
    assert parse_params(["fast=10", " slow = 30 "]) == {"fast": "10", "slow": "30"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_params(["fast"])
