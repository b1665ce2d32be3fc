"""The CoyoteFlow JSON Schema: valid Draft 2020-12, published in docs/schemas unchanged, and in
step with the wire protocol."""

from __future__ import annotations

import json

import jsonschema
import pytest

from coyote_sdk import protocol
from coyote_sdk.flow import schema
from coyote_sdk.flow._load import schema_text
from tests.sdk.flow.conftest import REPO

pytestmark = pytest.mark.unit

PUBLISHED = REPO / "docs" / "schemas" / "coyoteflow.schema.json"


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())

    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_published_schema_is_the_one_in_the_package() -> None:
    assert PUBLISHED.read_text(encoding="utf-8") == schema_text(), (
        "docs/schemas/coyoteflow.schema.json is stale: publish it with "
        "`coyote-sdk flow schema > docs/schemas/coyoteflow.schema.json`"
    )


def test_the_topics_an_agent_may_name_are_the_protocols() -> None:
    assert schema()["$defs"]["topic"]["enum"] == [t.name for t in protocol.TOPICS]


def test_the_schema_file_is_json_indented_as_published() -> None:
    assert schema_text() == json.dumps(schema(), indent=2) + "\n"
