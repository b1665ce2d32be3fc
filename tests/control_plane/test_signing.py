"""Signed bundles end to end: an organisation with a signing key accepts only signed pushes,
and its runtimes load only bundles signed by an unrevoked key (checked again in the runtime,
a real process here)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from coyote_control_plane.main import runtime_env
from coyote_control_plane.supervisor import LocalBackend
from coyote_sdk.config import Endpoints
from coyote_sdk.signing import new_private_key, public_key_of, sign_digest
from tests.control_plane.conftest import (
    ControlPlaneUnderTest,
    add_account,
    buyer_bundle,
    control_plane,
    deploy,
    push,
)
from tests.control_plane.test_supervisor import FAST

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def cp(
    postgres: sqlalchemy.Engine, unique: str, tmp_path: Path, endpoints: Endpoints
) -> Iterator[ControlPlaneUnderTest]:
    backend = LocalBackend(tmp_path / "runtimes", env=runtime_env(endpoints))
    try:
        for made in control_plane(postgres, unique, backend=backend, supervisor=FAST):
            add_account(made.acme.admin, venue=f"v{unique}")
            yield made
    finally:
        backend.shutdown()


def _signed_push(cp: ControlPlaneUnderTest, bundle: Any, signature: str) -> Any:
    return cp.acme.trader.post(
        f"/v1/bots/{bundle.manifest.name}/versions",
        content=bundle.data,
        headers={
            "Content-Type": "application/gzip",
            "X-Bundle-Digest": bundle.digest,
            "X-Bundle-Signature": signature,
        },
    )


def _status(cp: ControlPlaneUnderTest, name: str) -> dict[str, Any]:
    return dict(cp.acme.viewer.get(f"/v1/deployments/{name}").json())


def _until(check: Any, what: str, within: float = 60) -> Any:
    deadline = time.monotonic() + within
    while not (outcome := check()):
        assert time.monotonic() < deadline, f"{what} not met within {within} s"
        time.sleep(0.2)
    return outcome


def test_pushes_need_a_signature_by_a_registered_key_once_there_is_one(
    cp: ControlPlaneUnderTest, tmp_path: Path
) -> None:
    before = buyer_bundle(tmp_path, variant="before-keys")
    assert push(cp.acme.trader, before).status_code == 201  # no key yet: no signature needed
    private = new_private_key()
    registered = cp.acme.admin.post(
        "/v1/signing-keys", json={"public_key": public_key_of(private), "name": "ci"}
    )
    assert registered.status_code == 201, registered.text
    key = registered.json()["key_id"]
    bundle = buyer_bundle(tmp_path, variant="after-keys")

    unsigned = push(cp.acme.trader, bundle)
    stranger = _signed_push(cp, bundle, sign_digest(new_private_key(), bundle.digest))
    signed = _signed_push(cp, bundle, sign_digest(private, bundle.digest))
    resigned = _signed_push(cp, before, sign_digest(private, before.digest))

    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (422, "bundle.unsigned")
    assert unsigned.json()["error"]["field"] == "X-Bundle-Signature"
    assert (stranger.status_code, stranger.json()["error"]["code"]) == (
        422,
        "bundle.bad_signature",
    )
    assert (signed.status_code, signed.json()["signed_by"]) == (201, key)
    # The version pushed before the key gets the signature; it stays the same version.
    assert (resigned.status_code, resigned.json()["number"], resigned.json()["signed_by"]) == (
        200,
        1,
        key,
    )
    assert cp.acme.admin.delete(f"/v1/signing-keys/{key}").status_code == 200
    # Revoking every key leaves no key trusted; it does not turn signing off.
    late = buyer_bundle(tmp_path, variant="revoked")
    again = _signed_push(cp, late, sign_digest(private, late.digest))
    assert again.json()["error"]["code"] == "bundle.bad_signature"
    assert push(cp.acme.trader, late).json()["error"]["code"] == "bundle.unsigned"
    audit = [e["action"] for e in cp.acme.admin.get("/v1/audit").json()]
    assert "signing_key.add" in audit and "signing_key.revoke" in audit


def test_the_runtime_loads_only_a_version_signed_by_a_trusted_key(
    cp: ControlPlaneUnderTest, tmp_path: Path
) -> None:
    unsigned = buyer_bundle(tmp_path)
    assert push(cp.acme.trader, unsigned).status_code == 201
    private = new_private_key()
    cp.acme.admin.post(
        "/v1/signing-keys", json={"public_key": public_key_of(private), "name": "ci"}
    )

    # Version 1 predates the key and carries no signature: its runtime refuses to load it.
    deploy(cp.acme.trader, name="old", start=True)
    _until(lambda: _status(cp, "old")["status"] in ("crashed", "failed"), "old crashed")
    log = Path(cp.app.state.context.supervisor.backend.log_path(_status(cp, "old")["runtime_id"]))
    assert "the bundle is not signed" in log.read_text()

    signed = buyer_bundle(tmp_path, variant="signed")
    assert _signed_push(cp, signed, sign_digest(private, signed.digest)).status_code == 201
    deploy(cp.acme.trader, name="new", start=True)
    _until(lambda: _status(cp, "new")["status"] == "running", "new running")
