"""The API fuzzed from its own OpenAPI schema (schemathesis): valid and invalid requests to
every operation, as an admin of an organisation with data; none may answer 5xx."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck

from coyote_control_plane.main import create_app
from coyote_sdk.config import Endpoints
from tests.conftest import schema_engine
from tests.control_plane.conftest import (
    ControlPlaneUnderTest,
    add_account,
    buyer_bundle,
    control_plane,
    deploy,
    push,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@schemathesis.serializer("application/gzip")
def _raw_bytes(_ctx: object, value: object) -> bytes:
    """Bundles are opaque bytes: whatever was generated goes as is."""
    return value if isinstance(value, bytes) else str(value).encode()


SCHEMA = schemathesis.openapi.from_dict(create_app().openapi())
# Streams never end on their own: fuzzing them would only wait.
ENDLESS = {("GET", "/v1/events")}
OPERATIONS = [
    op.ok()
    for op in SCHEMA.get_all_operations()
    if (op.ok().method.upper(), op.ok().path) not in ENDLESS
]


@pytest.fixture(scope="module")
def populated(
    endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlaneUnderTest]:
    """One control plane for the whole module (its own schema): fuzzing needs many requests,
    not many set-ups."""
    unique = uuid.uuid4().hex[:12]
    with schema_engine(endpoints, unique) as engine:
        for cp in control_plane(engine, unique):
            add_account(cp.acme.admin)
            push(cp.acme.trader, buyer_bundle(tmp_path_factory.mktemp("bot")))
            deploy(cp.acme.trader)
            yield cp


@pytest.mark.parametrize(
    "operation", OPERATIONS, ids=[f"{o.method.upper()} {o.path}" for o in OPERATIONS]
)
@pytest.mark.parametrize(
    "mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)
def test_no_request_makes_the_api_fail(
    populated: ControlPlaneUnderTest, operation: object, mode: schemathesis.GenerationMode
) -> None:
    admin_key = populated.acme.admin.headers["Authorization"]

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))  # type: ignore[attr-defined]
    @hypothesis.settings(
        max_examples=10,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        if case.path == "/v1/deployments/{name}/logs" and case.query:
            case.query.pop("follow", None)  # following never ends
        headers = dict(case.headers or {})
        headers.setdefault("Authorization", admin_key)
        response = case.call(base_url=populated.url, headers=headers, timeout=30)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
        )

    try:
        fuzz()
    except hypothesis.errors.Unsatisfiable:
        pytest.skip("the schema leaves nothing to make invalid")
