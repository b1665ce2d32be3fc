"""Coyote's bot SDK.

The wire protocol lives in :mod:`coyote_sdk.protocol`; configuration in :mod:`coyote_sdk.config`;
the local stack of real services in :mod:`coyote_sdk.dev`.
"""

from importlib.metadata import version as _version

from coyote_sdk.config import CoyoteSettings, Endpoints, StackSettings

__version__ = _version("coyote-sdk")

__all__ = [
    # Configuration
    "CoyoteSettings",
    "Endpoints",
    "StackSettings",
]
