"""A non-editable `pip install .` in a fresh virtualenv: `domain-embed --help`, `run`, `up` (a worker runs a deployment)
and `down`, from a working directory that holds its own tasks.py, flows/, deployments/ and prefect.yaml.

The new virtualenv takes its dependencies from this environment (a .pth file naming its site-packages folders), so
that only this project is installed, offline; the install is from a copy of the sources, so the build writes
nothing into the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, api_healthy, api_post, free_port, wait_for
from llm_stub import LLMStub

SOURCES = ["__init__.py", "pyproject.toml", "README.md", "prefect.yaml", "flows", "tasks", "deployments"]
TRAP = 'raise SystemExit("imported from the working directory: {}")\n'  # what a user's own files of these names do
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def dependency_paths() -> list[str]:
    """This interpreter's site-packages folders (a virtualenv may chain further ones with .pth files)."""
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    extra = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    return list(dict.fromkeys([*sorted(ours), *extra]))


def fresh_install(tmp_path: Path) -> Path:
    """A new virtualenv with this project pip-installed from a copy of its sources (not editable); returns its bin folder."""
    src, venv = tmp_path / "src", tmp_path / "venv"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "dependencies.pth").write_text("\n".join(dependency_paths()) + "\n")
    pip = [
        python,
        "-m",
        "pip",
        "--disable-pip-version-check",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--ignore-installed",
        str(src),
    ]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=600, env=clean_env(tmp_path / "pip-home"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return venv / "bin"


def clean_env(home: Path) -> dict[str, str]:
    """This environment without PYTHONPATH (nothing of the checkout), Prefect's or this project's settings."""
    env = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("PREFECT_", "DOMAIN_EMBED_"))
    }
    env.update(PREFECT_HOME=str(home), STUB_LLM_KEY="sk-stub", PREFECT_WORKER_QUERY_SECONDS="2")
    return env


def user_folder(path: Path) -> Path:
    """A working directory with files named like the project's: any of them imported or read fails the test."""
    for rel in (
        "tasks.py",
        "flows/__init__.py",
        "flows/deployed.py",
        "deployments/__init__.py",
        "deployments/pools.py",
    ):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(TRAP.format(rel))
    (path / "prefect.yaml").write_text("name: not-domain-embed\ndeployments: []\n")
    return path


@pytest.mark.slow
@pytest.mark.extended  # a pipeline run, then up (a fresh server and deploy) and one flow run: several minutes
@pytest.mark.timeout(2400)
def test_a_non_editable_install_runs_up_and_down_from_a_folder_with_its_own_tasks_and_flows(tmp_path):
    bin_dir = fresh_install(tmp_path)
    work = user_folder(tmp_path / "work")
    env = clean_env(tmp_path / "prefect-home")
    cli = [str(bin_dir / "domain-embed")]

    def call(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout)

    where = subprocess.run(
        [
            bin_dir / "python",
            "-c",
            "import domain_embed.flows.cli as m, importlib.resources as r; "
            "print(m.__file__); print(r.files('domain_embed') / 'prefect.yaml')",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(tmp_path / "venv") and Path(p).is_file() for p in where), (
        where
    )  # the installed copy

    helped = call("--help", timeout=120)
    assert helped.returncode == 0 and "usage: domain-embed" in helped.stdout, helped.stdout + helped.stderr

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("tutorial-agg.txt", "tutorial-inheritance.md"):
        shutil.copy(FIXTURES / "docs" / name, docs)
    small = tmp_path / "small.json"  # what is tested is the install, not the recipe: one short epoch
    small.write_text(json.dumps({"train": {"teacher": None, "max_seq_length": 64, "epochs": 1, "evaluations": 0}}))
    with LLMStub() as stub:
        run = call(
            "run",
            str(docs),
            "--out",
            str(tmp_path / "out"),
            "--store",
            str(tmp_path / "store"),
            "--llm",
            "openai/stub-model",
            "--api-base",
            stub.api_base,
            "--api-key-env",
            "STUB_LLM_KEY",
            "--batch-size",
            "8",
            "--config",
            str(small),
            timeout=1200,
        )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["evaluation"]["synthetic"]["results"]["tuned"]

    port, state = free_port(), tmp_path / "state"
    api = f"http://127.0.0.1:{port}/api"
    try:
        up = call(
            "up", "--port", str(port), "--state", str(state), "--docs", str(docs), "--store", str(tmp_path / "store")
        )
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        flows = {f["id"]: f["name"] for f in api_post(api, "/flows/filter")}
        deployments = {f"{flows[d['flow_id']]}/{d['name']}": d for d in api_post(api, "/deployments/filter")}
        assert {name: d["entrypoint"] for name, d in deployments.items()} == {
            "build-embedder/scheduled": "domain_embed.flows.deployed:build_embedder",
            "train-embedder/gpu": "domain_embed.flows.deployed:train_embedder",
            "watch-docs/poll": "domain_embed.flows.deployed:watch_docs",
        }
        poll = deployments["watch-docs/poll"]
        assert poll["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(work.resolve())}}
        ]

        # a worker runs a deployment: the flow loads from the installed package, in the folder `up` ran from
        flow_run = api_post(api, f"/deployments/{poll['id']}/create_flow_run", {})  # scheduled now

        def run_finished() -> dict | None:
            run = api_post(api, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [flow_run["id"]]}}})[0]
            return run if run["state_type"] in TERMINAL else None

        finished = wait_for(run_finished, 300, "the watch-docs run to finish")
        assert finished["state_type"] == "COMPLETED", (state / "logs" / "worker-cpu.log").read_text(errors="replace")[
            -3000:
        ]

        down = call("down", "--state", str(state), timeout=120)
        assert down.returncode == 0 and "server" in down.stdout, down.stdout + down.stderr
        assert not api_healthy(api)
    finally:
        call("down", "--state", str(state), timeout=120)
