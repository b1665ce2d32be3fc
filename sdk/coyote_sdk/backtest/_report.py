"""The equity-curve chart of a backtest: one self-contained HTML file (inline SVG, no CDN)."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

from coyote_sdk.backtest._engine import BacktestResult

_WIDTH, _HEIGHT, _PAD = 960, 300, 48


def _date(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _polyline(
    points: list[tuple[int, float]], low: float, high: float, t0: int, t1: int, height: int
) -> str:
    span_t = max(t1 - t0, 1)
    span_v = (high - low) or 1.0
    return " ".join(
        f"{_PAD + (t - t0) / span_t * (_WIDTH - 2 * _PAD):.1f},"
        f"{_PAD / 2 + (1 - (v - low) / span_v) * (height - _PAD):.1f}"
        for t, v in points
    )


def write_chart(result: BacktestResult, path: str | Path) -> Path:
    """Writes the equity curve, drawdown and statistics of ``result`` to ``path`` (HTML)."""
    path = Path(path)
    points = [(t, float(e)) for t, e in result.equity]
    if not points:
        raise ValueError("the backtest produced no equity points to chart")
    t0, t1 = points[0][0], points[-1][0]
    values = [v for _, v in points]
    low, high = min(values), max(values)
    peak, drawdown = float("-inf"), []
    for t, v in points:
        peak = max(peak, v)
        drawdown.append((t, (v - peak) / peak * 100 if peak > 0 else 0.0))
    worst = min(d for _, d in drawdown)
    trade_marks = "".join(
        f'<circle cx="{_PAD + (trip.entry_ts_ms - t0) / max(t1 - t0, 1) * (_WIDTH - 2 * _PAD):.1f}"'
        f' cy="{_HEIGHT - _PAD / 2:.1f}" r="3" class="{trip.direction}">'
        f"<title>{html.escape(trip.symbol)} {trip.direction} {trip.quantity} @ "
        f"{trip.entry_price:.4f} → pnl {trip.pnl:.2f}</title></circle>"
        for trip in result.trades
    )
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in result.stats.as_rows()
    )
    params = html.escape(", ".join(f"{k}={v}" for k, v in result.params.items()))
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(result.bot)} backtest</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #1f2328; }}
svg {{ width: 100%; max-width: {_WIDTH}px; height: auto; background: #fafbfc; }}
.equity {{ fill: none; stroke: #0969da; stroke-width: 1.5; }}
.drawdown {{ fill: none; stroke: #cf222e; stroke-width: 1; }}
.long {{ fill: #1a7f37; }} .short {{ fill: #cf222e; }}
text {{ font-size: 11px; fill: #57606a; }}
table {{ border-collapse: collapse; margin-top: 16px; }}
th, td {{ text-align: left; padding: 2px 12px 2px 0; }}
</style></head><body>
<h1>{html.escape(result.bot)}</h1>
<p>{params} · {result.bars} bars · {_date(t0)} → {_date(t1)}</p>
<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="equity curve">
<polyline class="equity" points="{_polyline(points, low, high, t0, t1, _HEIGHT)}"/>
<text x="4" y="{_PAD / 2 + 4}">{high:,.0f}</text>
<text x="4" y="{_HEIGHT - _PAD / 2}">{low:,.0f}</text>
{trade_marks}
</svg>
<svg viewBox="0 0 {_WIDTH} 160" role="img" aria-label="drawdown">
<polyline class="drawdown" points="{_polyline(drawdown, worst, 0.0, t0, t1, 160)}"/>
<text x="4" y="28">0 %</text><text x="4" y="136">{worst:.1f} %</text>
</svg>
<table>{rows}</table>
</body></html>
"""
    path.write_text(document)
    return path
