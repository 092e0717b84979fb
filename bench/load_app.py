"""Load test of the search app: N concurrent HTTP clients for a fixed time on loopback.

    python -m bench.load_app                      # 8 clients, 30 s, the 10k Fashion-MNIST bank
    python -m bench.load_app --model NAME --seconds 5 --no-write

The app runs in its own process (as `make demo` serves it), so the clients' threads do not share
its interpreter lock. Each client sends Fashion-MNIST training images (not in the test-split bank)
to ``/search`` back to back; a request is an error if it raises or returns other than k results.
Latency is upload + queue + search + reply with the thumbnails' URLs (not their download).
Reports p50/p95 latency (queueing included: that is what a user waits) and writes the
"App load" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from PIL import Image

from .report import write_section

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query_images(count: int) -> list[str]:
    """``count`` Fashion-MNIST training images (not in the test-split bank) as PNG files."""
    from app import gallery

    folder = Path(tempfile.mkdtemp(prefix="load-app-"))
    data = gallery.fashion_mnist(train=True).data
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.fromarray(data[i].numpy()).save(path)
        paths.append(str(path))
    return paths


def search_once(http, url: str, image: str, model: str, k: int, session: str) -> list:
    """One search as a browser tab makes it, over a kept-alive connection and one session: upload the
    image, queue the ``/search`` event, read its result from the event stream. Returns the result rows."""
    with open(image, "rb") as file:
        (path,) = http.post(f"{url}gradio_api/upload", files={"files": file}).raise_for_status().json()
    query = {"path": path, "meta": {"_type": "gradio.FileData"}}
    body = {"data": [query, model, k], "session_hash": session}
    event = http.post(f"{url}gradio_api/call/search", json=body).raise_for_status().json()
    with http.stream("GET", f"{url}gradio_api/call/search/{event['event_id']}") as stream:
        kind = None
        for line in stream.raise_for_status().iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: ") and kind in ("complete", "error"):
                if kind == "error":
                    raise RuntimeError(f"the app answered with an error: {line[6:200]}")
                return json.loads(line[len("data: "):])[2]
    raise RuntimeError("the event stream ended without a result")


def hammer(url: str, model: str, k: int, images: list[str], clock: dict, latencies: list, errors: list,
           start: threading.Barrier) -> None:
    """One client: search back to back until ``clock["deadline"]``, recording each request's latency or error.

    A plain HTTP client with one connection, like a browser tab. (gradio_client builds a new TLS
    context for every upload, ~40 ms of CPU each, which on two cores measured the clients, not the app.)
    """
    import httpx

    session = uuid.uuid4().hex[:11]  # one per client, as the browser keeps one per tab
    with httpx.Client(timeout=60) as http:
        start.wait()  # the barrier's action has set the clock
        deadline = clock["deadline"]
        i = 0
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                rows = search_once(http, url, images[i % len(images)], model, k, session)
                if len(rows) != k:
                    raise RuntimeError(f"{len(rows)} results, {k} asked")
                latencies.append(time.perf_counter() - began)
            except Exception as error:  # any failure counts; the first few are printed
                errors.append(f"{type(error).__name__}: {error}")
            i += 1


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def serve(bank_path: Path, model: str, port: int) -> int:
    """The server process: the app over one bank, until killed."""
    from app import bank as banks
    from app import ui

    ui.launch(ui.build_ui([banks.load(bank_path, model=model)]), port=port, quiet=True)
    return 0


def start_server(bank_path: Path, model: str, port: int, timeout: float = 300) -> subprocess.Popen:
    """Start ``serve`` in a subprocess and wait until it answers HTTP."""
    import httpx

    command = [sys.executable, "-m", "bench.load_app", "--serve", "--bank", str(bank_path), "--model", model,
               "--port", str(port)]
    server = subprocess.Popen(command, cwd=ROOT)
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with status {server.returncode} before serving; see above")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.terminate()
    raise RuntimeError(f"the app did not answer on port {port} within {timeout:.0f} s")


def main(argv=None) -> int:
    from app import bank as banks
    from app import gallery

    parser = argparse.ArgumentParser(prog="python -m bench.load_app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="instdisc-resnet18-fmnist")
    parser.add_argument("--bank", type=Path, help="default: $ZOO_HOME/banks/<model>-fashion-mnist")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("-k", type=int, default=8)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # internal: the server process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    bank_path = args.bank or banks.default_path(args.model, gallery.FASHION_MNIST)
    if args.serve:
        return serve(bank_path, args.model, args.port)

    try:
        bank = banks.load(bank_path, model=args.model)
    except banks.BankError as error:  # missing or stale: (re)build it, as `make bench` needs no manual step
        print(f"{error}\nbuilding the bank of {args.model} at {bank_path}", flush=True)
        bank = banks.build(args.model, gallery.FASHION_MNIST)
        banks.save(bank, bank_path)
    port = free_port()
    server = start_server(bank_path, args.model, port)
    url, label = f"http://127.0.0.1:{port}/", Path(bank.model).name
    images = query_images(64)
    latencies, errors = [], []
    clock = {}

    def start_clock():  # run once, when every client is connected, before any is released
        clock["began"] = time.perf_counter()
        clock["deadline"] = clock["began"] + args.seconds

    start = threading.Barrier(args.clients + 1, action=start_clock)
    threads = [threading.Thread(target=hammer, args=(url, label, args.k, images, clock, latencies, errors, start),
                                daemon=True) for _ in range(args.clients)]
    print(f"{args.clients} clients, {args.seconds:.0f} s, {url}, bank of {len(bank.items)} ({bank.path})", flush=True)
    for thread in threads:
        thread.start()
    start.wait(timeout=120)
    for thread in threads:
        thread.join(args.seconds + 120)  # a request in flight at the deadline may finish late
    wall = time.perf_counter() - clock["began"]
    server.terminate()
    server.wait(30)
    if not latencies:
        print(f"error: no request succeeded; first errors: {errors[:3]}", file=sys.stderr)
        return 1
    ms = sorted(1000 * t for t in latencies)
    rows = {"clients": args.clients, "duration (s)": f"{wall:.1f}", "requests": len(ms), "errors": len(errors),
            "throughput (req/s)": f"{len(ms) / wall:.1f}", "p50 latency (ms)": f"{percentile(ms, 50):.0f}",
            "p95 latency (ms)": f"{percentile(ms, 95):.0f}", "max latency (ms)": f"{ms[-1]:.0f}"}
    table = "\n".join(f"| {key} | {value} |" for key, value in rows.items())
    text = (f"`python -m bench.load_app`: {args.clients} HTTP clients (one kept-alive connection each) send "
            f"Fashion-MNIST images to `/search` (k={args.k}) back to back for {args.seconds:.0f} s to the app in another process "
            f"on loopback; latency is upload + queueing + search + reply (thumbnail URLs, not their download). "
            f"Model `{bank.model}`, bank of {len(bank.items)} images, {os.cpu_count()} CPUs.\n\n"
            f"| measure | value |\n|---|---|\n{table}\n")
    print(text)
    for error in errors[:3]:
        print(f"error: {error}", file=sys.stderr)
    if not args.no_write:
        write_section("App load", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
