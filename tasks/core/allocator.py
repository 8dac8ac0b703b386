"""The memory allocator of a run's process: tcmalloc where the machine has it, preloaded by re-executing the command.

glibc's malloc keeps what PyTorch frees on the CPU in fragments of its arenas, so a training process grows step after
step; tcmalloc reuses it (README, "Memory and the allocator"). DOMAIN_EMBED_ALLOCATOR: `auto` (tcmalloc when found, the
default), `system` (the C library's), or the path of a malloc library to preload. Linux only; elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys

ALLOCATOR_ENV = "DOMAIN_EMBED_ALLOCATOR"
KNOWN = ("tcmalloc", "jemalloc", "mimalloc")  # preloadable allocators, as their libraries' file names say
AUTO = ("", "auto")  # the setting's values (unset or empty included) that mean: tcmalloc where found


def wanted_library(setting: str) -> str | None:
    """The library DOMAIN_EMBED_ALLOCATOR asks for: None for `system`, or when `auto` finds no tcmalloc."""
    if setting == "system" or sys.platform != "linux":
        return None
    if setting in AUTO:
        return ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")
    if not os.path.isfile(setting) or re.search(r"[\s:]", setting):
        raise ValueError(
            f"{ALLOCATOR_ENV}={setting!r}: not a file, or a path with a space or colon "
            "(give 'auto', 'system' or a malloc library's path)"
        )
    return os.path.abspath(setting)  # the server and workers start in other folders


def preload_allocator() -> None:
    """Re-execute this process's command line once, with LD_PRELOAD holding the wanted allocator and no other known one
    (call it first thing: the process starts over). `auto` leaves an allocator the user preloaded alone."""
    setting = os.environ.get(ALLOCATOR_ENV, "auto")
    library = wanted_library(setting)
    if sys.platform != "linux":
        return
    preloaded = [entry for entry in re.split(r"[\s:]+", os.environ.get("LD_PRELOAD", "")) if entry]
    kept = [entry for entry in preloaded if not any(name in os.path.basename(entry) for name in KNOWN)]
    if setting in AUTO and kept != preloaded:
        return
    wanted = kept + ([library] if library else [])
    if wanted == preloaded:
        return
    os.environ["LD_PRELOAD"] = " ".join(wanted)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


class DlInfo(ctypes.Structure):
    """dladdr's answer: the file that defines an address."""

    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def allocator_in_use() -> str:
    """The allocator whose malloc this process calls ('tcmalloc', 'jemalloc', ...), or 'system'."""
    if sys.platform != "linux":
        return "system"
    process, info = ctypes.CDLL(None), DlInfo()
    if not process.dladdr(ctypes.cast(process.malloc, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        return "system"
    library = os.path.basename(info.dli_fname.decode(errors="replace"))
    return next((name for name in KNOWN if name in library), "system")
