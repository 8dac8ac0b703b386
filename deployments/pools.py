"""Create or update the `cpu` and `gpu` process work pools from the base job templates next to this file.

Run against the server named by PREFECT_API_URL: `python deployments/pools.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate

HERE = Path(__file__).resolve().parent
POOLS = {
    "cpu": "Parsing, generation, mining, evaluation and the docs watcher (local processes)",
    "gpu": "Fine-tuning (local processes; CUDA_VISIBLE_DEVICES picks the GPUs)",
}


def pool_spec(name: str) -> WorkPoolCreate:
    """The process work pool `name` with its base job template from <name>.json."""
    template = json.loads((HERE / f"{name}.json").read_text())
    return WorkPoolCreate(name=name, type="process", base_job_template=template, description=POOLS[name])


def ensure_pools() -> list[str]:
    """Create the pools, or overwrite their templates when they exist; returns their names."""
    with get_client(sync_client=True) as client:
        for name in POOLS:
            client.create_work_pool(pool_spec(name), overwrite=True)
    return list(POOLS)


if __name__ == "__main__":
    print("work pools ready:", ", ".join(ensure_pools()))
