"""`coyote-sdk protocol`: the wire protocol."""

from __future__ import annotations

import json

from coyote_sdk import protocol
from coyote_sdk.cli._common import (
    protocol_app,
)


@protocol_app.command("schema")
def protocol_schema() -> None:
    """Print the JSON Schema of the wire protocol (what docs/schemas/ holds).

    Example: `coyote-sdk protocol schema > protocol-v1.json`
    """
    print(json.dumps(protocol.json_schema(), indent=2, sort_keys=True))
