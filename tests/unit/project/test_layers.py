"""Layers that point one way: flows wire the stages and tasks never import flows (import-linter's contract in
pyproject.toml); importing the package changes no environment variable, only the entrypoints apply the defaults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import NETGUARD, ROOT

from domain_embed.tasks.core.env import OFFLINE_DEFAULTS

ENTRYPOINT_MODULES = ["domain_embed.flows.deployed"]  # loading it is what applies the defaults in a worker's flow run


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the packages under root, with the contracts of root/pyproject.toml."""
    code = "import sys\nfrom importlinter.cli import lint_imports_command\nsys.exit(lint_imports_command())"
    env = {**os.environ, "PYTHONPATH": str(root)}
    args = [sys.executable, "-c", code, "--config", str(root / "pyproject.toml"), "--no-cache"]
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_layers_contract_is_declared():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["root_packages"] == ["domain_embed"]
    layers = [c for c in config["contracts"] if c["type"] == "layers"]
    assert [(c["containers"], c["layers"]) for c in layers][0] == (["domain_embed"], ["flows", "tasks"])
    assert [c["containers"] for c in layers] == [["domain_embed"], ["domain_embed.tasks"]]


def test_tasks_never_import_flows():
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 kept, 0 broken" in run.stdout


def test_a_back_edge_breaks_the_contract(tmp_path):
    package = tmp_path / "domain_embed"  # the checkout's root is the package (pyproject.toml's package-dir)
    for name in ("flows", "tasks"):
        shutil.copytree(ROOT / name, package / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "__init__.py", package)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (package / "tasks" / "back_edge.py").write_text("from domain_embed.flows.cli import main\n")
    run = lint_imports(tmp_path)
    assert run.returncode != 0 and "1 kept, 1 broken" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    assert "domain_embed.tasks.back_edge -> domain_embed.flows.cli" in run.stdout


def clean_env(home: Path) -> dict[str, str]:
    """This environment without the offline defaults, Prefect's settings or this project's own variables."""
    drop = (*OFFLINE_DEFAULTS, "PREFECT_", "DOMAIN_EMBED_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(home))
    return env


# Every write to os.environ is recorded with the file that made it; then every module of the package is imported.
IMPORT_ALL = """
import importlib, json, os, pkgutil, sys

set_by = {}
setitem, delitem = os._Environ.__setitem__, os._Environ.__delitem__

def caller():
    frame = sys._getframe(2)
    while frame.f_code.co_filename.endswith(("os.py", "<frozen os>", "_collections_abc.py")):
        frame = frame.f_back
    return frame.f_code.co_filename

def audited_set(self, key, value):
    set_by.setdefault(key, caller())
    setitem(self, key, value)

def audited_del(self, key):
    set_by.setdefault(key, caller())
    delitem(self, key)

os._Environ.__setitem__, os._Environ.__delitem__ = audited_set, audited_del
before = dict(os.environ)
import domain_embed.deployments, domain_embed.flows, domain_embed.tasks
packages = (domain_embed.flows, domain_embed.tasks, domain_embed.deployments)
names = [m.name for p in packages for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")]
for name in names:
    if name not in sys.argv[1:]:
        importlib.import_module(name)
changed = {k: set_by.get(k, "?") for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)}
print(json.dumps({"imported": names, "changed": changed, "set_by": set_by}))
"""


def test_importing_every_module_changes_no_environment_variable_and_calls_no_one(tmp_path):
    env = clean_env(tmp_path)
    env.update(PYTHONPATH=os.pathsep.join([str(NETGUARD), str(ROOT)]), NETGUARD_LOG=str(tmp_path / "net.log"))
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *ENTRYPOINT_MODULES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert not (tmp_path / "net.log").exists(), (tmp_path / "net.log").read_text()  # e.g. litellm's price list
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert {
        "domain_embed.tasks.settings",
        "domain_embed.tasks.llm.client",
        "domain_embed.tasks.ingest.parse",
        "domain_embed.flows.pipeline",
        "domain_embed.flows.cli",
        "domain_embed.flows.api",
    } <= set(result["imported"])
    ours = {key: path for key, path in result["changed"].items() if ours_file(path)}
    assert not ours, f"set on import by this project: {ours}"
    assert not set(result["changed"]) & set(OFFLINE_DEFAULTS), result["changed"]  # a library's own setting is allowed
    # the one write of this project at import time: litellm's price-list switch, held only while litellm is imported
    assert {
        k: Path(p).resolve().relative_to(ROOT).as_posix() for k, p in result["set_by"].items() if ours_file(p)
    } == {"LITELLM_LOCAL_MODEL_COST_MAP": "tasks/core/env.py"}


def ours_file(path: str) -> bool:
    """A file of this project (not of a library installed in a virtualenv inside the checkout)."""
    return path.startswith(str(ROOT)) and "site-packages" not in Path(path).parts


LOAD_DEPLOYED = """
import json, os, sys
from prefect.flows import load_flow_from_entrypoint

flow = load_flow_from_entrypoint("domain_embed.flows.deployed:" + sys.argv[1])  # prefect.yaml's entrypoints
import domain_embed.flows.watch
print(json.dumps({"name": flow.name, "is_watch_docs": flow is domain_embed.flows.watch.watch_docs, "torch": "torch" in sys.modules,
                  "env": dict(os.environ)}))
"""


def test_the_deployments_entrypoint_module_applies_the_offline_defaults_and_loads_only_its_flow(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", LOAD_DEPLOYED, "watch_docs"],
        cwd=ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert (result["name"], result["is_watch_docs"]) == ("watch-docs", True)
    assert {k: result["env"].get(k) for k in OFFLINE_DEFAULTS} == OFFLINE_DEFAULTS
    assert not result["torch"]  # the 5-minute watcher does not load the training stack


def test_every_subpackage_ships_in_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        "domain_embed." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("flows", "tasks", "deployments")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk <= listed, sorted(on_disk - listed)
