"""The control plane never runs a bundle's code: a push, its listing and a deployment of a
bundle whose loading writes a canary file leave no canary. Only the runtime loads bundles (and
the positive controls below show the canaries do fire when a bundle is loaded)."""

from __future__ import annotations

import hashlib
import pathlib
import pickle
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import sqlalchemy

from coyote_sdk import Bot, bundles
from coyote_sdk.bundles import Bundle, build_bundle, load_bundle
from tests.control_plane.conftest import (
    ControlPlaneUnderTest,
    add_account,
    control_plane,
    deploy,
    push,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def cp(postgres: sqlalchemy.Engine, unique: str) -> Iterator[ControlPlaneUnderTest]:
    for made in control_plane(postgres, unique):
        add_account(made.acme.admin)
        yield made


def _source_bundle(tmp_path: Path, canary: Path) -> Bundle:
    source = tmp_path / "src" / "canary.py"
    source.parent.mkdir()
    source.write_text(
        f"""
from pathlib import Path

from coyote_sdk import Bot

Path({str(canary)!r}).write_text("the bundle's module code ran")


class Canary(Bot):
    symbols = ["GOOG"]
    timeframe = "1m"
"""
    )
    built = build_bundle(source, name="buyer")  # building imports it, on the author's side
    canary.unlink()
    return built


class Innocent(Bot):
    symbols = ["GOOG"]
    timeframe = "1m"


class _Trap:
    """Unpickling this writes the canary."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (pathlib.Path.write_text, (self.canary, "the bundle was unpickled"))


def _pickled_bundle(canary: Path) -> Bundle:
    # A notebook-style bundle whose bot.pkl is a trap, its manifest consistent with it.
    honest = bundles.bundle(Innocent, name="buyer")
    trap = pickle.dumps(_Trap(canary))
    members = {"bot.pkl": trap}
    files = [
        msgspec.structs.replace(f, sha256=hashlib.sha256(trap).hexdigest(), size=len(trap))
        for f in honest.manifest.files
    ]
    manifest = msgspec.structs.replace(honest.manifest, files=files)
    return bundles._pack(manifest, members)


@pytest.mark.parametrize("kind", ["source", "pickled"])
def test_pushing_and_deploying_a_bundle_runs_none_of_its_code(
    cp: ControlPlaneUnderTest, tmp_path: Path, kind: str
) -> None:
    canary = tmp_path / "canary"
    built = _source_bundle(tmp_path, canary) if kind == "source" else _pickled_bundle(canary)

    pushed = push(cp.acme.trader, built)
    assert pushed.status_code == 201, pushed.text
    assert cp.acme.trader.get("/v1/bots/buyer").status_code == 200
    assert cp.acme.trader.get("/v1/bots/buyer/versions").status_code == 200
    deploy(cp.acme.trader)
    assert cp.acme.trader.post("/v1/deployments/buy/start").status_code == 200

    assert not canary.exists()
    # The control: the runtime's loader does run it.
    if kind == "pickled":
        with pytest.raises(bundles.BundleError):
            load_bundle(built.data, expected_digest=built.digest)
    else:
        load_bundle(built.data, expected_digest=built.digest)
    assert canary.exists()
