"""Per docs folder: the configuration its runs use when nobody is there to choose (the last one run or saved), and
its own output folder, so that unattended runs repeat the user's settings and never overwrite another folder's output."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from ..core.objects import exists, read_json
from ..core.reports import publish_markdown
from ..core.store import RunStore, atomic_write, default_store_url
from ..settings import PipelineConfig

SAVED = "folder-configs"


def folder_key(docs_dir: str) -> str:
    """16 hex characters naming a folder by its absolute path."""
    return hashlib.sha256(os.fsencode(Path(docs_dir).resolve())).hexdigest()[:16]


def folder_label(docs_dir: str) -> str:
    """<folder name>-<folder key>: readable, and unique per absolute path."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(docs_dir).resolve().name) or "docs"
    return f"{name}-{folder_key(docs_dir)}"


def local_root(store_url: str) -> Path:
    """A local folder next to the run store: the store itself when local, the user's cache for a remote one."""
    if "://" not in store_url or store_url.startswith("file://"):
        return Path(store_url.removeprefix("file://")).resolve()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "domain-embed"


def default_out_dir(docs_dir: str, store_url: str) -> str:
    """The docs folder's own output folder: outputs/<name>-<key> beside the run store."""
    return str(local_root(store_url) / "outputs" / folder_label(docs_dir))


def settle(config: PipelineConfig) -> PipelineConfig:
    """The config with absolute docs folder, run store and output folder (by default the docs folder's own)."""
    store = config.store_url or default_store_url()
    if "://" not in store:
        store = str(Path(store).resolve())
    docs = str(Path(config.docs_dir).resolve())
    out = str(Path(config.out_dir).resolve()) if config.out_dir else default_out_dir(docs, store)
    return config.model_copy(update={"docs_dir": docs, "store_url": store, "out_dir": out})


def saved_uri(store_url: str, docs_dir: str) -> str:
    """Where the run store keeps the folder's configuration."""
    return RunStore(store_url).uri(SAVED, f"{folder_label(docs_dir)}.json")


def save_folder_config(config: PipelineConfig) -> str:
    """Keep a settled config as its docs folder's configuration; returns where."""
    uri = saved_uri(config.store_url, config.docs_dir)
    atomic_write(uri, json.dumps(config.model_dump(mode="json"), indent=1, sort_keys=True).encode())
    return uri


@task(name="save-folder-config", persist_result=False)
def save_folder_config_task(config: PipelineConfig) -> str:
    """Save the run's settled configuration as its docs folder's (what unattended runs of the folder use), with a
    `folder-config` artifact; returns where."""
    uri = save_folder_config(config)
    get_run_logger().info("Saved as the configuration of %s: %s", config.docs_dir, uri)
    publish_markdown(
        "folder-config",
        f"Configuration of `{config.docs_dir}`, saved at `{uri}`:\n\n```json\n"
        f"{config.model_dump_json(indent=1)}\n```\n",
        "The configuration unattended runs of this folder use",
    )
    return uri


def load_folder_config(store_url: str, docs_dir: str) -> PipelineConfig | None:
    """The configuration last run or saved for the docs folder, or None."""
    uri = saved_uri(store_url, docs_dir)
    return PipelineConfig.model_validate(read_json(uri)) if exists(uri) else None


def choose_config(config: PipelineConfig, use_saved: bool) -> tuple[PipelineConfig, str]:
    """The settled config a run uses, and where it came from: the folder's saved one when asked for and present."""
    config = settle(config)
    saved = load_folder_config(config.store_url, config.docs_dir) if use_saved else None
    if saved is not None:
        return settle(
            saved
        ), f"the configuration saved for {config.docs_dir} ({saved_uri(config.store_url, config.docs_dir)})"
    return config, "the run's parameters" + (" (no configuration saved for this folder yet)" if use_saved else "")
