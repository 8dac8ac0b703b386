"""The memory allocator of a run's process: tcmalloc where the machine has it, preloaded by re-executing the command.

glibc's malloc keeps what PyTorch frees on the CPU in fragments of its arenas, so a training process grows step after
step; tcmalloc reuses it (README, "Memory"). DOMAIN_EMBED_ALLOCATOR: `auto` (tcmalloc when found, the default),
`system` (the C library's), or the path of a malloc library to preload.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

ALLOCATOR_ENV = "DOMAIN_EMBED_ALLOCATOR"
KNOWN = (
    "tcmalloc",
    "jemalloc",
    "mimalloc",
)  # names of preloadable allocators, as they appear in a library's file name


def wanted_library(setting: str) -> str | None:
    """The library DOMAIN_EMBED_ALLOCATOR asks for: None for `system` or when `auto` finds no tcmalloc (Linux only)."""
    if setting == "system" or sys.platform != "linux":
        return None
    if setting == "auto":
        return ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")
    if not os.path.isfile(setting):
        raise ValueError(f"{ALLOCATOR_ENV}={setting!r}: not a file (give 'auto', 'system' or a malloc library's path)")
    return setting


def preload_allocator() -> None:
    """Re-execute this process's command line with the wanted allocator in LD_PRELOAD, once (before heavy imports)."""
    library = wanted_library(os.environ.get(ALLOCATOR_ENV, "auto"))
    preloaded = os.environ.get("LD_PRELOAD", "")
    if library is None or library in preloaded.split():
        return
    os.environ["LD_PRELOAD"] = f"{preloaded} {library}".strip()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def allocator_in_use() -> str:
    """The malloc library mapped into this process ('tcmalloc', 'jemalloc', ...), or 'system'."""
    try:
        with open("/proc/self/maps") as maps:
            mapped = maps.read()
    except OSError:  # not Linux
        return "system"
    return next((name for name in KNOWN if f"lib{name}" in mapped), "system")
