"""Flow train-embedder: fine-tune on a mined dataset; runs in-process or as the `train-embedder/gpu` deployment."""

from __future__ import annotations

from prefect import flow

from ..tasks.core import Ref, RunStore, die_with_worker
from ..tasks.embedding import model_fingerprint, resolve_model
from ..tasks.settings import TrainSettings
from ..tasks.training import TrainResult, run_key, save_train_result, train_task


@flow(name="train-embedder", log_prints=False)
def train_embedder(
    tuples: Ref,
    pairs: Ref,
    base_model: str,
    settings: TrainSettings,
    store_url: str,
    validation: Ref | None = None,
    corpus: Ref | None = None,
) -> TrainResult:
    """Fine-tune base_model on the mined dataset in the run store and return the model's reference.

    The result is also saved in the run store under the run's content key, where a caller that ran this
    flow as a deployment on another machine reads it back (`domain_embed.tasks.training.fit.read_train_result`).
    """
    die_with_worker()
    base_sha = model_fingerprint(resolve_model(base_model))
    state = train_task(tuples, pairs, base_model, base_sha, settings, store_url, validation, corpus, return_state=True)
    result = state.result().model_copy(update={"cached": state.name == "Cached"})
    save_train_result(RunStore(store_url), run_key(tuples, pairs, base_sha, settings, validation, corpus), result)
    return result
