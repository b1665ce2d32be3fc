"""Helpers of the CoyoteFlow tests: the repository's paths and golden files.

Golden files live in ``tests/sdk/flow/golden/``. When the compiler's output changes on
purpose, write them anew and review the diff::

    COYOTE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/sdk/flow
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
FLOWS = HERE / "flows"
DEMO = REPO / "examples" / "flows" / "demo.yaml"
UPDATE = os.environ.get("COYOTE_UPDATE_GOLDEN") == "1"


def assert_golden(path: Path, text: str, *, regenerate: str) -> None:
    """``text`` must equal the file at ``path``; with COYOTE_UPDATE_GOLDEN=1 it is written."""
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} is missing: {regenerate}")
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                str(path),
                "compiled",
                n=2,
            )
        )
        pytest.fail(f"{path} differs from the compiler's output ({regenerate}):\n{diff[:6000]}")
