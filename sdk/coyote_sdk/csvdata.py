"""Reading bars from CSV files, for backtests and replay feeds.

The format is the common one of backtesting.py and most data vendors: a header row, a timestamp
in the first column (ISO date or date-time, UTC), then ``Open,High,Low,Close,Volume`` in any
letter case. Rows must be in time order.
"""

from __future__ import annotations

import csv
import itertools
import statistics
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from coyote_sdk.protocol import Bar, ProtocolError, Timeframe

_COLUMNS = ("open", "high", "low", "close", "volume")


class CsvDataError(ValueError):
    """A CSV file that cannot be read as bars; the message names the file and the line."""


def read_bars_csv(
    path: str | Path,
    *,
    symbol: str | None = None,
    venue: str = "csv",
    timeframe: Timeframe | str | None = None,
) -> list[Bar]:
    """Reads a CSV of OHLCV bars.

    Args:
        path: The file.
        symbol: The instrument; by default the file's name in upper case (``GOOG.csv`` → GOOG).
        venue: The venue the bars are labelled with.
        timeframe: The bars' timeframe; by default inferred as the largest timeframe that fits
            in the typical spacing of the rows.

    Raises:
        CsvDataError: naming the file, line and problem.
    """
    path = Path(path)
    symbol = symbol or path.stem.upper()
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise CsvDataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not rows:
        raise CsvDataError(f"{path}: the file is empty")
    header = [column.strip().lower() for column in rows[0]]
    try:
        indexes = [header.index(column) for column in _COLUMNS]
    except ValueError as exc:
        raise CsvDataError(
            f"{path}: the header must name {', '.join(c.title() for c in _COLUMNS)}; "
            f"found {rows[0]}"
        ) from exc

    parsed: list[tuple[int, list[Decimal]]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        try:
            moment = datetime.fromisoformat(row[0].strip())
            values = [Decimal(row[i]) for i in indexes]
        except (ValueError, IndexError, InvalidOperation) as exc:
            raise CsvDataError(f"{path}:{line}: not a timestamp and five numbers: {row}") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ts_ms = int(moment.timestamp() * 1000)
        if parsed and ts_ms <= parsed[-1][0]:
            raise CsvDataError(f"{path}:{line}: {row[0]} is not after the row before it")
        parsed.append((ts_ms, values))
    if not parsed:
        raise CsvDataError(f"{path}: no rows of data")

    tf = Timeframe(timeframe) if timeframe is not None else _infer_timeframe(path, parsed)
    bars = []
    for index, (ts_ms, (o, h, low, c, v)) in enumerate(parsed):
        try:
            bars.append(
                Bar(
                    symbol=symbol,
                    venue=venue,
                    timeframe=tf,
                    ts_ms=ts_ms,
                    open=o,
                    high=h,
                    low=low,
                    close=c,
                    volume=v,
                )
            )
        except (ValueError, ProtocolError) as exc:
            raise CsvDataError(f"{path}:{index + 2}: {exc}") from exc
    return bars


def _infer_timeframe(path: Path, parsed: list[tuple[int, list[Decimal]]]) -> Timeframe:
    if len(parsed) < 2:
        raise CsvDataError(f"{path}: one row is not enough to infer the timeframe; pass it")
    spacing = statistics.median(b[0] - a[0] for a, b in itertools.pairwise(parsed))
    fitting = [tf for tf in Timeframe if tf.milliseconds <= spacing]
    if not fitting:
        raise CsvDataError(f"{path}: rows are {spacing} ms apart, closer than any timeframe")
    return max(fitting, key=lambda tf: tf.milliseconds)
