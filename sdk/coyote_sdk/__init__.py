"""Coyote's bot SDK.

Everything a bot author needs is importable from here: :class:`Bot`, :class:`Param`, the
market data and report types. Backtests are in :mod:`coyote_sdk.backtest`; the wire protocol in
:mod:`coyote_sdk.protocol`; market data on RedisTimeSeries in :mod:`coyote_sdk.marketdata`;
configuration in :mod:`coyote_sdk.config`; the local stack of real services in
:mod:`coyote_sdk.dev`.
"""

from coyote_sdk._version import __version__
from coyote_sdk.bot import Bot, OrderHandle, Param, ParameterError, bot
from coyote_sdk.bundles import Bundle, BundleError, build_bundle, bundle
from coyote_sdk.config import CoyoteSettings, Endpoints, StackSettings
from coyote_sdk.portfolio import Fill, OpenOrder, Portfolio, Position
from coyote_sdk.protocol import (
    Bar,
    ExecType,
    ExecutionReport,
    OrderStatus,
    OrderType,
    Side,
    Timeframe,
    TimeInForce,
    Trade,
)

__all__ = [
    "__version__",
    # Writing bots
    "Bot",
    "OrderHandle",
    "Param",
    "ParameterError",
    "bot",
    # Packaging bots
    "Bundle",
    "BundleError",
    "build_bundle",
    "bundle",
    # What handlers receive and read
    "Bar",
    "ExecType",
    "ExecutionReport",
    "Fill",
    "OpenOrder",
    "OrderStatus",
    "OrderType",
    "Portfolio",
    "Position",
    "Side",
    "TimeInForce",
    "Timeframe",
    "Trade",
    # Configuration
    "CoyoteSettings",
    "Endpoints",
    "StackSettings",
]
