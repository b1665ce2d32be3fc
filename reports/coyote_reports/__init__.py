"""Coyote's reports: PnL, positions, fills and per-bot metrics."""

from coyote_reports.config import Settings

__all__ = ["Settings"]
