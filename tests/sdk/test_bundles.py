"""Bundles: reproducible, complete, checked without running them, refused when broken."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from decimal import Decimal
from pathlib import Path

import pytest

from coyote_sdk import Bar, Bot, BundleError, Timeframe, build_bundle, bundle
from coyote_sdk.backtest import run_backtest
from coyote_sdk.bundles import load_bundle, verify_bundle

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

BOT = """
from decimal import Decimal
from coyote_sdk import Bot, Param
from helpers import signal
from strategies.sizing import size_for

class Breakout(Bot):
    symbols = ["DEMO"]
    timeframe = "1m"
    lookback: int = Param(3, ge=1)

    def on_bar(self, bar):
        if signal(bar) and self.position("DEMO").is_flat:
            self.buy("DEMO", size_for(bar))
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "helpers.py").write_text("def signal(bar):\n    return bar.close > bar.open\n")
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "__init__.py").write_text("")
    (tmp_path / "strategies" / "sizing.py").write_text(
        "from decimal import Decimal\n\ndef size_for(bar):\n    return Decimal(2)\n"
    )
    (tmp_path / "unrelated.py").write_text("raise SystemExit('never imported')\n")
    (tmp_path / "requirements.txt").write_text("numpy==2.1.0  # for later\n\n")
    path = tmp_path / "breakout.py"
    path.write_text(BOT)
    return path


def _bars() -> list[Bar]:
    return [
        Bar(
            symbol="DEMO",
            venue="t",
            timeframe=Timeframe.M1,
            ts_ms=i * 60_000,
            open=Decimal(o),
            high=Decimal(max(o, c)),
            low=Decimal(min(o, c)),
            close=Decimal(c),
            volume=Decimal(1),
        )
        for i, (o, c) in enumerate([(10, 9), (9, 11), (11, 12), (12, 12)])
    ]


def test_a_bundle_holds_the_bot_and_its_local_imports_and_is_reproducible(tmp_path: Path) -> None:
    path = _project(tmp_path)

    first, second = build_bundle(path), build_bundle(path)

    assert first.data == second.data
    assert first.digest == second.digest and first.digest.startswith("sha256:")
    manifest = first.manifest
    assert [f.path for f in manifest.files] == [
        "src/breakout.py",
        "src/helpers.py",
        "src/strategies/__init__.py",
        "src/strategies/sizing.py",
    ]
    assert manifest.entry_point == "src/breakout.py:Breakout"
    assert (manifest.name, manifest.symbols, manifest.timeframe) == ("breakout", ["DEMO"], "1m")
    assert manifest.requirements == ["numpy==2.1.0"]
    assert manifest.params_schema["properties"]["lookback"]["minimum"] == 1


def test_a_loaded_bundle_trades_like_the_source(tmp_path: Path) -> None:
    built = build_bundle(_project(tmp_path))

    loaded = load_bundle(built.data, expected_digest=built.digest)
    result = run_backtest(loaded(), _bars())

    assert [(f.side.value, f.quantity, f.price) for f in result.fills] == [
        ("buy", Decimal(2), Decimal(11))
    ]


def test_a_syntax_error_in_an_imported_module_is_refused_before_upload(tmp_path: Path) -> None:
    path = _project(tmp_path)
    (tmp_path / "helpers.py").write_text("def signal(bar)\n    return True\n")

    with pytest.raises(BundleError, match=r"helpers.py:1: syntax error"):
        build_bundle(path)


def test_a_file_without_a_bot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nothing.py"
    path.write_text("x = 1\n")

    with pytest.raises(BundleError, match="expected one Bot subclass, found none"):
        build_bundle(path)


def test_a_bad_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="invalid manifest"):
        build_bundle(_project(tmp_path), name="Has Spaces")


def _repack(data: bytes, change: dict[str, bytes | None]) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    for name, content in change.items():
        if content is None:
            members.pop(name)
        else:
            members[name] = content
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"src/helpers.py": b"def signal(bar):\n    return True\n"}, "does not match its sha256"),
        ({"src/extra.py": b""}, r"extra \['src/extra.py'\]"),
        ({"src/helpers.py": None}, r"missing \['src/helpers.py'\]"),
        ({"manifest.json": b"{"}, "manifest.json is invalid"),
        ({"manifest.json": None}, "no manifest.json"),
        ({"../evil.py": b""}, "paths must stay inside the bundle"),
    ],
)
def test_tampered_bundles_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    built = build_bundle(_project(tmp_path))

    with pytest.raises(BundleError, match=message):
        verify_bundle(_repack(built.data, change))


def test_a_wrong_digest_or_not_an_archive_is_refused(tmp_path: Path) -> None:
    built = build_bundle(_project(tmp_path))

    with pytest.raises(BundleError, match="digest mismatch"):
        verify_bundle(built.data, expected_digest="sha256:" + "0" * 64)
    with pytest.raises(BundleError, match="not a gzip-compressed tar"):
        verify_bundle(b"PK\x03\x04 a zip file")


def test_a_bad_entry_point_in_the_manifest_is_refused(tmp_path: Path) -> None:
    built = build_bundle(_project(tmp_path))
    with tarfile.open(fileobj=io.BytesIO(built.data), mode="r:gz") as tar:
        raw = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    raw["entry_point"] = "src/missing.py:Breakout"

    with pytest.raises(BundleError, match="names no file of the bundle"):
        verify_bundle(_repack(built.data, {"manifest.json": json.dumps(raw).encode()}))


def test_verifying_a_bundle_runs_none_of_its_code(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "sneaky.py"
    path.write_text(
        "import pathlib\nfrom coyote_sdk import Bot\n"
        f"pathlib.Path({str(canary)!r}).write_text('ran')\n"
        "class Sneaky(Bot):\n    symbols = ['DEMO']\n"
    )
    built = build_bundle(path)  # building imports it, on the author's machine
    canary.unlink()

    verify_bundle(built.data, expected_digest=built.digest)

    assert not canary.exists()


def test_a_notebook_bot_is_bundled_by_value_with_cloudpickle() -> None:
    class Notebook(Bot):
        symbols = ["DEMO"]
        timeframe = "1m"
        size: int = 3

        def on_bar(self, bar: Bar) -> None:
            if bar.close > bar.open and self.position("DEMO").is_flat:
                self.buy("DEMO", self.size)

    built = bundle(Notebook, name="notebook")
    manifest = verify_bundle(built.data, expected_digest=built.digest)
    loaded = load_bundle(built.data)

    assert manifest.entry_point == "bot.pkl:Notebook"
    assert [f.quantity for f in run_backtest(loaded(), _bars()).fills] == [Decimal(3)]


def test_the_examples_bundle() -> None:
    for example in ("sma_cross", "mean_reversion", "market_maker"):
        built = build_bundle(ROOT / "examples" / f"{example}.py")
        assert verify_bundle(built.data).name == example
