"""Hard-negative mining: the false-negative rule and exclusions on constructed embeddings, the index
switch, the exact bf16 search, determinism, and mining end to end with the real all-MiniLM-L6-v2."""

from __future__ import annotations

import logging
import os

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
}.items():
    os.environ.setdefault(_name, _value)

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import domain_embed.tasks.core.reports as reports  # noqa: E402
import domain_embed.tasks.embedding.faiss_index as faiss_index  # noqa: E402
import domain_embed.tasks.mining.mine as mine  # noqa: E402
from domain_embed.tasks.core.objects import read_jsonl, read_npy  # noqa: E402
from domain_embed.tasks.core.store import RunStore  # noqa: E402
from domain_embed.tasks.core.text import normalize  # noqa: E402
from domain_embed.tasks.embedding.faiss_index import build_index, search  # noqa: E402
from domain_embed.tasks.embedding.models import bf16_native, model_fingerprint, resolve_model  # noqa: E402
from domain_embed.tasks.mining.mine import mine_hard_negatives, mine_task  # noqa: E402
from domain_embed.tasks.mining.negatives import select_negatives  # noqa: E402
from domain_embed.tasks.settings import MineSettings  # noqa: E402

DIM = 16


def unit(*parts: tuple[int, float]) -> np.ndarray:
    """A unit vector with the given (axis, value) parts; the last part's value fills the norm up to 1."""
    v = np.zeros(DIM, np.float32)
    for axis, value in parts[:-1]:
        v[axis] = value
    axis, _ = parts[-1]
    v[axis] = np.sqrt(max(0.0, 1 - float(v @ v)))
    return v


def scored(score: float, axis: int) -> np.ndarray:
    """A chunk whose cosine with the query e0 is `score`, otherwise orthogonal to all others (own axis)."""
    return unit((0, score), (axis, 0.0))


QUERY = unit((0, 1.0))


def run(chunks: list[np.ndarray], positives: list[int], settings: MineSettings, docs=None, texts=None, **kw):
    emb = np.stack(chunks)
    docs = docs or [f"d{i}" for i in range(len(chunks))]
    texts = texts or [f"chunk {i}" for i in range(len(chunks))]
    queries = np.stack([QUERY] * len(positives))
    return select_negatives(queries, emb, positives, docs, texts, settings, **kw)


def test_false_negative_rule_keeps_only_candidates_below_the_ratio_of_the_positive():
    # positive scores 0.8, so the bar is 0.95 * 0.8 = 0.76: 0.79 is a likely false negative
    chunks = [scored(0.8, 2), scored(0.79, 3), scored(0.70, 4), scored(0.5, 5)]
    neg, stats = run(chunks, [0], MineSettings())
    assert neg.tolist() == [[2]]
    assert stats.rejected_false_negative == 1
    assert stats.positive_scores.p50 == pytest.approx(0.8, abs=1e-4)
    assert stats.mean_margin == pytest.approx(0.1, abs=1e-4)

    neg, stats = run(chunks, [0], MineSettings(max_score_ratio=0.99))  # bar 0.792: 0.79 passes
    assert neg.tolist() == [[1]] and stats.rejected_false_negative == 0

    neg, _ = run(chunks, [0], MineSettings(negatives_per_query=3))
    assert neg.tolist() == [[2, 3, -1]]


def test_positive_near_duplicates_and_same_document_are_never_negatives():
    positive = unit((0, 0.8), (1, 0.6))
    text_copy = scored(0.74, 3)  # different vector, same text after normalisation
    vector_copy = unit((0, 0.7), (1, 0.71), (2, 0.0))  # cosine 0.986 with the positive, scores 0.70
    same_doc = scored(0.68, 4)
    other = scored(0.6, 5)
    chunks = [positive, text_copy, vector_copy, same_doc, other]
    docs = ["d1", "d2", "d3", "d1", "d4"]
    texts = [normalize(t) for t in ["Alpha, beta.", "alpha BETA", "gamma", "delta", "epsilon"]]
    assert float(vector_copy @ positive) >= 0.98

    neg, stats = run(chunks, [0], MineSettings(exclude_same_document=True), docs, texts)
    assert neg.tolist() == [[4]]
    assert stats.rejected_near_duplicate == 2
    assert stats.rejected_same_document == 1
    assert stats.rejected_false_negative == 0
    assert stats.rejected_positive == 1

    neg, _ = run(chunks, [0], MineSettings(exclude_same_document=False), docs, texts)
    assert neg.tolist() == [[3]]
    neg, _ = run(chunks, [0], MineSettings(near_duplicate_cosine=0.99), docs, texts)
    assert neg.tolist() == [[2]]  # the vector copy is now far enough; the text copy still is not


def test_positive_of_another_pair_with_the_same_query_text_is_never_a_negative():
    chunks = [scored(0.8, 2), scored(0.7, 3), scored(0.6, 4)]
    neg, stats = run(chunks, [0, 1], MineSettings(), query_texts=["What is X?", "what is x"])
    assert neg.tolist() == [[2], [2]]
    assert stats.rejected_positive == 4  # each pair sees both positives of its query text

    neg, _ = run(chunks, [0, 1], MineSettings(), query_texts=["What is X?", "What is Y?"])
    assert neg.tolist() == [[1], [2]]  # different queries: chunk 1 is a fine negative for pair 0


def test_rank_window_skips_range_min_and_stops_at_range_max():
    chunks = [scored(0.9, 2), scored(0.7, 3), scored(0.6, 4), scored(0.5, 5), scored(0.4, 6)]
    assert run(chunks, [0], MineSettings(range_min=1))[0].tolist() == [[2]]
    assert run(chunks, [0], MineSettings(range_max=2, negatives_per_query=3))[0].tolist() == [[1, 2, -1]]
    neg, stats = run(chunks, [0], MineSettings(range_min=4, range_max=10))
    assert neg.tolist() == [[-1]] and stats.queries_without_negative == 1


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 40), dim))
    x = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, dim)) * 0.8
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def noisy_copies(rows: np.ndarray, seed: int) -> np.ndarray:
    """Queries close to their positive chunk (cosine about 0.8)."""
    x = rows + np.random.default_rng(seed).standard_normal(rows.shape) * 0.75 / np.sqrt(rows.shape[1])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_index_is_exact_below_the_threshold_and_approximate_with_measured_recall_above():
    emb = clustered(3000, 32, seed=1)
    index, info = build_index(emb, MineSettings(exact_search_max=5000))
    assert isinstance(index, faiss.IndexFlatIP) and info["type"] == "flat" and info["recall_at_k"] == 1.0

    index, info = build_index(emb, MineSettings(exact_search_max=1000, recall_sample=100))
    assert isinstance(index, faiss.IndexHNSWFlat) and info["type"] == "hnsw"
    assert info["recall_queries"] == 100 and 0.8 <= info["recall_at_k"] <= 1.0

    _, info = build_index(emb, MineSettings(exact_search_max=1000, approximate_index="ivf", recall_sample=100))
    assert info["type"] == "ivf" and info["nlist"] >= 2 and 0.5 <= info["recall_at_k"] <= 1.0


def test_mining_over_an_approximate_index_reports_it():
    chunks = clustered(2000, 32, seed=2)
    queries = noisy_copies(chunks[:50], seed=3)
    neg, stats = select_negatives(
        queries,
        chunks,
        list(range(50)),
        ["d"] * 2000,
        [str(i) for i in range(2000)],
        MineSettings(exact_search_max=500),
    )
    assert stats.index.type == "hnsw" and stats.index.recall_queries == 50
    assert (neg[:, 0] >= 0).mean() > 0.9 and (neg[:, 0] != np.arange(50)).all()


@pytest.mark.skipif(not bf16_native(), reason="this CPU has no native bf16 matrix multiply")
def test_bf16_search_returns_the_exact_neighbours(monkeypatch):
    emb = clustered(6000, 64, seed=4)
    emb[:, 61:] = 0
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    axis = np.eye(64, dtype=np.float32)
    # 300 copies score 0.5 against the last query and one vector 0.5001: equal in bf16, so only the
    # fp32 re-search of uncertified queries can rank the 0.5001 one first
    emb[100:400] = 0.5 * axis[63] + np.sqrt(0.75) * axis[62]
    emb[5999] = 0.5001 * axis[63] + np.sqrt(1 - 0.5001**2) * axis[61]
    queries = np.concatenate([noisy_copies(emb[400:700], seed=5), axis[63:]])
    index = faiss.IndexFlatIP(64)
    index.add(emb)
    monkeypatch.setattr(faiss_index, "BF16_MIN_WORK", 0)
    fast_scores, fast_ids = search(index, queries, 20)
    exact_scores, exact_ids = search(index, queries, 20, fast=False)
    np.testing.assert_allclose(fast_scores, exact_scores, atol=1e-5)
    assert (fast_ids[:-1] == exact_ids[:-1]).mean() > 0.99
    assert fast_ids[-1, 0] == 5999 and set(fast_ids[-1, 1:]) <= set(range(100, 400))


def test_same_seed_same_negatives():
    chunks = clustered(3000, 32, seed=6)
    queries = noisy_copies(chunks[:200], seed=7)
    args = (queries, chunks, list(range(200)), [f"d{i // 10}" for i in range(3000)], [str(i) for i in range(3000)])
    for settings in (
        MineSettings(negatives_per_query=3),
        MineSettings(negatives_per_query=3, exact_search_max=1000, approximate_index="ivf"),
    ):
        first, stats = select_negatives(*args, settings)
        second, _ = select_negatives(*args, settings)
        assert (first == second).all() and stats.queries_with_all_negatives > 150


CHUNKS = [
    (
        "a1",
        "Sourdough starter is a culture of wild yeast and lactic acid bacteria kept alive by regular feeding with flour and water.",
    ),
    (
        "a1",
        "Bulk fermentation of sourdough takes four to six hours at room temperature; the dough should rise by about half.",
    ),
    (
        "a1",
        "Shaping sourdough builds surface tension so the loaf holds its form; rest the dough on the bench before the final shape.",
    ),
    (
        "b2",
        "Solar panels convert sunlight into direct current; an inverter turns it into alternating current for the home.",
    ),
    (
        "b2",
        "Panel efficiency falls as temperature rises, so rooftop arrays lose output on very hot summer afternoons.",
    ),
    ("c3", "A Kubernetes pod is the smallest deployable unit and groups containers that share network and storage."),
    ("c3", "Kubernetes deployments roll out new pod versions gradually and can roll back when health checks fail."),
    ("c3", "A Kubernetes service gives a stable address to a changing set of pods selected by their labels."),
]
PAIRS = [
    ("How long does sourdough bulk fermentation take?", 1),
    ("Why do solar panels produce less power on hot days?", 4),
    ("What does a Kubernetes service do?", 7),
    ("How are new versions rolled out in Kubernetes?", 6),
]


@pytest.fixture(scope="module")
def model_dir() -> str:
    return resolve_model("all-MiniLM-L6-v2")


@pytest.fixture()
def corpus() -> tuple[list[dict], list[dict]]:
    chunks = [
        {"chunk_id": f"{i:016x}", "doc_id": doc * 8, "section": "", "text": text, "n_tokens": len(text.split())}
        for i, (doc, text) in enumerate(CHUNKS)
    ]
    pairs = [{"query": q, "chunk_id": chunks[i]["chunk_id"], "doc_id": chunks[i]["doc_id"]} for q, i in PAIRS]
    pairs.append({"query": "Orphan question?", "chunk_id": "f" * 16, "doc_id": "0" * 16})
    return chunks, pairs


def test_mine_hard_negatives_end_to_end_with_the_real_model(model_dir, corpus, tmp_path, monkeypatch):
    chunks, pairs = corpus
    store = RunStore(str(tmp_path / "store"))
    result = mine_hard_negatives(pairs, chunks, model_dir, MineSettings(exclude_same_document=True), store)

    tuples, leftovers = read_jsonl(result.tuples), read_jsonl(result.pairs_without_negatives)
    assert result.stats.pairs == 5 and result.stats.pairs_missing_chunk == 1
    assert len(tuples) + len(leftovers) == 4 and len(tuples) == result.stats.queries_with_all_negatives > 0
    doc_of = {c["text"]: c["doc_id"] for c in chunks}
    for row in tuples:
        assert set(row) == {"anchor", "positive", "negative_1"}
        assert doc_of[row["negative_1"]] != doc_of[row["positive"]]
    assert all(set(row) == {"anchor", "positive"} for row in leftovers)
    assert result.index.type == "flat" and result.k == 1
    assert read_npy(result.corpus_embeddings).shape == (8, 384)
    assert read_npy(result.query_embeddings).dtype == np.float32

    embedded = []
    real_embed = mine.embed_texts
    monkeypatch.setattr(
        mine, "embed_texts", lambda d, texts, **kw: embedded.append(len(texts)) or real_embed(d, texts, **kw)
    )
    again = mine_hard_negatives(pairs, chunks, model_dir, MineSettings(exclude_same_document=True), store)
    assert embedded == [4]  # only the queries: the corpus embeddings came from the store
    assert again.tuples == result.tuples and again.corpus_embeddings == result.corpus_embeddings


def test_mine_task_publishes_the_mining_report(model_dir, corpus, tmp_path, monkeypatch):
    chunks, pairs = corpus
    published = []
    monkeypatch.setattr(mine, "get_run_logger", lambda: logging.getLogger("test-mine"))
    monkeypatch.setattr(reports, "in_run", lambda: True)
    monkeypatch.setattr(reports, "create_table_artifact", lambda **kwargs: published.append(kwargs))
    store = RunStore(str(tmp_path / "store"))
    args = (
        store.put_jsonl("pairs", pairs),
        store.put_jsonl("corpus", chunks),
        "all-MiniLM-L6-v2",
        MineSettings(),
        store.url,
    )

    result = mine_task.fn(*args, model_sha=model_fingerprint(model_dir))
    (artifact,) = published
    assert artifact["key"] == "mining-report"
    table = {row["metric"]: row["value"] for row in artifact["table"]}
    assert table["tuples written (all k negatives)"] == str(result.tuples.count)
    assert table["index"] == "flat over 8 vectors" and "negative score p50" in table
    with pytest.raises(ValueError, match="model_sha"):
        mine_task.fn(*args, model_sha="0" * 64)
