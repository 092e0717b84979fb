"""The "Lineage" tab: the leaderboard of ``bench.leaderboard`` in the order of the paper-reading series.

The four stages in order; under each, its methods with their paper, the zoo's models of that method
with their kNN and linear top-1 on Fashion-MNIST and training cost, and each model's training curve
(the kNN monitor per epoch). Everything shown is read from ``$ZOO_HOME/leaderboard.json``, which
``python -m bench.leaderboard`` (``make bench``) computes; the app never measures or types a number.
"""
from __future__ import annotations

import json

import gradio as gr

import zoo
from zoo.registry import ENTRIES, PAPERS, STAGE_NAMES, STAGES

LEADERBOARD = "leaderboard.json"


def read() -> list[dict]:
    path = zoo.zoo_home() / LEADERBOARD
    return json.loads(path.read_text()) if path.is_file() else []


def number(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def stage_markdown(stage: int, rows: list[dict]) -> str:
    """One stage: each of its methods, its paper and its models' figures (methods without models say so)."""
    lines = [f"## Stage {stage}: {STAGE_NAMES[stage]}"]
    for method in [m for m, s in STAGES.items() if s == stage]:
        paper = PAPERS.get(method)
        title = f"[{paper.title}]({paper.url}) ({paper.authors.split(',')[0]} et al., {paper.year})" if paper else ""
        lines.append(f"\n### {method}\n{title}\n")
        mine = [r for r in rows if r.get("method") == method]
        if not mine:
            released = [name for name, entry in ENTRIES.items() if entry.method == method]
            lines.append("No model of this method in the local zoo yet"
                         + (f" (released: {', '.join(f'`{n}`' for n in released)}; `python -m zoo convert NAME`)."
                            if released else "."))
            continue
        lines.append("| model | architecture | pre-training data | kNN top-1 (%) | linear top-1 (%) | px | "
                     "training minutes |\n|---|---|---|---|---|---|---|")
        for r in mine:
            lines.append(f"| `{r['model']}` | {r['arch']} | {r['data']} | {number(r.get('knn'))} | "
                         f"{number(r.get('linear'))} | {r.get('resolution', '-')} | {number(r.get('train_minutes'), 1)} |")
    return "\n".join(lines)


def baselines_markdown(rows: list[dict]) -> str:
    base = [r for r in rows if not r.get("stage")]
    if not base:
        return ""
    return ("Baselines: " + "; ".join(f"{r['model']}: kNN {number(r.get('knn'))}%, linear {number(r.get('linear'))}%"
                                      for r in base) + ".")


def curves(rows: list[dict]):
    """Every trained model's kNN monitor per epoch, as rows for a line plot."""
    import pandas as pd

    points = [dict(model=r["model"], epoch=epoch, knn=knn) for r in rows for epoch, knn in r.get("curve") or []
              if knn is not None]
    return pd.DataFrame(points, columns=["model", "epoch", "knn"])


def render() -> None:
    """The tab's content, inside a ``gr.Tab`` of the app."""
    rows = read()
    if not rows:
        gr.Markdown("No leaderboard yet. Compute it with `python -m bench.leaderboard` (or `make bench`): it "
                    "measures every model of the local zoo on Fashion-MNIST.")
    else:
        gr.Markdown(baselines_markdown(rows))
    for stage in sorted(STAGE_NAMES):
        gr.Markdown(stage_markdown(stage, rows))
    if any(r.get("curve") for r in rows):
        gr.LinePlot(curves(rows), x="epoch", y="knn", color="model", title="kNN monitor per epoch (training)",
                    y_title="kNN top-1 (%), monitor subset")
