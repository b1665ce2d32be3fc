"""Reading bars from CSV files, and the errors bad files get."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from coyote_sdk.csvdata import CsvDataError, read_bars_csv
from coyote_sdk.protocol import Timeframe

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / "examples" / "data"


def test_real_files_are_read_with_symbol_and_timeframe_inferred() -> None:
    goog = read_bars_csv(DATA / "GOOG.csv")
    eurusd = read_bars_csv(DATA / "EURUSD.csv", venue="fx")

    assert (len(goog), goog[0].symbol, goog[0].timeframe) == (2148, "GOOG", Timeframe.D1)
    assert goog[0].close == Decimal("100.34")
    assert (len(eurusd), eurusd[0].timeframe, eurusd[0].venue) == (5000, Timeframe.H1, "fx")
    assert eurusd[0].close == Decimal("1.07219")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("date,price\n2020-01-01,1\n", "the header must name Open, High, Low, Close, Volume"),
        (",Open,High,Low,Close,Volume\nyesterday,1,1,1,1,1\n", ":2: not a timestamp"),
        (
            ",Open,High,Low,Close,Volume\n2020-01-02,1,1,1,1,1\n2020-01-01,1,1,1,1,1\n",
            ":3: 2020-01-01 is not after",
        ),
        (
            ",Open,High,Low,Close,Volume\n2020-01-01,1,0.5,0.4,1,1\n2020-01-02,1,1,1,1,1\n",
            ":2: bar is inconsistent",
        ),
    ],
)
def test_bad_files_get_an_error_naming_file_and_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)

    with pytest.raises(CsvDataError, match=message):
        read_bars_csv(path)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CsvDataError, match="cannot read"):
        read_bars_csv(tmp_path / "nope.csv")
