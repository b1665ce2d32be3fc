"""The live risk engine inside a backtest: the very checks the executor runs, on bar time."""

from __future__ import annotations

from typing import Any

from coyote_sdk.protocol import (
    Bar,
    ExecType,
    ExecutionReport,
    NewOrder,
    OrderStatus,
    OrderType,
    Side,
    report_for,
)


class RiskGate:
    """Checks a backtest's new orders with ``coyote_risk`` and keeps its state in step.

    Args:
        config: A ``coyote_risk.RiskConfig`` for the backtest's account.
    """

    def __init__(self, config: Any) -> None:
        try:
            from coyote_risk import REASONS, RiskEngine
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError(
                "risk checks in backtests need coyote-risk: pip install 'coyote-sdk[risk]'"
            ) from exc
        self._reasons = REASONS
        self._engine = RiskEngine(config)
        self._day: int | None = None
        self._day_start_equity = 0.0

    def on_bar(self, bar: Bar, close_ms: int, equity: float, bot_id: str) -> None:
        """Feeds the bar's close as the last price and the day's PnL to the engine."""
        self._engine.update_price(bar.symbol, float(bar.close), close_ms)
        day = close_ms // 86_400_000
        if day != self._day:
            self._day, self._day_start_equity = day, equity
        pnl = equity - self._day_start_equity
        self._engine.update_pnl(pnl)
        self._engine.update_pnl(pnl, bot_id)

    def check(self, intent: NewOrder) -> ExecutionReport | None:
        """None if the order may go, else its rejection report (``reject_code`` risk.*)."""
        slot = self._engine.slot(intent.bot_id, intent.symbol)
        if slot is None:
            code = self._reasons.index("risk.instrument_unknown")
        else:
            market = intent.order_type in (OrderType.MARKET, OrderType.STOP)
            price = intent.limit_price if intent.limit_price is not None else intent.stop_price
            code = slot.check(
                1 if intent.side is Side.BUY else -1,
                float(intent.quantity),
                float(price) if price is not None else 0.0,
                market,
                intent.reduce_only,
                intent.ts_ms,
            )
        if code == 0:
            return None
        return report_for(
            intent,
            ExecType.REJECTED,
            OrderStatus.REJECTED,
            reject_code=self._reasons[code],
            reject_reason=f"refused by the risk engine: {self._reasons[code]}",
        )

    def on_report(self, report: ExecutionReport) -> None:
        """Books fills and frees what ended orders had reserved."""
        if report.symbol is None:
            return
        slot = self._engine.slot(report.bot_id, report.symbol)
        if slot is None:
            return
        side = 1 if report.side is Side.BUY else -1
        if report.exec_type is ExecType.TRADE and report.last_quantity is not None:
            slot.on_fill(side, float(report.last_quantity))
        elif report.exec_type in (ExecType.CANCELED, ExecType.EXPIRED):
            slot.release(side, float(report.quantity - report.filled_quantity))
