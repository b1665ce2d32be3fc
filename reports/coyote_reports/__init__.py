"""Coyote's reports: PnL, equity, positions, orders, fills, per-bot metrics and rejections,
from the executor's tables; served by the control plane under ``/v1/reports``."""

from coyote_reports.api import Tenant, make_router
from coyote_reports.config import ReportsSettings
from coyote_reports.db import make_engine
from coyote_reports.service import Reports, ReportsError, Scope

__all__ = [
    # the service
    "Reports",
    "ReportsError",
    "Scope",
    # serving it
    "ReportsSettings",
    "Tenant",
    "make_engine",
    "make_router",
]
