"""The lock (constraints.txt) is what the tests run on: every pinned package is installed at its pinned version."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from conftest import ROOT
from packaging.requirements import Requirement

LOCK = ROOT / "constraints.txt"


def pins() -> dict[str, str]:
    lines = [ln.strip() for ln in LOCK.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return {(req := Requirement(ln)).name: str(req.specifier).removeprefix("==") for ln in lines}


def test_every_locked_package_is_installed_at_its_locked_version():
    wrong = {}
    for name, pinned in pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, f"installed versions differ from constraints.txt (pinned, installed): {wrong}"


def test_the_lock_keeps_sqlalchemy_below_2_1_which_breaks_prefects_scheduler():
    major, minor = map(int, pins()["SQLAlchemy"].split(".")[:2])
    assert (major, minor) == (2, 0)
    assert "torch" not in pins()  # install.sh pins the CPU build; GPU images keep their CUDA build
