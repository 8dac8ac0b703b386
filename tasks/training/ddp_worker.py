"""One rank of a data-parallel training run (started by domain_embed.tasks.training.ddp): join the group, fit, and on rank 0 save the result."""

from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta
from pathlib import Path


def join_group() -> None:
    """Join the process group through the launcher's rendezvous file: NCCL on GPUs (one per rank), else gloo."""
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    store = dist.FileStore(os.environ["DOMAIN_EMBED_RENDEZVOUS"], world)
    dist.init_process_group(
        "nccl" if torch.cuda.is_available() else "gloo",
        store=store,
        rank=rank,
        world_size=world,
        timeout=timedelta(minutes=30),
    )


def main(job_path: str) -> None:
    """Train the job at job_path as this rank; rank 0 rotates, saves the model and writes result.json beside the job."""
    from ..core.store import RunStore
    from .ddp import RESULT, DistributedJob
    from .fit import finish, fit, validation_set
    from .ranks import is_main

    logging.basicConfig(level=logging.INFO if is_main() else logging.WARNING, format="%(message)s")
    job = DistributedJob.model_validate_json(Path(job_path).read_text())
    join_group()
    store = RunStore(job.store_url)
    validation = validation_set(job.validation, job.corpus, job.settings.validation_pool, job.settings.seed)
    fitted = fit(
        job.tuples,
        job.pairs,
        job.base_model_dir,
        job.settings,
        store,
        job.run_key,
        validation=validation,
        corpus=job.corpus,
    )
    if is_main():
        result = finish(fitted, job.settings, store, job.run_key, job.corpus)
        Path(job_path).with_name(RESULT).write_text(result.model_dump_json())
    import torch.distributed as dist

    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
