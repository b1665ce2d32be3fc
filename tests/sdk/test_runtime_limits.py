"""A runtime's self-imposed limits bind the code that runs after them (in a child process, as
the limits cannot be lifted once set)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from coyote_sdk.runtime import ProcessLimits

pytestmark = pytest.mark.unit


def _child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_memory_beyond_the_limit_fails_with_memory_error() -> None:
    outcome = _child(
        """
        from coyote_sdk.runtime import ProcessLimits
        ProcessLimits(memory_mb=400).apply()
        small = bytearray(50 * 1024 * 1024)
        try:
            big = bytearray(600 * 1024 * 1024)
        except MemoryError:
            print("refused")
        """
    )
    assert outcome.stdout.strip() == "refused", outcome.stderr


def test_files_beyond_the_limit_fail_to_open() -> None:
    outcome = _child(
        """
        import errno, os
        from coyote_sdk.runtime import ProcessLimits
        ProcessLimits(open_files=40).apply()
        opened = []
        try:
            for _ in range(100):
                opened.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            print(errno.errorcode[exc.errno], len(opened) < 40)
        """
    )
    assert outcome.stdout.strip() == "EMFILE True", outcome.stderr


def test_a_limit_cannot_be_raised_again_by_the_bot() -> None:
    outcome = _child(
        """
        import resource
        from coyote_sdk.runtime import ProcessLimits
        ProcessLimits(open_files=64).apply()
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
        except (ValueError, OSError):
            print("kept")
        """
    )
    assert outcome.stdout.strip() == "kept", outcome.stderr


def test_the_command_line_asks_for_each_limit_set() -> None:
    limits = ProcessLimits(memory_mb=512, cpu_seconds=3600)

    assert limits.command_args() == ["--limit-memory-mb", "512", "--limit-cpu-seconds", "3600"]
