"""Push, versions and releases."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.control_plane.conftest import (
    ControlPlaneUnderTest,
    buyer_bundle,
    control_plane,
    error_code,
    push,
)

pytestmark = pytest.mark.integration


def _rows(cp: ControlPlaneUnderTest, table: str) -> int:
    with cp.engine.connect() as connection:
        return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_push_stores_a_version_and_the_same_digest_answers_the_same_version(
    cp: ControlPlaneUnderTest, tmp_path: Path
) -> None:
    bundle = buyer_bundle(tmp_path)
    first = push(cp.acme.trader, bundle)
    again = push(cp.acme.trader, bundle)
    changed = push(cp.acme.trader, buyer_bundle(tmp_path, variant="v2"))

    assert first.status_code == 201, first.text
    assert first.json()["number"] == 1 and first.json()["digest"] == bundle.digest
    assert first.json()["created"] is True
    assert again.status_code == 200 and again.json()["number"] == 1
    assert again.json()["created"] is False
    assert changed.status_code == 201 and changed.json()["number"] == 2
    assert _rows(cp, "bot_versions") == 2
    listed = cp.acme.viewer.get("/v1/bots/buyer/versions").json()
    assert [v["number"] for v in listed] == [1, 2]
    assert listed[0]["params_schema"]["properties"]["quantity"]["default"] == 1


def test_the_pushed_bundle_downloads_byte_for_byte(
    cp: ControlPlaneUnderTest, tmp_path: Path
) -> None:
    bundle = buyer_bundle(tmp_path)
    push(cp.acme.trader, bundle)
    answer = cp.acme.viewer.get("/v1/bots/buyer/versions/1/bundle")
    assert answer.content == bundle.data
    assert answer.headers["X-Bundle-Digest"] == bundle.digest


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda data: b"not a tarball at all", "bundle.invalid"),
        (lambda data: data[: len(data) // 2], "bundle.invalid"),
        (lambda data: _with_extra_file(data), "bundle.invalid"),
    ],
    ids=["garbage", "truncated", "file-not-in-manifest"],
)
def test_a_broken_bundle_is_refused_and_nothing_is_stored(
    cp: ControlPlaneUnderTest, tmp_path: Path, mangle: object, code: str
) -> None:
    bundle = buyer_bundle(tmp_path)
    data = mangle(bundle.data)  # type: ignore[operator]
    answer = cp.acme.trader.post(
        "/v1/bots/buyer/versions", content=data, headers={"Content-Type": "application/gzip"}
    )
    assert answer.status_code == 422, answer.text
    assert error_code(answer) == code
    assert _rows(cp, "bots") == 0 and _rows(cp, "bundle_blobs") == 0


def _with_extra_file(data: bytes) -> bytes:
    raw = io.BytesIO(gzip.decompress(data))
    out = io.BytesIO()
    with tarfile.open(fileobj=raw) as source, tarfile.open(fileobj=out, mode="w") as target:
        for member in source.getmembers():
            target.addfile(member, source.extractfile(member))
        info = tarfile.TarInfo("src/evil.py")
        payload = b"import os\n"
        info.size = len(payload)
        target.addfile(info, io.BytesIO(payload))
    return gzip.compress(out.getvalue())


def test_a_digest_that_does_not_match_is_refused(cp: ControlPlaneUnderTest, tmp_path: Path) -> None:
    bundle = buyer_bundle(tmp_path)
    answer = cp.acme.trader.post(
        "/v1/bots/buyer/versions",
        content=bundle.data,
        headers={"X-Bundle-Digest": "sha256:" + "0" * 64},
    )
    assert answer.status_code == 422 and "digest mismatch" in answer.json()["error"]["message"]


def test_a_bundle_pushed_under_another_name_is_refused(
    cp: ControlPlaneUnderTest, tmp_path: Path
) -> None:
    answer = push(cp.acme.trader, buyer_bundle(tmp_path), name="seller")
    assert answer.status_code == 422 and error_code(answer) == "bundle.name_mismatch"


def test_an_upload_over_the_limit_is_refused_with_413(
    postgres: sa.Engine, unique: str, tmp_path: Path
) -> None:
    for small in control_plane(postgres, unique, max_upload_bytes=2048):
        bundle = buyer_bundle(tmp_path)
        padded = bundle.data + b"\0" * 4096
        answer = small.acme.trader.post("/v1/bots/buyer/versions", content=padded)
        assert answer.status_code == 413 and error_code(answer) == "bundle.too_large"
        assert _rows(small, "bundle_blobs") == 0


def test_releases_are_content_addressed_and_parameters_validated(
    cp: ControlPlaneUnderTest, tmp_path: Path
) -> None:
    push(cp.acme.trader, buyer_bundle(tmp_path))
    first = cp.acme.trader.post("/v1/bots/buyer/releases", json={"params": {"quantity": 5}})
    same = cp.acme.trader.post(
        "/v1/bots/buyer/releases", json={"version": 1, "params": {"quantity": 5}}
    )
    other = cp.acme.trader.post("/v1/bots/buyer/releases", json={"params": {"quantity": 6}})
    bad_value = cp.acme.trader.post("/v1/bots/buyer/releases", json={"params": {"quantity": 0}})
    unknown = cp.acme.trader.post("/v1/bots/buyer/releases", json={"params": {"qty": 1}})
    bad_risk = cp.acme.trader.post(
        "/v1/bots/buyer/releases", json={"risk_profile": {"max_order_notional": "lots"}}
    )

    assert first.status_code == 201 and first.json()["number"] == 1
    assert same.status_code == 200 and same.json()["content_hash"] == first.json()["content_hash"]
    assert other.status_code == 201 and other.json()["number"] == 2
    assert bad_value.status_code == 422 and bad_value.json()["error"]["field"] == "params.quantity"
    assert unknown.status_code == 422 and "quantity" in unknown.json()["error"]["message"]
    assert bad_risk.status_code == 422 and error_code(bad_risk) == "risk_profile.invalid"
    releases = cp.acme.viewer.get("/v1/bots/buyer/releases").json()
    assert [(r["number"], r["created_by"]) for r in releases] == [
        (1, releases[0]["created_by"]),
        (2, releases[0]["created_by"]),
    ]
    assert releases[0]["created_by"].endswith("(trader@" + cp.acme.slug + ".example)")


def test_push_and_release_are_audited(cp: ControlPlaneUnderTest, tmp_path: Path) -> None:
    push(cp.acme.trader, buyer_bundle(tmp_path))
    cp.acme.trader.post("/v1/bots/buyer/releases", json={})
    entries = cp.acme.risk.get("/v1/audit", params={"target": "bot/buyer"}).json()
    assert [e["action"] for e in entries] == ["release.create", "bot.push"]
    assert all(e["actor"].startswith("key:") and e["source_ip"] for e in entries)
