"""Recall@10 and query time of the FAISS indexes (app/index.py) against exact cosine search.

    python -m bench.ann_recall                  # 300k synthetic + Fashion-MNIST features, writes BENCHMARKS.md
    python -m bench.ann_recall --count 100000 --no-write

Two galleries: the 70k Fashion-MNIST images (train + test) embedded by a zoo model, the real
case; and ``--count`` clustered unit vectors of 512 dimensions, the size of bank the index is
for. Queries are held out of the gallery. Recall@10 is the share of the exact top 10 that the
index returns in its own top 10; query time is per query in batches of one, as the app asks.
"""
from __future__ import annotations

import argparse
import time

import torch

from app import bank as banks
from app import index as ann

from .report import write_section


def clustered(count: int, dim: int, clusters: int = 1000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=generator)
    labels = torch.randint(clusters, (count,), generator=generator)
    return banks.normalise(centres[labels] + 0.5 * torch.randn(count, dim, generator=generator))


def fashion_mnist_features(model: str) -> torch.Tensor:
    from PIL import Image

    import zoo
    from app import gallery

    net, transform = zoo.load(model), zoo.transforms(model)
    images = torch.cat([gallery.fashion_mnist(train=True).data, gallery.fashion_mnist(train=False).data])
    return torch.cat([banks.embed(net, transform, [Image.fromarray(x.numpy()) for x in part])
                      for part in images.split(1000)])


def per_query_ms(search, queries: torch.Tensor) -> float:
    began = time.perf_counter()
    for query in queries:
        search(query[None])
    return (time.perf_counter() - began) / len(queries) * 1000


def measure(name: str, features: torch.Tensor, queries: torch.Tensor) -> list[str]:
    _, exact = banks.top_k(features, queries, 10)
    exact_ms = per_query_ms(lambda q: banks.top_k(features, q, 10), queries[:200])
    rows = [f"| {name} | exact (torch) | 1.000 | - | {exact_ms:.2f} |"]
    for kind in ("hnsw", "ivf"):
        began = time.perf_counter()
        index, params = ann.build(features, kind)
        built = time.perf_counter() - began
        _, found = ann.search(index, queries, 10)
        recall = sum(len(set(f) & set(e)) for f, e in zip(found.tolist(), exact.tolist())) / exact.numel()
        knobs = ", ".join(f"{k}={v}" for k, v in params.items())
        ms = per_query_ms(lambda q: ann.search(index, q, 10), queries[:200])
        rows.append(f"| {name} | {kind} ({knobs}) | {recall:.3f} | {built:.0f} | {ms:.2f} |")
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ann_recall", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--model", default="instdisc-resnet18-fmnist")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    real = fashion_mnist_features(args.model)
    rows += measure(f"Fashion-MNIST, {args.model} ({len(real) - 1000:,} x {real.shape[1]})", real[1000:], real[:1000])
    synthetic = clustered(args.count + 1000, 512)
    rows += measure(f"clustered synthetic ({args.count:,} x 512)", synthetic[1000:], synthetic[:1000])
    body = f"""
`python -m bench.ann_recall`: recall@10 of the approximate indexes that `app.bank build --index`
makes (auto: exact below {ann.APPROXIMATE_FROM:,} items, HNSW above), against exact cosine top-k,
for 1,000 held-out queries; query time is one query at a time, as the app asks.

| gallery | index | recall@10 | build s | ms / query |
|---|---|---|---|---|
""" + "\n".join(rows)
    print(body)
    if not args.no_write:
        write_section("Approximate search (FAISS)", body)


if __name__ == "__main__":
    main()
