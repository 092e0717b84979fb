"""The Gradio app: upload or pick a query image, see its nearest gallery images under one model or all.

``build_ui(banks)`` returns the Blocks; :func:`launch` serves them. Two API endpoints (for
gradio_client): ``/search`` (query, model, k) and ``/compare`` (query, k).

What is served, and to whom (environment variables are read by :func:`launch`):

- ``APP_HOST`` (default 127.0.0.1) and ``APP_PORT`` (default 7860): where it listens. Never a public
  share link: ``share`` is pinned off whatever ``GRADIO_SHARE`` says or a notebook would choose.
- Host rule: a request is answered only if its Host header names ``APP_HOST``, localhost, 127.0.0.1
  or ::1 (any port), else HTTP 400; and a request sent by a page (an Origin header) only if that page
  comes from one of those names, else HTTP 403. This stops a DNS-rebinding page (its own name
  resolving to 127.0.0.1) or any other site from driving the app through a visitor's browser. To
  serve other machines, set ``APP_HOST`` to the address or name they use.
- ``APP_USER`` and ``APP_PASSWORD``: set both to require a login (Gradio's auth, for the page and
  the API); set neither for none. One without the other is refused at launch.
- Queue bound (``MAX_QUEUE``): at most 4 full batches per worker wait; beyond that a client is told
  at once that the app is busy and to retry (HTTP 503; the page says "currently busy, please try
  again", gradio_client raises QueueError), rather than waiting minutes for an answer.
- Inputs: the query must be a file uploaded to this app (or one of its examples). An image URL is
  refused, never fetched; so is a server path nobody uploaded. Uploads over ``MAX_FILE_SIZE`` are
  refused. Clients see only messages written for them (Gradio's show_error is off) and gallery
  files by their path inside the gallery folder, never a server path.
- Thumbnails and example images live in one private temporary folder, recreated if a tmp cleaner
  removes it, and removed when the server stops or the process exits.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import traceback
import weakref
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage pings from a local demo
# Gradio rebuilds its queue-monitoring summary (a pandas frame of up to 10k past events) after every
# event by default: a cost that grows with traffic, for a page this app does not show
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
import gradio as gr  # noqa: E402
import torch  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402
from starlette.datastructures import Headers  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402

from . import gallery, lineage  # noqa: E402
from .bank import Bank  # noqa: E402
from .search import Searcher  # noqa: E402


def usable_cpus() -> int:
    """The CPUs this process may run on: a container or taskset may grant fewer than the machine has."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 2


MAX_FILE_SIZE = "10mb"
MAX_K = 50
EXAMPLES = 6  # example query images, one per label where the gallery has labels
CONCURRENCY = usable_cpus()  # batches served at once: one core each (see launch)
MAX_BATCH = 16  # concurrent searches answered by one forward pass
# Decoded pixels one batch may cost: two images at gallery.MAX_PIXELS, about 4 s of decoding on a busy core
BATCH_PIXELS = 2 * gallery.MAX_PIXELS
# Searches waiting beyond those being answered: 4 full batches per worker. At the measured 48 searches/s
# on 2 CPUs (BENCHMARKS.md) the last in line waits about 3 s; a longer line only makes every answer late.
MAX_QUEUE = 4 * CONCURRENCY * MAX_BATCH
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class InputRefused(ValueError):
    """A query the app will not open (a URL, or a server file nobody uploaded); the message is for the user."""


def _refusal(payload) -> str | None:
    """Why the query ``payload`` (Gradio's FileData as sent by the client) is refused, or None to go on."""
    path = payload.get("path") if isinstance(payload, dict) else payload
    if not isinstance(path, str) or not path:
        return None  # no query, or not a file at all: the handler or Gradio's validation answers
    if "://" in path:
        return "Image URLs are not fetched by this app. Fix: download the image and upload the file."
    try:
        uploaded = Path(path).resolve().is_relative_to(Path(get_upload_folder()).resolve())
    except (OSError, ValueError):  # a NUL byte, a loop of links: no upload looks like that
        uploaded = False
    if not uploaded:
        return ("This image was not uploaded to the app, so it is not read. Fix: upload the file "
                "(the page does it for you; with gradio_client, pass handle_file(PATH)).")
    return None


def _screen_query(demo: gr.Blocks, query: gr.Image) -> None:
    """Check the query's payload before Gradio acts on it: Gradio would download a URL (and refuse a stray
    path with a message naming server paths, for the whole batch). A refused query reaches the handler as an
    InputRefused in place of its path, so within a batch only that request gets the message."""
    preprocess = demo.preprocess_data

    async def screened(block_fn, inputs, *args, **kwargs):
        refused = {i: _refusal(value) for i, (block, value) in enumerate(zip(block_fn.inputs, inputs))
                   if block is query}
        refused = {i: reason for i, reason in refused.items() if reason}
        processed = await preprocess(block_fn, [None if i in refused else v for i, v in enumerate(inputs)],
                                     *args, **kwargs)
        for i, reason in refused.items():
            processed[i] = InputRefused(reason)
        return processed

    demo.preprocess_data = screened


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


def _examples(bank: Bank, folder: Path) -> list[str]:
    """A few gallery images written to ``folder``, for the Examples row (Gradio copies them to its cache)."""
    folder.mkdir(parents=True, exist_ok=True)
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


def _open_query(path):
    """The query as a PIL image, or raise ValueError with what the user should do."""
    if isinstance(path, InputRefused):
        raise path
    if not path:
        raise ValueError("Upload an image or pick an example first.")
    try:
        return gallery.open_image(path)
    except ValueError as error:
        fix = "" if "Fix:" in str(error) else " Fix: upload a PNG, JPEG, WebP, GIF, BMP or TIFF image."
        raise ValueError(f"{error}.{fix}") from None


def _admitted(paths: list) -> set[int]:
    """The queries of a batch to decode: smallest first, while their pixels fit in ``BATCH_PIXELS``.

    One batch answers all its requests together, so a batch of bombs would keep the small queries
    beside it waiting for every decode; past the budget the large ones are told to retry instead."""
    cost = {i: gallery.claimed_pixels(p) if isinstance(p, str) and p else 0 for i, p in enumerate(paths)}
    admitted, spent = set(), 0
    for i in sorted(cost, key=cost.get):
        if spent + cost[i] > BATCH_PIXELS and admitted:
            break
        admitted.add(i)
        spent += cost[i]
    return admitted


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

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        # served in place: Gradio neither checks nor hashes and copies a static file on every request
        gr.set_static_paths([self.folder])

    def __call__(self, item: dict) -> str:
        path = self.folder / (hashlib.sha1(f"{item['source']}:{item['ref']}".encode()).hexdigest()[:20] + ".png")
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)  # a tmp cleaner may have removed it since
            fd, staging = tempfile.mkstemp(dir=self.folder, suffix=".tmp")  # unique: requests race here
            with os.fdopen(fd, "wb") as file:
                gallery.thumbnail(item).save(file, format="PNG")
            os.replace(staging, path)
        return str(path)


def _shown_ref(item: dict, bank: Bank):
    """What a client sees of a gallery item: its path inside the gallery folder (never the server's), or its index."""
    if item["source"] != "file":
        return item["ref"]
    path = Path(str(item["ref"]))
    root = bank.meta["gallery"].get("root")
    return path.relative_to(root).as_posix() if root and path.is_relative_to(root) else path.name


def _as_gallery(hits: list[dict], thumbnails: Thumbnails) -> list[tuple]:
    return [(thumbnails(h["item"]), f"{h['item']['label'] or Path(str(h['item']['ref'])).name} · {h['score']:.3f}")
            for h in hits]


def _as_rows(hits: list[dict], bank: Bank) -> list[dict]:
    return [{"rank": r + 1, "score": round(h["score"], 4), "label": h["item"]["label"],
             "ref": _shown_ref(h["item"], bank)} for r, h in enumerate(hits)]


def build_ui(banks: list[Bank] | list[Searcher]) -> gr.Blocks:
    """The app over ``banks`` (each is checked against its model: a stale bank raises StaleBankError).

    Its thumbnails and examples go to ``demo.temp_folder``, removed when the app is dropped or the
    process exits, and by :func:`launch` when the server stops."""
    searchers = _labels([b if isinstance(b, Searcher) else Searcher(b) for b in banks])
    if not searchers:
        raise ValueError("no bank to search. Fix: build one with `python -m app.bank build --model NAME`.")
    labels = list(searchers)
    temp_folder = Path(tempfile.mkdtemp(prefix="zoo-app-"))
    thumbnails = Thumbnails(temp_folder / "thumbnails")

    def search(paths, labels_asked, ks):
        """Batched by Gradio: concurrent requests arrive together and share one forward pass per model.
        Each request gets its own answer or its own error message."""
        answers, queries = [None] * len(paths), {}
        admitted = _admitted(paths)
        for i, (path, label, k) in enumerate(zip(paths, labels_asked, ks)):
            try:
                if label not in searchers:
                    raise ValueError(f"Unknown model {label!r}; choose one of: {', '.join(labels)}.")
                if i not in admitted:
                    raise ValueError("Too many large images are being searched at once. Fix: retry in a moment, "
                                     "or send a smaller image.")
                queries.setdefault(label, []).append((i, _open_query(path), _clamp(k)))
            except Exception as error:  # whatever the upload, the user gets a message, not a stack trace
                answers[i] = ([], f"**Error:** {_message(error)}", [])
        for label, asked in queries.items():
            bank = searchers[label].bank
            try:
                found = searchers[label].search_many([image for _, image, _ in asked], [k for _, _, k in asked])
                shown = [(_as_gallery(hits, thumbnails), _as_rows(hits, bank)) for hits in found]
            except Exception as error:
                for i, _, _ in asked:
                    answers[i] = ([], f"**Error:** {_message(error)}", [])
                continue
            for (i, _, _), (images, rows) in zip(asked, shown):
                note = f"Top {len(rows)} of {len(bank.items)} gallery images under **{label}**."
                answers[i] = (images, note, rows)
        return tuple(map(list, zip(*answers)))

    def compare(path, k):
        try:
            image = _open_query(path)
            hits = [s.search(image, _clamp(k)) for s in searchers.values()]
            shown = [_as_gallery(h, thumbnails) for h in hits]
        except Exception as error:
            message = _message(error)
            gr.Warning(message)
            return [f"**Error:** {message}", gr.Tabs(selected="compare")] + [[] for _ in searchers]
        note = f"Top {_clamp(k)} under each of the {len(searchers)} models with a bank, one row per model."
        return [note, gr.Tabs(selected="compare")] + shown

    with gr.Blocks(title="Contrastive zoo: image search", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Contrastive zoo: image search\nFind the gallery images closest to a query, "
                    "by cosine similarity of self-supervised features.")
        with gr.Tabs():
            with gr.Tab("Search", id="search-tab"):
                with gr.Row():
                    with gr.Column(scale=1):
                        query = _query_image()
                        examples = _examples(next(iter(searchers.values())).bank, temp_folder / "examples")
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
            with gr.Tab("Lineage", id="lineage"):
                lineage.render()
        searched = go.click(search, [query, model, k], [results, status, rows], api_name="search",
                            batch=True, max_batch_size=MAX_BATCH, concurrency_limit=CONCURRENCY)
        searched.then(lambda: gr.Tabs(selected="results"), None, tabs, api_name=False, queue=False)
        both.click(compare, [query, k], [status, tabs, *rows_per_model], api_name="compare",
                   concurrency_limit=CONCURRENCY)
        query.upload(lambda: "", None, status, api_name=False)  # a new query clears the last message
    _screen_query(demo, query)
    demo.queue(max_size=MAX_QUEUE)
    demo.temp_folder = temp_folder
    weakref.finalize(demo, shutil.rmtree, temp_folder, ignore_errors=True)
    return demo


def _hostname(value: str | None) -> str | None:
    """The host name of a Host header or an Origin ("[::1]:7860" -> "::1"), lower case; None if there is none."""
    if not value:
        return None
    try:
        return urlsplit(value if "://" in value else f"//{value}").hostname
    except ValueError:  # "[::1" and the like
        return None


class HostGuard:
    """ASGI middleware: answer only requests addressed to one of ``hosts``, and sent by no page or by a page of them.

    A DNS-rebinding page reaches a loopback server under its own name (Host: evil.example); any other
    site can make a visitor's browser post to it (Origin: https://evil.example). Gradio's CORS layer
    trusts a request's Host, so it would echo such an Origin with credentials: this guard stands in
    front of it."""

    def __init__(self, app, hosts: frozenset[str]):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            refused = self.refusal(Headers(scope=scope))
            if refused:
                await PlainTextResponse(refused[1], status_code=refused[0])(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: Headers) -> tuple[int, str] | None:
        names = " or ".join(sorted(self.hosts))
        if _hostname(headers.get("host")) not in self.hosts:
            return 400, (f"Host {headers.get('host', '(none)')!r} is not served here. "
                         f"Fix: open the app as {names}, or start it with APP_HOST set to the name you use.")
        origin = headers.get("origin")
        if origin is not None and _hostname(origin) not in self.hosts:
            return 403, (f"Requests from pages of {origin!r} are refused. Fix: use the app's own page "
                         f"({names}), or gradio_client.")
        return None


def _auth() -> tuple[str, str] | None:
    """The login asked of every client: ($APP_USER, $APP_PASSWORD), both or neither."""
    user, password = os.environ.get("APP_USER"), os.environ.get("APP_PASSWORD")
    if bool(user) != bool(password):
        have, missing = ("APP_USER", "APP_PASSWORD") if user else ("APP_PASSWORD", "APP_USER")
        raise ValueError(f"{have} is set but {missing} is not. Fix: set both to require a login, or neither.")
    return (user, password) if user else None


def _lifespan(demo: gr.Blocks, hosts: frozenset[str]):
    """The served app's lifetime: the host guard in front of every request, the temp folder removed at the end.

    The guard cannot be passed as middleware: Gradio adds its CORS layer outside those, where it would
    answer preflights and echo a foreign Origin before the guard is asked. Starlette builds its stack on
    its first call, which is this lifespan's, and no request is served before the lifespan has started."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.middleware_stack = HostGuard(app.middleware_stack, hosts)
        yield
        shutil.rmtree(demo.temp_folder, ignore_errors=True)

    return lifespan


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None, **kwargs):
    """Serve the app of :func:`build_ui` on ``host`` (default ``$APP_HOST`` or 127.0.0.1); see the module
    docstring for the rules (hosts, login, queue, uploads). ``kwargs`` go to Gradio's launch."""
    host = host or os.environ.get("APP_HOST", "127.0.0.1")
    port = port or int(os.environ.get("APP_PORT", 7860))
    hosts = LOCAL_HOSTS | {host.strip("[]").lower()}
    # A query is one small image: torch's intra-op threads only add sync overhead there (and stall badly
    # on a busy machine), so each request gets one thread and concurrent requests spread over the cores.
    torch.set_num_threads(int(os.environ.get("APP_TORCH_THREADS", 1)))
    # share and ssr_mode pinned off: Gradio turns them on from the environment (GRADIO_SHARE, GRADIO_SSR_MODE)
    # or in notebooks, and either would serve the app from outside the guard.
    return demo.launch(server_name=host, server_port=port, max_file_size=MAX_FILE_SIZE, show_error=False,
                       share=False, ssr_mode=False, auth=_auth(), app_kwargs={"lifespan": _lifespan(demo, hosts)},
                       **kwargs)
