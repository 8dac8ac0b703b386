"""Where this process stands in data-parallel training: how many ranks, and whether it is the one that saves."""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in this run's process group (1 outside distributed training)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and outside distributed training): the rank that saves and reports."""
    return int(os.environ.get("RANK", "0")) == 0
