"""Reading bars and trades (ticks) from CSV files, for backtests and replay feeds.

Bars: the format of backtesting.py and most data vendors — a header row, a timestamp in the first
column (ISO date or date-time, UTC), then ``Open,High,Low,Close,Volume`` in any letter case, rows
in time order. Trades: a header row, the timestamp first (ISO, UTC, or epoch milliseconds), then
``Price`` and ``Size`` (or ``Volume``/``Quantity``), rows in time order (equal times allowed).
"""

from __future__ import annotations

import csv
import itertools
import statistics
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from coyote_sdk.protocol import Bar, ProtocolError, Timeframe, Trade

_COLUMNS = ("open", "high", "low", "close", "volume")


_SIZE_COLUMNS = ("size", "volume", "quantity", "qty")


class CsvDataError(ValueError):
    """A CSV file that cannot be read as bars; the message names the file and the line."""


def csv_kind(path: str | Path) -> str:
    """``bars`` or ``ticks``: what the file's header says it holds."""
    header = [column.lower() for column in _rows(Path(path))[0]]
    if all(column in header for column in _COLUMNS[:4]):
        return "bars"
    if "price" in header:
        return "ticks"
    raise CsvDataError(
        f"{path}: the header names neither bars (Open, High, Low, Close, Volume) nor trades "
        f"(Price, Size); found {header}"
    )


def read_trades_csv(
    path: str | Path, *, symbol: str | None = None, venue: str = "csv"
) -> list[Trade]:
    """Reads a CSV of trades (see the module's docstring).

    Raises:
        CsvDataError: naming the file, line and problem.
    """
    path, symbol, rows, header = _table(path, symbol)
    try:
        price_at = header.index("price")
        size_at = next(header.index(c) for c in _SIZE_COLUMNS if c in header)
    except (ValueError, StopIteration) as exc:
        raise CsvDataError(f"{path}: the header must name Price and Size; found {rows[0]}") from exc
    trades: list[Trade] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        try:
            ts_ms = _timestamp_ms(row[0])
            trade = Trade(
                symbol=symbol,
                venue=venue,
                ts_ms=ts_ms,
                price=Decimal(row[price_at]),
                size=Decimal(row[size_at]),
            )
        except (ValueError, IndexError, InvalidOperation, ProtocolError) as exc:
            raise CsvDataError(
                f"{path}:{line}: not a timestamp, a price and a size: {row}"
            ) from exc
        if trades and ts_ms < trades[-1].ts_ms:
            raise CsvDataError(f"{path}:{line}: {row[0]} is before the row before it")
        trades.append(trade)
    if not trades:
        raise CsvDataError(f"{path}: no rows of data")
    return trades


def _table(path: str | Path, symbol: str | None) -> tuple[Path, str, list[list[str]], list[str]]:
    """The file, its symbol (by default the file's name in upper case), its rows and its header
    in lower case."""
    path = Path(path)
    rows = _rows(path)
    return path, symbol or path.stem.upper(), rows, [column.lower() for column in rows[0]]


def _rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="") as f:
            rows = [[cell.strip() for cell in row] for row in csv.reader(f)]
    except OSError as exc:
        raise CsvDataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not rows:
        raise CsvDataError(f"{path}: the file is empty")
    return rows


def _timestamp_ms(text: str) -> int:
    """ISO date-time (UTC unless it says otherwise) or epoch milliseconds."""
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


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
    path, symbol, rows, header = _table(path, symbol)
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
            ts_ms = _timestamp_ms(row[0])
            values = [Decimal(row[i]) for i in indexes]
        except (ValueError, IndexError, InvalidOperation) as exc:
            raise CsvDataError(f"{path}:{line}: not a timestamp and five numbers: {row}") from exc
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
