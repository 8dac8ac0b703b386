"""`domain-embed export --onnx --int8`: real ONNX files run by ONNX Runtime, compared with the PyTorch model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_evaluate import PASSAGES, QUESTIONS

from domain_embed.flows.cli import main
from domain_embed.tasks.embedding.models import load_model
from domain_embed.tasks.embedding.onnx_export import OnnxTransformer, load_onnx_model

TEXTS = [text for _, text in PASSAGES.values()] + list(QUESTIONS.values()) + ["x", "a much longer passage " * 30]
INT8_MIN_COSINE = 0.95  # dynamic int8 quantization moves embeddings a little: measured 0.98 and above on these texts


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """A copy of the tiny run, exported once with --onnx --int8; yields (run folder, printed output)."""
    out = tmp_path_factory.mktemp("export") / "out"
    shutil.copytree(tiny_run, out)
    assert main(["export", "--run", str(out), "--onnx", "--int8"]) == 0
    return out


def test_export_writes_files_and_the_comparison(exported, capsys):
    model = exported / "model"
    assert (model / "onnx" / "model.onnx").is_file() and (model / "onnx" / "model_qint8.onnx").is_file()
    record = json.loads((exported / "export.json").read_text())
    assert record["files"] == {"onnx": "model/onnx/model.onnx", "int8": "model/onnx/model_qint8.onnx"}
    assert record["size_mb"]["int8"] < record["size_mb"]["onnx"] / 2
    evaluation = record["evaluation"]
    assert (evaluation["dataset"], evaluation["queries"], evaluation["passages"], evaluation["dims"]) == (
        "synthetic",
        20,
        28,
        [384, 128, 64],
    )
    run_eval = json.loads((exported / "report.json").read_text())["evaluation"]["synthetic"]["results"]["tuned"]
    assert evaluation["results"]["pytorch"] == run_eval  # the same split and scoring as the run's own evaluation
    for backend in ("onnx", "int8"):
        for dim in ("384", "128", "64"):
            ndcg = evaluation["results"][backend][dim]["ndcg@10"]
            assert 0 <= ndcg <= 1 and abs(ndcg - run_eval[dim]["ndcg@10"]) <= 0.05
    assert record["agreement"]["onnx"]["min_cosine"] >= 0.99
    assert record["agreement"]["int8"]["min_cosine"] >= INT8_MIN_COSINE
    assert set(record["passages_per_s"]) == {"pytorch", "onnx", "int8"}  # recorded, never compared
    assert all(isinstance(v, float) and v > 0 for v in record["passages_per_s"].values())
    table = (exported / "export.md").read_text()
    assert (
        "| backend | file | MB | NDCG@10 dim 384 | NDCG@10 dim 128 | NDCG@10 dim 64 | min cosine to pytorch | passages/s (CPU) |"
        in table
    )
    assert "| int8 | model/onnx/model_qint8.onnx |" in table


def test_onnx_embeddings_match_pytorch(exported):
    model_dir = str((exported / "model").resolve())
    reference = load_model(model_dir, "cpu").encode_document(TEXTS, normalize_embeddings=True)
    for name, bound in (("model.onnx", 0.99), ("model_qint8.onnx", INT8_MIN_COSINE)):
        model = load_onnx_model(model_dir, exported / "model" / "onnx" / name)
        assert isinstance(model[0].model, OnnxTransformer)
        cosines = (model.encode_document(TEXTS, normalize_embeddings=True) * reference).sum(axis=1)
        assert cosines.min() >= bound, (name, cosines.min())


def test_onnx_file_stands_alone(exported):
    """ONNX Runtime alone, with mean pooling: what a user shipping model.onnx runs, without sentence-transformers' encode."""
    path = exported / "model" / "onnx"
    graph = onnx.load(str(path / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["last_hidden_state"]
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= {
        n.op_type for n in onnx.load(str(path / "model_qint8.onnx")).graph.node
    }
    model = load_model(str((exported / "model").resolve()), "cpu")
    features = model.preprocess(TEXTS)
    session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    (hidden,) = session.run(
        None, {name: features[name].numpy() for name in ("input_ids", "attention_mask", "token_type_ids")}
    )
    mask = features["attention_mask"].numpy()[:, :, None]
    pooled = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    reference = model.encode_document(TEXTS, normalize_embeddings=True)
    assert (pooled * reference).sum(axis=1).min() >= 0.99


def test_export_errors_name_the_problem(tiny_run, tmp_path, capsys):
    def error(*argv) -> str:
        assert main(["export", *map(str, argv)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("domain-embed: error: ") and "\n" not in err
        return err

    assert "nothing to export: give --onnx" in error("--run", tiny_run)
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"base_model": "all-MiniLM-L6-v2"}))
    assert "has no published SentenceTransformer model" in error("--run", run, "--onnx")
    shutil.copytree(tiny_run / "model", run / "model", ignore=shutil.ignore_patterns("onnx"))
    assert "has no store.corpus and store.eval_pairs entries" in error("--run", run, "--onnx")
    assert not (run / "model" / "onnx").exists()  # checked before anything is written
    (run / "report.json").write_text(
        json.dumps({"store": {"corpus": str(tmp_path / "gone.jsonl"), "eval_pairs": str(tmp_path / "gone.jsonl")}})
    )
    assert "cannot read the run's eval split" in error("--run", run, "--onnx")
