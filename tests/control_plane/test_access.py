"""The role and tenant matrix: every route, every role, and a foreign organisation.

Each route names the permission it needs. A role without it gets 403; a role with it gets
past the check; the other organisation's admin, pointed at acme's resources, gets 404 and sees
none of them in listings; no credential gets 401. A new route fails
``test_the_matrix_covers_every_route`` until it is added here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from coyote_control_plane.models import Role
from coyote_control_plane.security import GRANTS, Permission
from coyote_sdk.signing import new_private_key, public_key_of
from tests.control_plane.conftest import (
    ROLES,
    ControlPlaneUnderTest,
    add_account,
    buyer_bundle,
    deploy,
    push,
)

pytestmark = pytest.mark.integration

P = Permission
NEW_SIGNING_KEY = public_key_of(new_private_key())
SPARE_SIGNING_KEY = public_key_of(new_private_key())
# (method, path, body, permission, names an acme resource)
ROUTES: list[tuple[str, str, Any, Permission | None, bool]] = [
    ("GET", "/v1/auth/me", None, P.READ, False),
    ("GET", "/v1/users", None, P.READ, False),
    ("POST", "/v1/users", {"email": "new-{role}@x.example", "role": "viewer"}, P.ADMIN, False),
    ("PATCH", "/v1/users/{viewer_id}", {"name": "V"}, P.ADMIN, True),
    ("GET", "/v1/api-keys", None, P.READ, False),
    ("POST", "/v1/api-keys", {"name": "k", "role": "viewer"}, P.READ, False),
    ("DELETE", "/v1/api-keys/{spare_key}", None, P.READ, True),
    ("GET", "/v1/accounts", None, P.READ, False),
    (
        "POST",
        "/v1/accounts",
        {"name": "a-{role}", "broker": "paper", "venue": "demo"},
        P.ADMIN,
        False,
    ),
    ("GET", "/v1/accounts/paper", None, P.READ, True),
    (
        "PUT",
        "/v1/accounts/paper/risk-limits",
        {"account": {"max_order_notional": "1000"}},
        P.RISK,
        True,
    ),
    ("PUT", "/v1/accounts/paper/capital", {"capital": "20000"}, P.RISK, True),
    ("PUT", "/v1/accounts/paper/fill-model", {"fee_bps": "1"}, P.ADMIN, True),
    ("PUT", "/v1/accounts/paper/broker-options", {}, P.ADMIN, True),
    ("DELETE", "/v1/accounts/spare", None, P.ADMIN, True),
    ("GET", "/v1/bots", None, P.READ, False),
    ("GET", "/v1/bots/buyer", None, P.READ, True),
    # Bot names are per organisation: globex pushing "buyer" makes a bot of its own.
    ("POST", "/v1/bots/buyer/versions", "bundle", P.TRADE, False),
    ("GET", "/v1/bots/buyer/versions", None, P.READ, True),
    ("GET", "/v1/bots/buyer/versions/1", None, P.READ, True),
    ("GET", "/v1/bots/buyer/versions/1/bundle", None, P.READ, True),
    ("POST", "/v1/bots/buyer/releases", {"params": {"quantity": 2}}, P.TRADE, True),
    ("GET", "/v1/bots/buyer/releases", None, P.READ, True),
    ("GET", "/v1/deployments", None, P.READ, False),
    (
        "POST",
        "/v1/deployments",
        {"name": "d-{role}", "bot": "buyer", "account": "paper"},
        P.TRADE,
        True,
    ),
    ("GET", "/v1/deployments/buy", None, P.READ, True),
    ("PATCH", "/v1/deployments/buy", {"cancel_orders_on_heartbeat_loss": False}, P.TRADE, True),
    ("POST", "/v1/deployments/buy/start", None, P.TRADE, True),
    ("POST", "/v1/deployments/buy/pause", None, P.TRADE, True),
    ("POST", "/v1/deployments/buy/resume", None, P.TRADE, True),
    ("POST", "/v1/deployments/buy/stop", None, P.TRADE, True),
    ("POST", "/v1/deployments/buy/promote", {"release": 1}, P.TRADE, True),
    ("POST", "/v1/deployments/buy/rollback", None, P.TRADE, True),
    ("GET", "/v1/deployments/buy/history", None, P.READ, True),
    ("PUT", "/v1/deployments/buy/capital", {"capital": "100"}, P.RISK, True),
    ("GET", "/v1/deployments/buy/logs", None, P.READ, True),
    ("DELETE", "/v1/deployments/spare", None, P.TRADE, True),
    ("POST", "/v1/deployments/fresh/canary", {"params": {"quantity": 3}}, P.TRADE, True),
    ("GET", "/v1/deployments/watched/canary", None, P.READ, True),
    ("POST", "/v1/deployments/watched/canary/promote", None, P.TRADE, True),
    ("DELETE", "/v1/deployments/watched/canary", None, P.TRADE, True),
    ("GET", "/v1/kill-switches", None, P.READ, False),
    (
        "POST",
        "/v1/kill-switches",
        {"scope": "deployment", "target": "buy", "reason": "r"},
        P.HALT,
        True,
    ),
    ("POST", "/v1/kill-switches/{switch_id}/reset", None, P.RISK, True),
    ("GET", "/v1/audit", None, P.AUDIT, False),
    ("GET", "/v1/events/recent", None, P.READ, False),
    ("GET", "/v1/webhooks", None, P.READ, False),
    ("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/hook"}, P.ADMIN, False),
    ("DELETE", "/v1/webhooks/{webhook_id}", None, P.ADMIN, True),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries", None, P.READ, True),
    ("GET", "/v1/reports/pnl", None, P.READ, False),
    ("GET", "/v1/reports/equity", None, P.READ, False),
    ("GET", "/v1/reports/positions", None, P.READ, False),
    ("GET", "/v1/reports/orders", None, P.READ, False),
    ("GET", "/v1/reports/fills", None, P.READ, False),
    ("GET", "/v1/reports/orders/export", None, P.READ, False),
    ("GET", "/v1/reports/fills/export", None, P.READ, False),
    ("GET", "/v1/reports/metrics", None, P.READ, False),
    ("GET", "/v1/reports/rejections", None, P.READ, False),
    ("GET", "/v1/reports/statement?period=day&date=2026-11-02", None, P.READ, False),
    ("GET", "/v1/signing-keys", None, P.READ, False),
    ("POST", "/v1/signing-keys", {"public_key": NEW_SIGNING_KEY, "name": "k"}, P.ADMIN, False),
    ("DELETE", "/v1/signing-keys/{signing_key}", None, P.ADMIN, True),
]
# Routes outside the matrix: public ones, and the event stream (it never ends; its role
# check is the same dependency, tested in test_events).
UNCHECKED = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/events"),
}


@pytest.fixture
def world(cp: ControlPlaneUnderTest, tmp_path: Path) -> dict[str, Any]:
    """acme's resources every route can point at."""
    admin = cp.acme.admin
    add_account(admin, capital="100000")
    add_account(admin, name="spare")
    push(cp.acme.trader, buyer_bundle(tmp_path))
    deploy(cp.acme.trader)
    deploy(cp.acme.trader, name="spare")
    # Running deployments: one with a canary (release 2, on the shadow account), one without.
    deploy(cp.acme.trader, name="watched", start=True)
    deploy(cp.acme.trader, name="fresh", start=True)
    canary = cp.acme.trader.post("/v1/deployments/watched/canary", json={"params": {"quantity": 2}})
    assert canary.status_code == 201, canary.text
    users = admin.get("/v1/users").json()
    hook = admin.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}).json()
    switch = admin.post(
        "/v1/kill-switches", json={"scope": "account", "target": "spare", "reason": "r"}
    ).json()
    spare_key = admin.post("/v1/api-keys", json={"name": "spare"}).json()["prefix"]
    signing_key = admin.post(
        "/v1/signing-keys", json={"public_key": SPARE_SIGNING_KEY, "name": "spare"}
    ).json()["key_id"]
    return {
        "signing_key": signing_key,
        "viewer_id": next(u["id"] for u in users if u["role"] == "viewer"),
        "webhook_id": hook["id"],
        "switch_id": switch["id"],
        "spare_key": spare_key,
        "bundle": buyer_bundle(tmp_path, variant="matrix"),
    }


def _call(client: Any, method: str, path: str, body: Any, world: dict[str, Any], role: str) -> Any:
    url = path.format(**world)
    if body == "bundle":
        return client.request(method, url, content=world["bundle"].data)
    if isinstance(body, dict):
        body = {k: v.format(role=role) if isinstance(v, str) else v for k, v in body.items()}
    return client.request(method, url, json=body)


def test_the_matrix_covers_every_route(cp: ControlPlaneUnderTest) -> None:
    schema = cp.anonymous().get("/openapi.json").json()
    served = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    patterns = {
        (method, template): re.compile(re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
        for method, template in served
    }
    covered = set(UNCHECKED)
    for method, path, *_ in ROUTES:
        concrete = re.sub(r"\{[^}]+\}", "1", path.split("?")[0])
        matches = [k for k, rx in patterns.items() if k[0] == method and rx.match(concrete)]
        assert len(matches) == 1, (method, path, matches)
        covered.add(matches[0])
    assert served == covered


@pytest.mark.parametrize(
    ("method", "path", "body", "permission", "named"),
    ROUTES,
    ids=[f"{m} {p}" for m, p, *_ in ROUTES],
)
def test_route_checks_role_and_organisation(
    cp: ControlPlaneUnderTest,
    world: dict[str, Any],
    method: str,
    path: str,
    body: Any,
    permission: Permission,
    named: bool,
) -> None:
    anonymous = _call(cp.anonymous(), method, path, body, world, "anon")
    assert anonymous.status_code == 401, anonymous.text

    foreign = _call(cp.globex.admin, method, path, body, world, "globex")
    if named:
        assert foreign.status_code == 404, (foreign.status_code, foreign.text)
    elif method == "GET":
        assert cp.acme.slug not in foreign.text and "buyer" not in foreign.text

    for role in sorted(ROLES, key=lambda r: Role(r) is Role.ADMIN):  # the admin last
        answer = _call(cp.acme.clients[role], method, path, body, world, role)
        if permission in GRANTS[Role(role)]:
            assert answer.status_code not in (401, 403), (role, answer.status_code, answer.text)
            assert answer.status_code != 500, (role, answer.text)
        else:
            assert answer.status_code == 403, (role, answer.status_code, answer.text)
            assert answer.json()["error"]["code"] == "auth.forbidden"
