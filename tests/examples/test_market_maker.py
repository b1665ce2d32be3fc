"""The market-maker example on real EURUSD hourly bars."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from coyote_sdk import ExecType
from coyote_sdk.backtest import BacktestConfig, run_backtest
from coyote_sdk.csvdata import read_bars_csv
from coyote_sdk.loading import load_bot_class
from coyote_sdk.protocol import CancelAll, NewOrder

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MarketMaker = load_bot_class(ROOT / "examples" / "market_maker.py")
EURUSD = read_bars_csv(ROOT / "examples" / "data" / "EURUSD.csv")[:1000]


def test_quotes_fill_at_their_limit_or_better_and_inventory_stays_bounded() -> None:
    bot = MarketMaker()
    result = run_backtest(bot, EURUSD, config=BacktestConfig(cash=Decimal(100_000)))
    quotes = {i.intent_id: i for i in result.intents if isinstance(i, NewOrder)}
    bar_at = {bar.ts_ms: bar for bar in EURUSD}

    for fill in result.fills:
        quote = quotes[fill.order_id]
        bar = bar_at[fill.ts_ms]
        assert quote.limit_price is not None
        if fill.side == "buy":
            assert fill.price == min(quote.limit_price, bar.open)
            assert bar.low <= quote.limit_price
        else:
            assert fill.price == max(quote.limit_price, bar.open)
            assert bar.high >= quote.limit_price
        assert abs(fill.position_after) <= Decimal(30_000)

    kinds = Counter(r.exec_type for r in result.reports)
    assert kinds[ExecType.TRADE] == len(result.fills) > 100
    assert kinds[ExecType.CANCELED] > 100  # stale quotes are pulled every bar
    assert sum(isinstance(i, CancelAll) for i in result.intents) > 100
    assert {q.tag for q in quotes.values()} == {"bid", "ask"}


def test_each_quote_is_half_a_spread_from_the_close_it_was_placed_on() -> None:
    result = run_backtest(MarketMaker(half_spread="0.001"), EURUSD[:50])
    close_at = {bar.ts_ms + 3_600_000: bar.close for bar in EURUSD}

    for quote in (i for i in result.intents if isinstance(i, NewOrder)):
        close = close_at[quote.ts_ms]
        offset = Decimal("-0.001") if quote.tag == "bid" else Decimal("0.001")
        assert quote.limit_price == (close + offset).quantize(Decimal("0.00001"))
