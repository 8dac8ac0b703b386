"""FAISS inner-product indexes chosen by corpus size, on the GPU when faiss has one, with measured recall."""

from __future__ import annotations

import math

import faiss
import numpy as np

from ..settings import MineSettings
from .models import bf16_native

SEARCH_BATCH = 16384
BF16_MIN_WORK = 5e7  # queries x vectors from which the bf16 pre-selection pays off
BF16_BLOCK = 8  # corpus columns per block when pre-selecting candidates
BF16_EPS = 3 * 2**-8 + 1e-3  # |bf16 - fp32 score| / (|q| |x|): inputs and output rounded to bf16, fp32 sums
_gpu_resources: faiss.StandardGpuResources | None = None


def gpu_available() -> bool:
    """Whether this faiss build has GPU support and sees a GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _to_gpu(index: faiss.Index) -> faiss.Index:
    global _gpu_resources
    if _gpu_resources is None:
        _gpu_resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(_gpu_resources, 0, index)


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _approximate(emb: np.ndarray, settings: MineSettings) -> tuple[faiss.Index, dict]:
    n, dim = emb.shape
    if settings.approximate_index == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.hnsw_ef_construction
        index.hnsw.efSearch = max(settings.hnsw_ef_search, settings.range_max + 1)
        return index, {"hnsw_m": settings.hnsw_m, "ef_search": index.hnsw.efSearch}
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = settings.seed
    sample = np.random.default_rng(settings.seed).choice(n, size=min(n, 64 * nlist), replace=False)
    index.train(emb[np.sort(sample)])
    index.nprobe = min(settings.ivf_nprobe, nlist)
    return index, {"nlist": nlist, "nprobe": index.nprobe}


def build_index(
    emb: np.ndarray, settings: MineSettings, queries: np.ndarray | None = None
) -> tuple[faiss.Index, dict]:
    """Exact inner-product index up to settings.exact_search_max vectors, HNSW or IVF above it.

    The info dict names the choice and its recall@range_max against exact search, measured on a
    seeded sample of `queries` (default: corpus rows); exact search reports 1.0.
    """
    emb = _as_f32(emb)
    n, dim = emb.shape
    exact = n <= settings.exact_search_max
    index, params = (faiss.IndexFlatIP(dim), {}) if exact else _approximate(emb, settings)
    on_gpu = gpu_available() and not isinstance(index, faiss.IndexHNSWFlat)
    if on_gpu:
        index = _to_gpu(index)
    index.add(emb)
    k = min(settings.range_max, n)
    info = {
        "type": "flat" if exact else settings.approximate_index,
        "vectors": n,
        "dim": dim,
        "gpu": on_gpu,
        "k": k,
        "recall_at_k": 1.0,
        "recall_queries": 0,
        **params,
    }
    if not exact and n:
        pool = _as_f32(queries) if queries is not None and len(queries) else emb
        rng = np.random.default_rng(settings.seed)
        sample = pool[np.sort(rng.choice(len(pool), size=min(len(pool), settings.recall_sample), replace=False))]
        info["recall_at_k"] = recall_at_k(index, emb, sample, k)
        info["recall_queries"] = len(sample)
    return index, info


def recall_at_k(index: faiss.Index, emb: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k inner-product neighbours that the index returns."""
    _, truth = faiss.knn(_as_f32(queries), _as_f32(emb), k, metric=faiss.METRIC_INNER_PRODUCT)
    _, found = search(index, queries, k)
    hits = sum(len(np.intersect1d(t[t >= 0], f[f >= 0])) for t, f in zip(truth, found))
    return round(hits / max(1, int((truth >= 0).sum())), 4)


def search(index: faiss.Index, queries: np.ndarray, k: int, fast: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) per query; ids are -1 where fewer than k exist.

    A large exact CPU search goes through the bf16 pre-selection (same results as the flat index)
    when `fast` and the CPU multiplies bf16 natively.
    """
    queries = _as_f32(queries)
    if fast and type(index) is faiss.IndexFlatIP and len(queries) * index.ntotal >= BF16_MIN_WORK and bf16_native():
        return _search_bf16(index, queries, k)
    return _search_faiss(index, queries, k)


def _search_faiss(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if not len(queries):
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    parts = [index.search(queries[i : i + SEARCH_BATCH], k) for i in range(0, len(queries), SEARCH_BATCH)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _search_bf16(index: faiss.IndexFlatIP, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k: bf16 scores pick candidates, fp32 rescoring ranks them, an error bound certifies them.

    A non-candidate scores at most its bf16 score + BF16_EPS x |query| x max |vector|; a query whose
    k-th rescored candidate beats that for every non-candidate is exact, any other is searched in fp32.
    """
    import torch

    xb = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
    n, dim = xb.shape
    n_cand, blocks = k + max(32, k // 2), -(-n // BF16_BLOCK)
    if blocks <= n_cand:
        return _search_faiss(index, queries, k)
    corpus = torch.zeros((blocks * BF16_BLOCK, dim), dtype=torch.bfloat16)
    corpus[:n] = torch.from_numpy(xb)
    scores, ids = np.empty((len(queries), k), np.float32), np.empty((len(queries), k), np.int64)
    redo = np.zeros(len(queries), bool)
    eps = BF16_EPS * np.linalg.norm(queries, axis=1) * float(np.sqrt((xb * xb).sum(1).max()))
    step = max(64, min(1024, (1 << 27) // len(corpus)))
    for start in range(0, len(queries), step):
        q = queries[start : start + step]
        # bf16 bit patterns order like the values they encode when these are >= 0
        keys = (torch.from_numpy(q).bfloat16() @ corpus.T).view(torch.int16)
        # block j holds columns j, j + blocks, j + 2 * blocks, ...: a strided max reads memory in order
        top_blocks = torch.topk(keys.view(len(q), BF16_BLOCK, blocks).amax(1), n_cand + 1, dim=1)
        cols = (top_blocks.indices[:, :n_cand, None] + blocks * torch.arange(BF16_BLOCK)).reshape(len(q), -1)
        top = torch.topk(torch.gather(keys, 1, cols), n_cand + 1, dim=1)
        cand = torch.gather(cols, 1, top.indices[:, :n_cand]).numpy()
        outside_key = torch.maximum(top.values[:, n_cand], top_blocks.values[:, n_cand])
        outside = outside_key.view(torch.bfloat16).float().numpy()
        approx = top.values[:, :n_cand].view(torch.bfloat16).float().numpy()
        inside = cand < n
        exact = np.einsum("bcd,bd->bc", xb.take(np.where(inside, cand, 0), axis=0), q)
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(exact, order, axis=1)
        tol = eps[start : start + len(q), None]
        sure = inside.all(1) & (outside_key.numpy() >= 0) & (best[:, -1] > outside + tol[:, 0])
        sure &= (np.abs(approx - exact) <= tol).all(1)
        scores[start : start + len(q)], ids[start : start + len(q)] = best, np.take_along_axis(cand, order, axis=1)
        redo[start : start + len(q)] = ~sure
    full, again = torch.from_numpy(xb), np.flatnonzero(redo)
    for start in range(0, len(again), step):
        rows = again[start : start + step]
        top = torch.topk(torch.from_numpy(queries[rows]) @ full.T, k, dim=1)
        scores[rows], ids[rows] = top.values.numpy(), top.indices.numpy()
    return scores, ids
