"""Bad inputs tried against the zoo and the app, and what each got: the "Bad inputs" section of BENCHMARKS.md.

    python -m bench.bad_inputs

Every row is tried now, in a scratch $ZOO_HOME, with a tiny random model: crafted checkpoints,
output folders that belong to a user, hostile images, damaged banks and models, and hostile
HTTP clients of the served app. The table is what the code answered, never typed in.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .report import write_section


DATA = dict(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0, interpolation="bilinear")


class RunsCommand:
    """Unpickles as ``function(command)``: what a malicious checkpoint carries."""

    def __init__(self, function, command):
        self.function, self.command = function, command

    def __reduce__(self):
        return self.function, (self.command,)


def dotted_global(pickler, obj):
    """The global (module "torch", name "serialization.os.system"), which protocol 4 resolves to os.system."""
    pickler.save("torch")
    pickler.save("serialization.os.system")
    pickler.write(pickle.STACK_GLOBAL)


class Dotted:
    pass


class DottedPickler(pickle._Pickler):
    dispatch = {**pickle._Pickler.dispatch, Dotted: dotted_global}


class dotted_pickle:  # the pickle_module interface of torch.save
    Pickler = DottedPickler

    @staticmethod
    def dump(obj, file, protocol):
        DottedPickler(file, protocol).dump(obj)


def outcome(action) -> str:
    """What ``action()`` got: its own text, or the first sentence of the error it raised."""
    try:
        return action() or "accepted"
    except Exception as error:  # the point is to record what each bad input gets
        text = str(error).split(". Fix")[0].replace("\n", " ")
        return f"refused ({type(error).__name__}): {text[:150]}"


def checkpoints(tmp: Path) -> list[tuple[str, str]]:
    from zoo.convert import convert

    rows = []
    for fmt in ("zip", "legacy"):
        for name, payload in (("posix.system", None), ("torch / serialization.os.system", "dotted")):
            marker = tmp / f"ran-{fmt}-{payload}"
            src = tmp / f"crafted-{fmt}-{payload}.pth.tar"
            obj = {"state_dict": RunsCommand(os.system, f"touch {marker}")}
            kwargs = {"_use_new_zipfile_serialization": fmt == "zip"}
            if payload:
                obj = {"state_dict": {"x": torch.zeros(1)}, "hook": Dotted()}
                kwargs["pickle_module"] = dotted_pickle
            torch.save(obj, src, **kwargs)
            got = outcome(lambda: convert("instdisc-r50", src, tmp / "out"))
            rows.append((f"checkpoint ({fmt} format) calling `{name}`",
                         f"{got}; command ran: {'YES' if marker.exists() else 'no'}"))
    return rows


def folders(tmp: Path) -> list[tuple[str, str]]:
    import timm

    from app import bank as banks
    from zoo import checkpoint

    photos = tmp / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "holiday.png")
    (photos / "letter.txt").write_text("dear ...")
    bank = banks.build("tiny", str(make_gallery(tmp / "gallery")), progress=False)
    rows = [("`app.bank build --out` a folder of photos and a document", outcome(lambda: banks.save(bank, photos))),
            ("`zoo convert --out` / a training export into the same folder",
             outcome(lambda: checkpoint.save(timm.create_model("test_resnet", num_classes=0), photos,
                                             data_config=DATA, card="")))]
    left = sorted(p.name for p in photos.iterdir())
    rows.append(("the folder afterwards", f"holds {', '.join(left)}"))
    return rows


def images(tmp: Path) -> list[tuple[str, str]]:
    from app import gallery

    def png(name, image):
        image.save(tmp / name)
        return tmp / name

    bomb = png("bomb.png", Image.new("RGBA", (7071, 7071), (200, 30, 30, 255)))
    wide = png("wide.png", Image.new("1", (20_000, 5_000)))
    sixteen = png("grey16.png", Image.fromarray(np.full((40, 40), 32768, dtype=np.uint16)))
    truncated = tmp / "cut.png"
    truncated.write_bytes(bomb.read_bytes()[:2000])
    text = tmp / "notes.png"
    text.write_text("not a picture")
    rotated = tmp / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    Image.new("RGB", (60, 20)).save(rotated, exif=exif)

    def opened(path, note=lambda image: ""):
        image = gallery.open_image(path)
        return f"accepted as {image.size[0]} x {image.size[1]} {image.mode}{note(image)}"

    return [
        (f"PNG bomb, {bomb.stat().st_size // 1000} kB, 7071 x 7071 RGBA (200 MB decoded)", outcome(lambda: opened(bomb))),
        (f"PNG claiming 20000 x 5000 pixels, {wide.stat().st_size // 1000} kB", outcome(lambda: opened(wide))),
        ("PNG cut after 2 kB", outcome(lambda: opened(truncated))),
        ("a text file named .png", outcome(lambda: opened(text))),
        ("16-bit PNG at mid-grey", outcome(lambda: opened(sixteen, lambda i: f", grey level {i.getpixel((0, 0))[0]}"))),
        ("JPEG 60 x 20 with EXIF orientation 6", outcome(lambda: opened(rotated))),
    ]


def damaged(tmp: Path) -> list[tuple[str, str]]:
    import safetensors.torch

    import zoo
    from app import bank as banks
    from app.search import Searcher

    gallery_folder = make_gallery(tmp / "gallery2", per_label=30)

    def fresh(name, index="exact"):
        make_model(name)
        return banks.save(banks.build(name, str(gallery_folder), progress=False, index=index), tmp / f"bank-{name}")

    def edit_config(name, **changes):
        path = zoo.resolve(name) / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    rows = []
    path = fresh("nan")
    features = banks.load(path).features.clone()
    features[0] = float("nan")
    safetensors.torch.save_file({"features": features}, path / banks.FEATURES)
    rows.append(("bank with a NaN feature row", outcome(lambda: banks.load(path) and None)))
    path = fresh("wide")
    safetensors.torch.save_file({"features": torch.ones(len(banks.load(path).items), 3)}, path / banks.FEATURES)
    rows.append(("bank with features of the wrong width", outcome(lambda: banks.load(path) and None)))
    path = fresh("faiss", index="hnsw")
    (path / "index.faiss").write_bytes(b"garbage" * 50)
    rows.append(("bank with a garbage index.faiss", outcome(lambda: banks.load(path) and None)))
    path = fresh("args")
    edit_config("args", model_args={"global_pool": "max"})
    rows.append(("model's config.json changed (`global_pool: max`) after the bank",
                 outcome(lambda: Searcher(banks.load(path)) and None)))
    path = fresh("cut")
    weights = zoo.resolve("cut") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    rows.append(("model.safetensors truncated", outcome(lambda: Searcher(banks.load(path)) and None)))
    path = fresh("arch")
    edit_config("arch", architecture="resnet_that_does_not_exist")
    rows.append(("config.json naming an unknown architecture", outcome(lambda: Searcher(banks.load(path)) and None)))
    return rows


def served(tmp: Path) -> list[tuple[str, str]]:
    import httpx

    from app import bank as banks
    from app import ui

    from .load_app import free_port

    app = ui.build_ui([banks.load(tmp / "bank-args-ok")])
    port = free_port()
    ui.launch(app, port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    rows = []
    try:
        reply = httpx.get(url, headers={"Host": "evil.example"})
        rows.append(("request with `Host: evil.example` (DNS rebinding)", f"HTTP {reply.status_code}"))
        reply = httpx.get(f"{url}config", headers={"Origin": "https://evil.example"})
        rows.append(("request from a page of `https://evil.example`",
                     f"HTTP {reply.status_code}, CORS echo: {reply.headers.get('access-control-allow-origin')}"))
        hits = []
        listener = local_server(hits)
        body = {"data": [{"path": f"http://127.0.0.1:{listener.server_port}/x.png",
                          "meta": {"_type": "gradio.FileData"}}, "tiny", 3]}
        rows.append(("query given as an image URL", answer(url, body) + f"; URL fetched: {'YES' if hits else 'no'}"))
        listener.shutdown()
        body = {"data": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "tiny", 3]}
        rows.append(("query given as a server path nobody uploaded", answer(url, body)))
        (search,) = [i for i, fn in app.fns.items() if fn.api_name == "search"]
        rows.append(("1000 queue joins at once", flood(url, search)))
    finally:
        app.close()
    return rows


def answer(url: str, body: dict) -> str:
    import httpx

    event = httpx.post(f"{url}gradio_api/call/search", json=body).json()["event_id"]
    text = httpx.get(f"{url}gradio_api/call/search/{event}", timeout=60).text
    refused = [line for line in text.splitlines() if "Error" in line or "event: error" in line]
    return "refused: " + refused[-1][:140] if refused else "answered: " + text[-140:]


def flood(url: str, fn_index: int) -> str:
    import httpx

    body = {"data": [None, "tiny", 3], "fn_index": fn_index, "session_hash": "flood", "event_data": None, "trigger_id": 0}
    with httpx.Client() as http:
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda i: http.post(f"{url}gradio_api/queue/join",
                                                      json={**body, "session_hash": f"s{i}"}).status_code, range(1000)))
    return ", ".join(f"{codes.count(c)} x HTTP {c}" for c in sorted(set(codes)))


def local_server(hits: list):
    import http.server

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_model(name: str) -> None:
    import timm

    import zoo

    torch.manual_seed(0)
    zoo.checkpoint.save(timm.create_model("test_resnet", num_classes=0), zoo.zoo_home() / name, data_config=DATA,
                        card="# bench model")


def make_gallery(root: Path, per_label: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for label in ("bag", "shoe"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bad_inputs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    os.environ["ZOO_HOME"] = str(tmp / "zoo")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from app import bank as banks

    make_model("tiny")
    banks.save(banks.build("tiny", str(make_gallery(tmp / "gallery-ok")), progress=False), tmp / "bank-args-ok")
    rows = []
    for group in (checkpoints, folders, images, damaged, served):
        rows += group(tmp)
        print(f"{group.__name__}: done", flush=True)
    table = "\n".join(f"| {what} | {got.replace('|', '/').replace(str(tmp), '$TMP')} |" for what, got in rows)
    if not args.no_write:
        write_section("Bad inputs", "`python -m bench.bad_inputs`: each bad input tried now, against a tiny random "
                      "model in a scratch zoo, and what the code answered (errors shortened to their first "
                      "sentence; every refusal also names the fix).\n\n| input | what it got |\n|---|---|\n" + table)
    print(table)


if __name__ == "__main__":
    main()
