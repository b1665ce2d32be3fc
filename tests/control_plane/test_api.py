"""The service itself: health, readiness, metrics, OpenAPI, the error shape."""

from __future__ import annotations

import pytest

from tests.control_plane.conftest import ControlPlaneUnderTest, error_code

pytestmark = pytest.mark.integration


def test_healthz_answers_without_credentials(cp: ControlPlaneUnderTest) -> None:
    assert cp.anonymous().get("/healthz").json() == {"status": "ok", "checks": {}}


def test_readyz_checks_database_redis_and_kafka(cp: ControlPlaneUnderTest) -> None:
    answer = cp.anonymous().get("/readyz")
    assert answer.status_code == 200, answer.text
    assert set(answer.json()["checks"]) == {"database", "redis", "kafka"}


def test_metrics_count_requests_by_route_template(cp: ControlPlaneUnderTest) -> None:
    cp.acme.viewer.get("/v1/bots/nothing-here")
    text = cp.anonymous().get("/metrics").text
    assert 'coyote_http_requests_total{method="GET",route="/v1/bots/{name}",status="404"}' in text
    assert "coyote_deployments" in text


def test_an_unknown_route_answers_the_error_shape(cp: ControlPlaneUnderTest) -> None:
    answer = cp.acme.viewer.get("/v1/nowhere")
    assert answer.status_code == 404
    assert error_code(answer) == "route.not_found"


def test_validation_errors_name_the_field(cp: ControlPlaneUnderTest) -> None:
    answer = cp.acme.admin.post("/v1/accounts", json={"name": "Bad Name!", "broker": "paper"})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "request.invalid"
    fields = {d["field"] for d in error["details"]}
    assert "body.name" in fields and "body.venue" in fields


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("venue", "sim\n"),
        ("currency", "usd"),
        ("currency", "U\u0405D"),
        ("credentials_path", "secret/acme paper"),
        ("capital", "1\u0661"),
    ],
)
def test_account_fields_out_of_their_pattern_are_refused(
    cp: ControlPlaneUnderTest, field: str, value: str
) -> None:
    account = {"name": "patterned", "broker": "paper", "venue": "sim", field: value}
    answer = cp.acme.admin.post("/v1/accounts", json=account)
    assert answer.status_code == 422
    assert {d["field"] for d in answer.json()["error"]["details"]} == {f"body.{field}"}


def test_openapi_documents_every_route_with_the_error_shape(cp: ControlPlaneUnderTest) -> None:
    schema = cp.anonymous().get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation["operationId"], (path, method)
            for status, answer in operation["responses"].items():
                if status.startswith("4"):
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorResponse"), (path, method, status)


def test_a_user_update_with_nulls_leaves_those_fields_alone(cp: ControlPlaneUnderTest) -> None:
    users = cp.acme.admin.get("/v1/users").json()
    viewer = next(u for u in users if u["role"] == "viewer")
    answer = cp.acme.admin.patch(
        f"/v1/users/{viewer['id']}", json={"role": None, "disabled": None, "name": "Vi"}
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["role"], answer.json()["disabled"], answer.json()["name"]) == (
        "viewer",
        False,
        "Vi",
    )
