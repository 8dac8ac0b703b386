"""Training checkpoints: written to local scratch, mirrored to the run store, fetched back by a retry on another machine."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.model_ref import fetch_folder, local_cache, put_folder
from ..core.objects import matching, read_json, sha256_file, stable_hash
from ..core.store import RunStore, remove


def scratch_dir(store: RunStore, run_key: str) -> Path:
    """This machine's working folder for a training run (checkpoints, the final save) of one store."""
    return local_cache() / "training" / f"{run_key}-{stable_hash(store.url)[:8]}"


def checkpoints_uri(store: RunStore, run_key: str) -> str:
    """The store folder mirroring the run's checkpoints: checkpoint-N/ files, and checkpoint-N.json once complete."""
    return store.uri("checkpoints", run_key)


def step(path: str) -> int:
    """The step of a checkpoint-N name, file or folder."""
    return int(Path(path).name.removesuffix(".json").rsplit("-", 1)[1])


def latest_checkpoint(output_dir: Path) -> str | None:
    """The newest complete checkpoint left by an interrupted run (the Trainer writes trainer_state.json last)."""
    checkpoints = [p for p in output_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(checkpoints, key=lambda p: step(p.name))) if checkpoints else None


def stored_checkpoints(store: RunStore, run_key: str) -> list[str]:
    """Names (checkpoint-N) of the complete checkpoints the store holds for a run."""
    found = matching(f"{checkpoints_uri(store, run_key)}/checkpoint-*.json")
    return sorted((Path(p).name.removesuffix(".json") for p in found), key=step)


def restore_checkpoints(store: RunStore, run_key: str, output_dir: Path) -> str | None:
    """The latest local complete checkpoint; when there is none, the store's complete checkpoints are fetched first."""
    if latest_checkpoint(output_dir) is None:
        for name in stored_checkpoints(store, run_key):
            manifest = f"{checkpoints_uri(store, run_key)}/{name}.json"
            if not (output_dir / name).is_dir():
                fetch_folder(manifest, output_dir / name, read_json(manifest))
    return latest_checkpoint(output_dir)


def drop_checkpoint(store: RunStore, run_key: str, name: str) -> None:
    """Remove one mirrored checkpoint: its manifest first, so a half-removed one is never taken as complete."""
    folder = f"{checkpoints_uri(store, run_key)}/{name}"
    remove(f"{folder}.json")
    remove(folder)


def clear_checkpoints(store: RunStore, run_key: str) -> None:
    """Remove the run's mirrored checkpoints (the model is in the store)."""
    remove(checkpoints_uri(store, run_key))


def store_sync(store: RunStore, run_key: str):
    """A TrainerCallback that uploads each new checkpoint to the store and drops the ones the Trainer rotated away;
    on a resumed run, the best checkpoint's path points into this machine's scratch."""
    from transformers import TrainerCallback

    class StoreSync(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.best_model_checkpoint:
                state.best_model_checkpoint = os.path.join(args.output_dir, Path(state.best_model_checkpoint).name)

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            files = {
                p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()
            }
            put_folder(f"{checkpoints_uri(store, run_key)}/{folder.name}.json", folder, files)
            kept = {p.name for p in Path(args.output_dir).glob("checkpoint-*")}
            for name in set(stored_checkpoints(store, run_key)) - kept:
                drop_checkpoint(store, run_key, name)

    return StoreSync()
