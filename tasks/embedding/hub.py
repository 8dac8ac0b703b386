"""Models named by Hugging Face Hub id (`ORG/NAME[@revision]`): from the local Hub cache, downloaded only when allowed."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from ..core.env import ONLINE_ENV, online
from .packaged import ModelNotFound

HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")
SKIPPED = ["onnx/*", "openvino/*", "*.onnx", "*.h5", "*.msgpack", "*.ot", "rust_model*", "coreml/*", "*.gguf"]


def is_hub_id(name: str) -> bool:
    """Whether `name` reads as a Hub id, ORG/NAME with an optional @revision."""
    return HUB_ID.match(name) is not None


def hub_cache() -> Path:
    """The Hugging Face cache folder, read now (not at import): HF_HUB_CACHE, else HF_HOME/hub, else the user's cache."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = (
        os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    )
    return Path(home) / "hub"


def hub_model_dir(name: str) -> str:
    """The snapshot folder of Hub id `name`: from the cache, or downloaded when online; ModelNotFound otherwise."""
    return _snapshot(name, str(hub_cache()), online())


@functools.lru_cache(maxsize=16)
def _snapshot(name: str, cache: str, allowed: bool) -> str:
    """One resolution per process: a tag that moves mid-run does not change the model under the run."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    match = HUB_ID.match(name)
    assert match is not None, name
    try:
        return snapshot_download(
            match["repo"],
            revision=match["revision"],
            cache_dir=cache,
            local_files_only=not allowed,
            ignore_patterns=SKIPPED,
        )
    except LocalEntryNotFoundError:
        if allowed:
            raise ModelNotFound(f"model {name} could not be downloaded (no network?) and is not in {cache}") from None
        raise ModelNotFound(
            f"model {name} is not in the Hugging Face cache {cache}: run with --online "
            f"(or {ONLINE_ENV}=1) to download it, or set HF_HOME to the cache that holds it"
        ) from None
    except HfHubHTTPError as exc:
        raise ModelNotFound(f"model {name} could not be fetched from the Hugging Face Hub: {exc}") from None


def hub_revision(model_dir: str) -> str | None:
    """The commit hash of a Hub cache snapshot folder (…/models--ORG--NAME/snapshots/<hash>), else None."""
    path = Path(model_dir)
    return path.name if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--") else None
