"""One style, checked: ruff's linter (E, F, W, I, UP) and formatter (line length 119), configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing_to_lint():
    run = ruff("check", "--no-cache", ".")
    assert run.returncode == 0, run.stdout[-3000:]


def test_ruff_finds_nothing_to_format():
    run = ruff("format", "--check", "--no-cache", ".")
    assert run.returncode == 0, run.stdout[-3000:]
