"""Approximate nearest-neighbour indexes (FAISS) for banks too large for an exact matmul.

Exact cosine top-k (``bank.top_k``) costs one N x D matmul per query; at a few hundred
thousand items that is still a few milliseconds, so it stays the default. Above
``APPROXIMATE_FROM`` items a bank gets a FAISS index on inner product (= cosine, rows
are unit vectors), built from the same features and saved next to them:

- ``hnsw``: a navigable small-world graph (Malkov & Yashunin 2018); no training, best recall
  per millisecond, memory ~ N x (D + 2M) floats.
- ``ivf``: k-means cells (Jegou et al. 2011, inverted file), ``nprobe`` of them searched;
  trains in seconds and adds cheaply, at lower recall for the same time.

bench/ann_recall.py measures each one's recall@10 against exact search.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

KINDS = ("exact", "hnsw", "ivf")
APPROXIMATE_FROM = 300_000  # items; below this exact search is fast enough and costs no recall
FILE = "index.faiss"
DEFAULTS = {"hnsw": {"M": 32, "ef_construction": 80, "ef_search": 64}, "ivf": {"nprobe": 16}}


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError("approximate indexes need FAISS. Fix: pip install faiss-cpu "
                          "(or build the bank with --index exact)") from None
    return faiss


def choose(count: int, kind: str = "auto") -> str:
    """``kind`` itself, or for ``auto`` exact search below APPROXIMATE_FROM items and HNSW above."""
    if kind == "auto":
        return "exact" if count < APPROXIMATE_FROM else "hnsw"
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose from auto, {', '.join(KINDS)}")
    return kind


def build(features: torch.Tensor, kind: str, **params) -> tuple[object, dict]:
    """A FAISS index of unit ``features`` [N, D] searched by inner product, and the parameters it used."""
    faiss = _faiss()
    params = {**DEFAULTS[kind], **params}
    vectors = np.ascontiguousarray(features.float().numpy())
    count, dim = vectors.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
    else:
        # ~4 sqrt(N) cells, the usual rule, with at least 39 training points per cell for k-means
        params.setdefault("nlist", max(1, min(int(4 * math.sqrt(count)), count // 39)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, params["nlist"], faiss.METRIC_INNER_PRODUCT)
        # k-means needs ~40-256 points per cell; 64 keep the training minutes short at a million items
        sample = np.random.default_rng(0).permutation(count)[:64 * params["nlist"]]
        index.train(vectors[np.sort(sample)])
    index.add(vectors)
    configure(index, kind, params)
    return index, params


def configure(index, kind: str, params: dict) -> None:
    """Set the search-time knobs (they are not stored in FAISS's file)."""
    if kind == "hnsw":
        index.hnsw.efSearch = params["ef_search"]
    else:
        index.nprobe = params["nprobe"]


def search(index, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (scores, indices) like ``torch.topk``. An ANN index may find fewer than k items for
    a query; FAISS pads those places with index -1, which callers drop."""
    scores, indices = index.search(np.ascontiguousarray(queries.float().numpy()), min(k, index.ntotal))
    return torch.from_numpy(scores), torch.from_numpy(indices)


def save(index, folder: Path) -> None:
    _faiss().write_index(index, str(Path(folder) / FILE))


def load(folder: Path, kind: str, params: dict):
    index = _faiss().read_index(str(Path(folder) / FILE))
    configure(index, kind, params)
    return index
