"""Data-parallel training on the GPUs of one machine: one process per device, the trainer's own DDP, results from rank 0.

We launch the ranks ourselves rather than through torchrun: torchrun's rendezvous store listens on every network
interface, while these ranks meet through a file (FileStore) and talk over the loopback device only.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from ..core.objects import Ref
from ..settings import TrainSettings

JOB, RESULT, RENDEZVOUS = "job.json", "result.json", "rendezvous"
log = logging.getLogger("domain_embed.ddp")


class DistributedJob(BaseModel):
    """What every rank needs to train the same run: inputs by reference, so each re-reads them from the run store."""

    tuples: Ref
    pairs: Ref
    base_model_dir: str
    settings: TrainSettings
    store_url: str
    run_key: str
    validation: Ref | None = None
    corpus: Ref | None = None


def requested_processes(settings: TrainSettings) -> int:
    """Processes settings.processes asks for: 0 means one per visible GPU (1 without a GPU)."""
    if settings.processes:
        return settings.processes
    import torch

    return max(1, torch.cuda.device_count())


def rank_env(rank: int, world: int, folder: Path) -> dict[str, str]:
    """The environment torchrun would give a rank on one machine, with a file rendezvous and loopback sockets."""
    env = {
        **os.environ,
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "DOMAIN_EMBED_RENDEZVOUS": str(folder / RENDEZVOUS),
    }
    if sys.platform == "linux":
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
        env.setdefault("NCCL_SOCKET_IFNAME", "lo")
    return env


def run_ranks(folder: Path, world: int, echo: Callable[[str], None], poll_s: float = 0.5) -> None:
    """Run `world` worker processes on the job in `folder`, echoing rank 0's output lines as they come; if a rank
    fails, stop the others (they would wait forever in a collective) and raise with its output's tail."""
    command = [sys.executable, "-m", "domain_embed.tasks.training.ddp_worker", str(folder / JOB)]
    paths = [folder / f"rank{rank}.log" for rank in range(world)]
    procs = []
    for rank, path in enumerate(paths):
        with open(path, "a") as out:  # the child keeps its own descriptor, appending
            procs.append(
                subprocess.Popen(command, env=rank_env(rank, world, folder), stdout=out, stderr=subprocess.STDOUT)
            )
    try:
        with open(paths[0]) as rank0:
            while True:
                codes = [proc.poll() for proc in procs]
                for line in filter(str.strip, rank0.read().splitlines()):
                    echo(line)
                failed = next((rank for rank, code in enumerate(codes) if code not in (None, 0)), None)
                if failed is not None:
                    raise RuntimeError(
                        f"training rank {failed} exited with {codes[failed]}:\n{paths[failed].read_text()[-4000:]}"
                    )
                if all(code == 0 for code in codes):
                    return
                time.sleep(poll_s)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def train_distributed(job: DistributedJob, processes: int, echo: Callable[[str], None] = log.info):
    """Train the job on `processes` data-parallel ranks and return the TrainResult that rank 0 saved."""
    from .fit import TrainResult

    with tempfile.TemporaryDirectory(prefix="domain-embed-ddp-") as tmp:
        folder = Path(tmp)
        (folder / JOB).write_text(job.model_dump_json())
        run_ranks(folder, processes, echo)
        return TrainResult.model_validate_json((folder / RESULT).read_text())
