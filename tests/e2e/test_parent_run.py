"""What the parent run shows: the training report of its training sub-flow, and a description for every setting."""

from __future__ import annotations

from types import SimpleNamespace

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.context import get_run_context
from prefect.states import Completed
from prefect.utilities.callables import parameter_schema

from domain_embed.flows.pipeline import build_embedder, run_training
from domain_embed.tasks.core.model_ref import ModelRef
from domain_embed.tasks.embedding.models import model_fingerprint
from domain_embed.tasks.settings import PipelineConfig, TrainSettings
from domain_embed.tasks.training import training_markdown
from domain_embed.tasks.training.fit import TrainResult, run_key, save_train_result


@flow(name="train-parent")
def train_parent(config: PipelineConfig, tuples, pairs, store_url: str) -> tuple[TrainResult, str]:
    """Stands in for build-embedder: trains through run_training and says which flow run it was."""
    return run_training(config, tuples, pairs, store_url), str(get_run_context().flow_run.id)


def artifacts(flow_run_id: str, key: str) -> list:
    """The artifacts with `key` attached to one flow run."""
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=ArtifactFilterKey(any_=[key])
            )
        )


def test_a_training_deployment_publishes_its_report_on_the_parent_run(
    prefect_harness, store, base_model_dir, tmp_path, monkeypatch
):
    tuples = store.put_jsonl(
        "tuples", [{"anchor": "what is wal", "positive": "The write-ahead log.", "negative_1": "Vacuum."}]
    )
    pairs = store.put_jsonl("pairs", [])
    settings = TrainSettings(deployment="train-embedder/gpu")
    result = TrainResult(
        model=ModelRef(uri=store.uri("models", f"{'0' * 64}.json"), sha256="0" * 64, count=5),
        dims=[384, 64],
        examples=28,
        steps=4,
        epochs=1.0,
        loss_curve=[(1, 2.5), (4, 1.25)],
        samples_per_second=9.5,
        seconds=3.0,
        device="cpu",
    )
    key = run_key(
        tuples, pairs, model_fingerprint(base_model_dir), settings.model_copy(update={"deployment": None}), None
    )
    save_train_result(store, key, result)  # as the deployment's run leaves it
    asked = []
    monkeypatch.setattr(
        "prefect.deployments.run_deployment", lambda **kw: asked.append(kw) or SimpleNamespace(state=Completed())
    )

    trained, parent_id = train_parent(PipelineConfig(docs_dir=str(tmp_path), train=settings), tuples, pairs, store.url)

    assert trained == result and asked[0]["name"] == "train-embedder/gpu"
    [report] = artifacts(parent_id, "training-report")
    assert report.type == "markdown" and report.data == training_markdown(result)
    assert "Loss went from 2.5000 to 1.2500" in report.data


def undescribed(schema: dict) -> list[str]:
    """'Model.field' for every property of the schema's models ($defs or definitions) without a description."""
    models = {schema.get("title", "top"): schema, **schema.get("$defs", {}), **schema.get("definitions", {})}
    return [
        f"{name}.{field}"
        for name, model in models.items()
        for field, spec in model.get("properties", {}).items()
        if not str(spec.get("description") or "").strip()
    ]


def test_every_setting_has_a_description():
    schema = PipelineConfig.model_json_schema()
    assert len(schema["$defs"]) == 10  # the ten settings groups, the runner and embed included
    assert undescribed(schema) == []


def test_the_run_form_describes_every_nested_setting():
    form = parameter_schema(build_embedder.fn).model_dump_for_openapi()
    assert {"TrainSettings", "LLMSettings", "FilterSettings"} <= set(form["definitions"])
    assert undescribed({"definitions": form["definitions"]}) == []
    train = form["definitions"]["TrainSettings"]["properties"]
    assert all(train[f]["description"] for f in ("epochs", "batch_size", "learning_rate", "warmup_ratio", "seed"))
