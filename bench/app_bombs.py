"""Decompression bombs against the search app: its peak memory, and what they cost innocent searches.

    python -m bench.app_bombs                    # 32 bombs + 4 innocent searches at once
    python -m bench.app_bombs --bombs 16 --no-write

A bomb is a mostly flat RGBA PNG of about 200 kB that decodes to the most pixels the app accepts
(``gallery.MAX_PIXELS``: 7071 x 7071, 200 MB). The app runs in its own process, as in
``bench.load_app`` (whose helpers start it and speak HTTP to it like a browser), over the published
model's Fashion-MNIST bank, or a tiny random model's bank of 1,000 images when that model is absent.
Three rounds: warm-up, a control burst of as many innocent searches as there will be bombs (what
Gradio's uploads and batching cost alone), then the bombs with the innocent searches sent at the
same moment. Peak RSS is the app process's VmHWM, reset before each round (and the largest sum of
VmRSS over its process tree, sampled every 10 ms, should it have children). Writes the "App bombs"
section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from PIL import Image, ImageDraw

from .load_app import free_port, percentile, query_images, search_once, start_server
from .report import write_section

GOAL_MB = 1500


def make_bomb(folder: Path) -> Path:
    """The largest PNG the app decodes, nearly one colour: zlib shrinks it about a thousandfold."""
    from app import gallery

    side = math.isqrt(gallery.MAX_PIXELS)
    image = Image.new("RGBA", (side, side), (200, 120, 40, 255))
    ImageDraw.Draw(image).ellipse((side // 4, side // 4, 3 * side // 4, 3 * side // 4), fill=(20, 60, 200, 255))
    path = folder / "bomb.png"
    image.save(path, compress_level=9)
    return path


def bank_to_search(model: str) -> tuple[Path, str, int]:
    """(bank folder, model name, bank size): the published model's Fashion-MNIST bank, built if missing or stale;
    else a tiny random timm model and its bank of 1,000 images, in a temporary ``$ZOO_HOME``."""
    import zoo
    from app import bank as banks
    from app import gallery

    try:
        zoo.resolve(model, download=False)
    except zoo.ZooError:
        import timm
        import torch

        import zoo.checkpoint

        os.environ["ZOO_HOME"] = tempfile.mkdtemp(prefix="app-bombs-zoo-")  # the app's process inherits it
        model = "tiny-test-resnet"
        torch.manual_seed(0)
        zoo.checkpoint.save(timm.create_model("test_resnet", num_classes=0), zoo.zoo_home() / model,
                            data_config=dict(input_size=(3, 32, 32), mean=(0.286,) * 3, std=(0.353,) * 3,
                                             crop_pct=1.0, interpolation="bilinear"), card="# benchmark stand-in")
    path = banks.default_path(model, gallery.FASHION_MNIST)
    try:
        bank = banks.load(path, model=model)
    except banks.BankError:
        bank = banks.build(model, gallery.FASHION_MNIST, limit=0 if model != "tiny-test-resnet" else 1000)
        banks.save(bank, path)
    return path, model, len(bank.items)


def _status(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` figure in MB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        for task in Path(f"/proc/{found[-1]}/task").glob("*"):
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


class PeakRSS:
    """The app's peak memory during a round: VmHWM after resetting it, and a 10 ms sampler of the tree's VmRSS."""

    def __init__(self, pid: int):
        self.pid, self.sampled, self.running, self.hwm = pid, 0, True, True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while self.running:
            self.sampled = max(self.sampled, sum(_status(p, "VmRSS") for p in _tree(self.pid)))
            time.sleep(0.01)

    def reset(self) -> None:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # Linux: VmHWM starts again from VmRSS
        except OSError:
            self.hwm = False  # not allowed here: the sampler alone tells the peak
        self.sampled = 0

    def peak(self) -> int:
        return max(_status(self.pid, "VmHWM") if self.hwm else 0, self.sampled)

    def now(self) -> int:
        return sum(_status(p, "VmRSS") for p in _tree(self.pid))


def burst(url: str, model: str, k: int, uploads: list[str]) -> list[tuple[float, object]]:
    """Every upload searched at once, one browser-like client each: (seconds, result rows or the error)."""
    import httpx

    out = [None] * len(uploads)
    start = threading.Barrier(len(uploads))

    def client(i):
        with httpx.Client(timeout=600) as http:
            start.wait()
            began = time.perf_counter()
            try:
                answer = search_once(http, url, uploads[i], model, k, uuid.uuid4().hex[:11])
            except Exception as error:  # an error is an answer too: it is what the user would see
                answer = f"{type(error).__name__}: {error}"
            out[i] = (time.perf_counter() - began, answer)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(uploads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def describe(answers: list[tuple[float, object]]) -> str:
    """How a group of requests was answered, e.g. ``32 with 8 results``."""
    kinds = {}
    for _, answer in answers:
        kind = f"with {len(answer)} results" if isinstance(answer, list) else f"error ({str(answer)[:120]})"
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{count} {kind}" for kind, count in kinds.items())


def seconds(answers: list[tuple[float, object]]) -> str:
    times = [t for t, _ in answers]
    return f"{percentile(times, 50):.1f} / {max(times):.1f}"


def rounds(server, url: str, model: str, k: int, bomb: Path, bombs: int, innocent: int) -> dict:
    """Warm-up, the control burst, the bombs with innocent searches, and what is held after: the table's rows."""
    innocents = query_images(max(bombs, innocent))
    rss = PeakRSS(server.pid)
    warm = burst(url, model, k, innocents[:2])
    idle, files = rss.now(), _status(server.pid, "RssFile")
    rss.reset()
    control = burst(url, model, k, innocents[:bombs])
    control_peak = rss.peak()
    rss.reset()
    began = time.perf_counter()
    mixed = burst(url, model, k, [str(bomb)] * bombs + innocents[:innocent])
    wall = time.perf_counter() - began
    bombs_peak = rss.peak()
    time.sleep(5)
    after = rss.now()
    rss.running = False
    return {"app idle after warm-up (MB RSS)": idle,
            "of which mapped files (MB: torch's CPU and CUDA libraries, shared)": files,
            f"peak, {bombs} innocent searches at once (MB)": control_peak,
            f"peak, {bombs} bombs + {innocent} innocent searches at once (MB)": bombs_peak,
            "held 5 s after the bombs (MB RSS)": after,
            "bombs answered": describe(mixed[:bombs]),
            "bombs' latency p50 / max (s)": seconds(mixed[:bombs]),
            "innocent searches answered": describe(mixed[bombs:] + control + warm),
            "innocent latency beside the bombs p50 / max (s)": seconds(mixed[bombs:]),
            "innocent latency, control burst p50 / max (s)": seconds(control),
            "wall time of the bomb round (s)": f"{wall:.1f}"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.app_bombs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="instdisc-resnet18-fmnist")
    parser.add_argument("--bombs", type=int, default=32)
    parser.add_argument("--innocent", type=int, default=4)
    parser.add_argument("-k", type=int, default=8)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    bank_path, model, bank_size = bank_to_search(args.model)
    bomb = make_bomb(Path(tempfile.mkdtemp(prefix="app-bombs-")))
    with Image.open(bomb) as image:
        side = image.width
    port = free_port()
    server = start_server(bank_path, model, port)
    try:
        rows = rounds(server, f"http://127.0.0.1:{port}/", model, args.k, bomb, args.bombs, args.innocent)
    finally:
        server.terminate()
        server.wait(30)
    peak = rows[f"peak, {args.bombs} bombs + {args.innocent} innocent searches at once (MB)"]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows.items())
    text = (f"`python -m bench.app_bombs`: {args.bombs} concurrent uploads of a {bomb.stat().st_size // 1000} kB "
            f"PNG that decodes to {side} x {side} RGBA ({side * side * 4 // 10**6} MB), sent to `/search` "
            f"(k={args.k}) at the same moment as {args.innocent} innocent Fashion-MNIST searches, to the app in "
            f"another process on loopback (model `{model}`, bank of {bank_size} images). Peak RSS is the app "
            "process's VmHWM over the round. "
            f"Goal: peak under {GOAL_MB} MB. {os.cpu_count()} CPUs.\n\n"
            f"| measure | value |\n|---|---|\n{table}\n")
    print(text)
    if peak >= GOAL_MB:
        print(f"goal missed: peak {peak} MB, goal under {GOAL_MB} MB", file=sys.stderr)
    if not args.no_write:
        write_section("App bombs", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
