"""The reports' HTTP routes (``/v1/reports``), mounted by the control plane.

The routes know nothing of users or sessions: the host application gives them two
dependencies, one answering the caller's :class:`Tenant` (after checking it may read reports)
and one the :class:`~coyote_reports.service.Reports`. So the reports obey the control plane's
auth, roles and tenancy without importing it.
"""

# No ``from __future__ import annotations``: FastAPI reads the annotations of the routes, and
# their aliases are local to make_router.
import csv
import dataclasses
import io
import json
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from coyote_reports.models import (
    EquityCurve,
    FillPage,
    FillRow,
    Metrics,
    OrderPage,
    OrderRow,
    PnlSeries,
    Positions,
    Rejections,
    Statement,
)
from coyote_reports.service import MAX_PAGE, Reports, ReportsError, Scope, period_range
from coyote_sdk.protocol import Timeframe, now_ms

__all__ = ["Tenant", "make_router"]

_DAY_MS = 86_400_000
_MAX_MS = 2**63 - 1


@dataclasses.dataclass(frozen=True)
class Tenant:
    """The caller's organisation, and what the reports need to know of it.

    Attributes:
        org: The organisation's slug.
        bot_capital: Each deployment's capital allocation by name (called when needed).
        account_capital: Each account's capital by name (called when needed).
    """

    org: str
    bot_capital: Callable[[], Mapping[str, Decimal]] = dict
    account_capital: Callable[[], Mapping[str, Decimal]] = dict

    def capital(self, scope: Scope) -> Decimal:
        """The capital a scope starts from: its bot's, its account's, or the organisation's."""
        if scope.bot is not None:
            return self.bot_capital().get(scope.bot, Decimal(0))
        accounts = self.account_capital()
        if scope.account is not None:
            return accounts.get(scope.account, Decimal(0))
        return sum(accounts.values(), Decimal(0))


_Ms = Annotated[int, Query(ge=0, le=_MAX_MS)]
# Dots: a canary's bot is named ``<deployment>.canary-<n>``.
_Name = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]


def make_router(
    tenant: Callable[..., Tenant],
    reports: Callable[..., Reports],
    *,
    responses: Mapping[int | str, dict[str, Any]] | None = None,
) -> APIRouter:
    """The ``/v1/reports`` routes.

    Args:
        tenant: A dependency answering the caller's :class:`Tenant`; it raises the host's
            error when the caller is unknown or may not read reports.
        reports: A dependency answering the :class:`Reports` of the executor's database.
        responses: The host's documented error responses, for the OpenAPI schema.
    """
    router = APIRouter(prefix="/v1/reports", tags=["reports"], responses=dict(responses or {}))
    TenantDep = Annotated[Tenant, Depends(tenant)]
    ReportsDep = Annotated[Reports, Depends(reports)]

    def scope_of(
        caller: TenantDep,
        account: Annotated[_Name, Query(description="An account's name.")] = None,
        bot: Annotated[_Name, Query(description="A bot's (deployment's) name.")] = None,
    ) -> Scope:
        return Scope(caller.org, account=account, bot=bot)

    ScopeDep = Annotated[Scope, Depends(scope_of)]

    def window(
        start: Annotated[
            _Ms | None, Query(description="Start (ms since the epoch); a day before end.")
        ] = None,
        end: Annotated[_Ms | None, Query(description="End (ms since the epoch); now.")] = None,
    ) -> tuple[int, int]:
        end_ms = end if end is not None else now_ms()
        start_ms = start if start is not None else max(end_ms - _DAY_MS, 0)
        if end_ms <= start_ms:
            raise ReportsError("reports.bad_range", "end must be after start", field="end")
        return start_ms, end_ms

    WindowDep = Annotated[tuple[int, int], Depends(window)]
    BucketQuery = Annotated[
        Timeframe | None,
        Query(description="Bucket width; by default the finest giving at most ~1,500 points."),
    ]

    @router.get("/pnl")
    def pnl(
        scope: ScopeDep, reports: ReportsDep, range_: WindowDep, bucket: BucketQuery = None
    ) -> PnlSeries:
        """Realised, unrealised, fees and net PnL since ``start``, per bucket."""
        return reports.pnl(scope, start_ms=range_[0], end_ms=range_[1], bucket=bucket)

    @router.get("/equity")
    def equity(
        scope: ScopeDep,
        caller: TenantDep,
        reports: ReportsDep,
        range_: WindowDep,
        bucket: BucketQuery = None,
    ) -> EquityCurve:
        """Capital plus net PnL per bucket, with the drawdown from the running peak."""
        return reports.equity(
            scope,
            start_ms=range_[0],
            end_ms=range_[1],
            capital=caller.capital(scope),
            bucket=bucket,
        )

    @router.get("/positions")
    def positions(
        scope: ScopeDep,
        reports: ReportsDep,
        as_of: Annotated[
            _Ms | None, Query(description="Positions as they stood then; now by default.")
        ] = None,
    ) -> Positions:
        """Open positions with their average price, mark and unrealised PnL."""
        return reports.positions(scope, as_of_ms=as_of)

    @router.get("/orders")
    def orders(
        scope: ScopeDep,
        reports: ReportsDep,
        symbol: Annotated[str | None, Query(max_length=32)] = None,
        status: Annotated[str | None, Query(max_length=20)] = None,
        start: _Ms | None = None,
        end: _Ms | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
    ) -> OrderPage:
        """Orders, newest first; pass ``next_cursor`` back as ``cursor`` for older ones."""
        return reports.orders(
            scope,
            symbol=symbol,
            status=status,
            start_ms=start,
            end_ms=end,
            limit=limit,
            cursor=cursor,
        )

    @router.get("/fills")
    def fills(
        scope: ScopeDep,
        reports: ReportsDep,
        symbol: Annotated[str | None, Query(max_length=32)] = None,
        start: _Ms | None = None,
        end: _Ms | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
    ) -> FillPage:
        """Fills, newest first; pass ``next_cursor`` back as ``cursor`` for older ones."""
        return reports.fills(
            scope, symbol=symbol, start_ms=start, end_ms=end, limit=limit, cursor=cursor
        )

    export_responses: dict[int | str, dict[str, Any]] = {
        200: {
            "content": {"text/csv": {}, "application/json": {}},
            "description": "Every matching row, newest first, as CSV or a JSON array.",
        }
    }

    @router.get("/fills/export", response_class=StreamingResponse, responses=export_responses)
    def export_fills(
        scope: ScopeDep,
        reports: ReportsDep,
        format: Literal["csv", "json"] = "csv",
        symbol: Annotated[str | None, Query(max_length=32)] = None,
        start: _Ms | None = None,
        end: _Ms | None = None,
    ) -> StreamingResponse:
        """Every matching fill, for a spreadsheet or an accountant."""
        rows = reports.iter_fills(scope, symbol=symbol, start_ms=start, end_ms=end)
        return _export(rows, FillRow, format, f"fills-{scope.org}")

    @router.get("/orders/export", response_class=StreamingResponse, responses=export_responses)
    def export_orders(
        scope: ScopeDep,
        reports: ReportsDep,
        format: Literal["csv", "json"] = "csv",
        symbol: Annotated[str | None, Query(max_length=32)] = None,
        status: Annotated[str | None, Query(max_length=20)] = None,
        start: _Ms | None = None,
        end: _Ms | None = None,
    ) -> StreamingResponse:
        """Every matching order."""
        rows = reports.iter_orders(scope, symbol=symbol, status=status, start_ms=start, end_ms=end)
        return _export(rows, OrderRow, format, f"orders-{scope.org}")

    @router.get("/metrics")
    def metrics(
        scope: ScopeDep,
        caller: TenantDep,
        reports: ReportsDep,
        range_: WindowDep,
        bucket: Annotated[
            Timeframe | None,
            Query(description="The equity step of the ratios: 1d, or 1h under three days."),
        ] = None,
    ) -> Metrics:
        """Per bot: PnL, return, Sharpe, Sortino, max drawdown, win rate, profit factor,
        turnover, fees."""
        return reports.metrics(
            scope,
            start_ms=range_[0],
            end_ms=range_[1],
            capital=caller.bot_capital(),
            bucket=bucket,
        )

    @router.get("/rejections")
    def rejections(scope: ScopeDep, reports: ReportsDep, range_: WindowDep) -> Rejections:
        """Refused intents by reason code."""
        return reports.rejections(scope, start_ms=range_[0], end_ms=range_[1])

    @router.get("/statement")
    def statement(
        scope: ScopeDep,
        caller: TenantDep,
        reports: ReportsDep,
        period: Literal["day", "month"],
        date: Annotated[
            str, Query(max_length=10, description="`2026-11-24` for a day, `2026-11` a month.")
        ],
    ) -> Statement:
        """A day's or a month's report (UTC): PnL, per-bot metrics, rejections, counts."""
        period_range(period, date)  # a bad date is the caller's error, before any query
        return reports.statement(scope, period=period, label=date, capital=caller.bot_capital())

    return router


def _export(
    rows: Iterator[FillRow] | Iterator[OrderRow],
    model: type[FillRow] | type[OrderRow],
    format: str,
    name: str,
) -> StreamingResponse:
    fields = list(model.model_fields)

    def as_csv() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(fields)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row.model_dump().values()])
            if buffer.tell() > 64_000:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    def as_json() -> Iterator[str]:
        yield "["
        for i, row in enumerate(rows):
            yield ("," if i else "") + json.dumps(row.model_dump(mode="json"))
        yield "]"

    media = "text/csv" if format == "csv" else "application/json"
    return StreamingResponse(
        as_csv() if format == "csv" else as_json(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'},
    )
