"""The live bot runtime: `coyote-sdk run` locally, and what the supervisor launches.

See ``docs/runtime.md`` for the control flag, heartbeats and failure behaviour.
"""

from coyote_sdk.runtime._limits import ProcessLimits
from coyote_sdk.runtime._runtime import (
    BotRuntime,
    RuntimeExit,
    RuntimeOptions,
    SavedPortfolio,
    run_until_signalled,
)

__all__ = [
    "BotRuntime",
    "ProcessLimits",
    "RuntimeExit",
    "RuntimeOptions",
    "SavedPortfolio",
    "run_until_signalled",
]
