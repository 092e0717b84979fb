"""The Gradio app: upload or pick a query image, see its nearest gallery images under one model or all.

``build_ui(banks)`` returns the Blocks; :func:`launch` serves them on loopback with an upload limit.
Two API endpoints (for gradio_client): ``/search`` (query, model, k) and ``/compare`` (query, k).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import traceback
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage pings from a local demo
# Gradio rebuilds its queue-monitoring summary (a pandas frame of up to 10k past events) after every
# event by default: a cost that grows with traffic, for a page this app does not show
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
import gradio as gr  # noqa: E402
import torch  # noqa: E402

from . import gallery  # noqa: E402
from .bank import Bank
from .search import Searcher

MAX_FILE_SIZE = "10mb"
MAX_K = 50
EXAMPLES = 6  # example query images, one per label where the gallery has labels
CONCURRENCY = os.cpu_count() or 2  # batches served at once: one core each (see launch)
MAX_BATCH = 16  # concurrent searches answered by one forward pass


def _query_image() -> gr.Image:
    """An image upload whose file is decoded by the app, not by Gradio.

    gr.Image opens uploads with PIL before the handler runs, so a file that is not an image
    fails with a bare "Error"; this one hands the uploaded file's path over instead (Gradio has
    already checked it is an upload), and the handler answers with what is wrong. The override
    is per instance: a gr.Image subclass would make Gradio write a .pyi stub beside this file.
    """
    image = gr.Image(label="Query image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                     elem_id="query")
    image.preprocess = lambda payload: None if payload is None else str(payload.path)
    return image


def _labels(searchers: list[Searcher]) -> dict[str, Searcher]:
    """Dropdown label -> searcher: the model's name, with the gallery added where two banks share a model."""
    names, labels = [s.name for s in searchers], {}
    for searcher in searchers:
        label = searcher.name if names.count(searcher.name) == 1 else f"{searcher.name} ({searcher.bank.dataset})"
        labels[label if label not in labels else f"{label} #{len(labels) + 1}"] = searcher
    return labels


def _examples(bank: Bank) -> list[str]:
    """A few gallery images written to a temporary folder, for the Examples row."""
    folder = Path(tempfile.mkdtemp(prefix="zoo-app-examples-"))
    picked, seen = [], set()
    for item in bank.items:
        if item["label"] not in seen or not item["label"]:
            seen.add(item["label"])
            path = folder / f"{len(picked)}-{item['label'] or 'image'}.png"
            gallery.thumbnail(item).save(path)
            picked.append(str(path))
        if len(picked) == EXAMPLES:
            break
    return picked


def _open_query(path: str | None):
    """The query as a PIL image, or raise ValueError with what the user should do."""
    if not path:
        raise ValueError("Upload an image or pick an example first.")
    try:
        return gallery.open_image(path)
    except ValueError as error:
        raise ValueError(f"{error}. Fix: upload a PNG, JPEG, WebP, GIF, BMP or TIFF image.") from None


def _clamp(k) -> int:
    return max(1, min(int(k), MAX_K))


def _message(error: Exception) -> str:
    """What the user reads: our own ValueErrors are written for them; anything else is named and logged."""
    if isinstance(error, ValueError):
        return str(error)
    traceback.print_exception(error)
    return f"Could not search with this image ({type(error).__name__}). Try another image, or a PNG or JPEG copy."


class Thumbnails:
    """Thumbnail PNGs written once each, atomically, to a private temporary folder.

    Returning files rather than PIL images matters under load: Gradio rewrites a PIL output's
    cache file in place on every request, so a client fetching it meanwhile can read a torn file.
    """

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="zoo-app-thumbs-"))
        # served in place: Gradio neither checks nor hashes and copies a static file on every request
        gr.set_static_paths([self.folder])

    def __call__(self, item: dict) -> str:
        path = self.folder / (hashlib.sha1(f"{item['source']}:{item['ref']}".encode()).hexdigest()[:20] + ".png")
        if not path.exists():
            fd, staging = tempfile.mkstemp(dir=self.folder, suffix=".tmp")  # unique: requests race here
            with os.fdopen(fd, "wb") as file:
                gallery.thumbnail(item).save(file, format="PNG")
            os.replace(staging, path)
        return str(path)


def _as_gallery(hits: list[dict], thumbnails: Thumbnails) -> list[tuple]:
    return [(thumbnails(h["item"]), f"{h['item']['label'] or Path(str(h['item']['ref'])).name} · {h['score']:.3f}")
            for h in hits]


def _as_rows(hits: list[dict]) -> list[dict]:
    return [{"rank": r + 1, "score": round(h["score"], 4), "label": h["item"]["label"], "ref": h["item"]["ref"]}
            for r, h in enumerate(hits)]


def build_ui(banks: list[Bank] | list[Searcher]) -> gr.Blocks:
    """The app over ``banks`` (each is checked against its model: a stale bank raises StaleBankError)."""
    searchers = _labels([b if isinstance(b, Searcher) else Searcher(b) for b in banks])
    if not searchers:
        raise ValueError("no bank to search. Fix: build one with `python -m app.bank build --model NAME`.")
    labels = list(searchers)
    thumbnails = Thumbnails()

    def search(paths, labels_asked, ks):
        """Batched by Gradio: concurrent requests arrive together and share one forward pass per model.
        Each request gets its own answer or its own error message."""
        answers, queries = [None] * len(paths), {}
        for i, (path, label, k) in enumerate(zip(paths, labels_asked, ks)):
            try:
                if label not in searchers:
                    raise ValueError(f"Unknown model {label!r}; choose one of: {', '.join(labels)}.")
                queries.setdefault(label, []).append((i, _open_query(path), _clamp(k)))
            except Exception as error:  # whatever the upload, the user gets a message, not a stack trace
                answers[i] = ([], f"**Error:** {_message(error)}", [])
        for label, asked in queries.items():
            try:
                found = searchers[label].search_many([image for _, image, _ in asked], [k for _, _, k in asked])
            except Exception as error:
                for i, _, _ in asked:
                    answers[i] = ([], f"**Error:** {_message(error)}", [])
                continue
            for (i, _, _), hits in zip(asked, found):
                note = f"Top {len(hits)} of {len(searchers[label].bank.items)} gallery images under **{label}**."
                answers[i] = (_as_gallery(hits, thumbnails), note, _as_rows(hits))
        return tuple(map(list, zip(*answers)))

    def compare(path, k):
        try:
            image = _open_query(path)
            hits = [s.search(image, _clamp(k)) for s in searchers.values()]
        except Exception as error:
            message = _message(error)
            gr.Warning(message)
            return [f"**Error:** {message}", gr.Tabs(selected="compare")] + [[] for _ in searchers]
        note = f"Top {_clamp(k)} under each of the {len(searchers)} models with a bank, one row per model."
        return [note, gr.Tabs(selected="compare")] + [_as_gallery(h, thumbnails) for h in hits]

    with gr.Blocks(title="Contrastive zoo: image search", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Contrastive zoo: image search\nFind the gallery images closest to a query, "
                    "by cosine similarity of self-supervised features.")
        with gr.Row():
            with gr.Column(scale=1):
                query = _query_image()
                examples = _examples(next(iter(searchers.values())).bank)
                if examples:
                    gr.Examples([[p] for p in examples], inputs=[query], label="Example queries")
                model = gr.Dropdown(labels, value=labels[0], label="Model (each has a feature bank)")
                k = gr.Slider(1, MAX_K, value=8, step=1, label="k (results)")
                with gr.Row():
                    go = gr.Button("Search", variant="primary", elem_id="search")
                    both = gr.Button("Compare all models", elem_id="compare")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                with gr.Tabs() as tabs:
                    with gr.Tab("Results", id="results"):
                        results = gr.Gallery(label="Nearest gallery images", columns=4, elem_id="results")
                        with gr.Accordion("As data", open=False):
                            rows = gr.JSON(label="hits")
                    with gr.Tab("Side by side", id="compare"):
                        rows_per_model = [gr.Gallery(label=label, columns=6, height="auto")
                                          for label in labels]
        searched = go.click(search, [query, model, k], [results, status, rows], api_name="search",
                            batch=True, max_batch_size=MAX_BATCH, concurrency_limit=CONCURRENCY)
        searched.then(lambda: gr.Tabs(selected="results"), None, tabs, api_name=False, queue=False)
        both.click(compare, [query, k], [status, tabs, *rows_per_model], api_name="compare",
                   concurrency_limit=CONCURRENCY)
        query.upload(lambda: "", None, status, api_name=False)  # a new query clears the last message
    return demo


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None, **kwargs):
    """Serve on ``host`` (default ``$APP_HOST`` or 127.0.0.1) with uploads capped at ``MAX_FILE_SIZE``."""
    host = host or os.environ.get("APP_HOST", "127.0.0.1")
    port = port or int(os.environ.get("APP_PORT", 7860))
    # A query is one small image: torch's intra-op threads only add sync overhead there (and stall badly
    # on a busy machine), so each request gets one thread and concurrent requests spread over the cores.
    torch.set_num_threads(int(os.environ.get("APP_TORCH_THREADS", 1)))
    return demo.launch(server_name=host, server_port=port, max_file_size=MAX_FILE_SIZE, show_error=True, **kwargs)
