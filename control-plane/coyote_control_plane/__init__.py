"""Coyote's control plane: bots, releases, accounts, risk limits, users and the supervisor."""

from coyote_control_plane.config import Settings

__all__ = ["Settings"]
