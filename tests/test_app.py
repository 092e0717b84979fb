"""The Gradio app, launched on a free loopback port and queried with gradio_client; the demo's stages."""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app import bank as banks
from app import demo, gallery
from zoo import checkpoint

from test_bank import make_folder, make_model  # noqa: E402  (tests/ is on sys.path under pytest)

gradio_client = pytest.importorskip("gradio_client")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two models with a bank each, served by the app; yields (client, tmp folder, url)."""
    from app import ui

    tmp = tmp_path_factory.mktemp("app")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_HOME", str(tmp / "zoo"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        folder = make_folder(tmp / "gallery", per_label=6)
        built = []
        for seed, name in enumerate(["alpha", "beta"]):
            make_model(name, seed=seed)
            built.append(banks.save(banks.build(name, str(folder), progress=False), tmp / f"bank-{name}"))
        app = ui.build_ui([banks.load(path) for path in built])
        port = free_port()
        ui.launch(app, port=port, prevent_thread_lock=True, quiet=True)
        try:
            url = f"http://127.0.0.1:{port}/"
            yield gradio_client.Client(url, verbose=False), tmp, url
        finally:
            app.close()


def query_file(tmp, name, mode="RGB", size=(40, 30)):
    """A random 40 x 30 picture scaled to ``size`` (blocky, so huge ones stay small files) in ``mode``."""
    pixels = np.random.default_rng(len(name)).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    path = tmp / name
    Image.fromarray(pixels).resize(size, Image.NEAREST).convert(mode).save(path)
    return path


def test_search_returns_k_results_with_scores(served):
    client, tmp, _ = served
    results, status, rows = client.predict(gradio_client.handle_file(query_file(tmp, "q.png")), "alpha", 5,
                                           api_name="/search")
    assert len(results) == 5 and len(rows) == 5
    assert "Top 5 of 12" in status
    scores = [row["score"] for row in rows]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    for result, row in zip(results, rows):
        assert result["caption"] == f"{row['label']} · {row['score']:.3f}"
        assert Image.open(result["image"]).size == (gallery.THUMB, gallery.THUMB) or max(
            Image.open(result["image"]).size) == gallery.THUMB


@pytest.mark.parametrize("mode,size", [("L", (28, 28)), ("RGBA", (50, 20)), ("P", (64, 64)), ("I;16", (30, 30)),
                                       ("CMYK", (30, 30)), ("F", (20, 20)), ("RGB", (1, 1)), ("RGB", (6000, 4000))])
def test_any_image_upload_works(served, mode, size):
    client, tmp, _ = served
    suffix = {"CMYK": "jpg", "F": "tif"}.get(mode, "png")
    path = query_file(tmp, f"q-{mode.replace(';', '')}-{size[0]}.{suffix}", mode, size)
    results, status, rows = client.predict(gradio_client.handle_file(path), "beta", 3, api_name="/search")
    assert len(rows) == 3, status


def test_a_file_that_is_not_an_image_gets_a_clear_message(served):
    client, tmp, _ = served
    path = tmp / "notes.png"
    path.write_text("this is text, not a picture")
    results, status, rows = client.predict(gradio_client.handle_file(path), "alpha", 3, api_name="/search")
    assert results == [] and rows == []
    assert "notes.png is not a readable image" in status and "Fix: upload" in status
    assert str(tmp) not in status  # no server paths leak into the message


def test_a_batch_of_searches_gives_each_its_own_answer(served):
    """Gradio hands simultaneous /search requests to the handler as one batch (one forward pass per
    model): each must still get the neighbours of its own image under its own model and k, and one
    bad upload fails only itself."""
    from app import ui

    _, tmp, _ = served
    app = ui.build_ui([banks.load(tmp / "bank-alpha"), banks.load(tmp / "bank-beta")])
    (search,) = [f for f in app.fns.values() if f.api_name == "search"]
    assert search.batch
    items = banks.load(tmp / "bank-alpha").items[:6]
    bad = tmp / "not-an-image.png"
    bad.write_text("text")
    paths = [item["ref"] for item in items] + [str(bad)]
    models = ["alpha", "beta", "alpha", "beta", "beta", "alpha", "alpha"]
    ks = [2, 3, 4, 2, 3, 4, 3]
    galleries, notes, rows = search.fn(paths, models, ks)
    assert len(galleries) == len(notes) == len(rows) == 7
    root = banks.load(tmp / "bank-alpha").meta["gallery"]["root"]
    for path, model, k, note, hits in list(zip(paths, models, ks, notes, rows))[:-1]:
        assert len(hits) == k and f"under **{model}**" in note
        own = Path(path).relative_to(root).as_posix()  # clients see the path inside the gallery folder
        assert hits[0]["ref"] == own and hits[0]["score"] > 0.999  # its own image comes first
    assert rows[-1] == [] and "not a readable image" in notes[-1]


def test_a_batch_decodes_only_its_pixel_budget_smallest_first(served, monkeypatch):
    """Large queries past the batch's pixel budget are told to retry, so the small ones beside them
    are not kept waiting for every large decode; the smallest are always admitted first."""
    from app import ui

    _, tmp, _ = served
    monkeypatch.setattr(ui, "BATCH_PIXELS", 2 * 80 * 80)
    app = ui.build_ui([banks.load(tmp / "bank-alpha")])
    (search,) = [f for f in app.fns.values() if f.api_name == "search"]
    large = [query_file(tmp, f"large-{i}.png", size=(80, 80)) for i in range(3)]
    small = [query_file(tmp, f"small-{i}.png", size=(20, 20)) for i in range(2)]
    paths = [str(large[0]), str(small[0]), str(large[1]), str(large[2]), str(small[1])]
    _, notes, rows = search.fn(paths, ["alpha"] * 5, [2] * 5)
    answered = [i for i, hits in enumerate(rows) if hits]
    assert answered == [0, 1, 4]  # both small ones, and as many large ones as fit beside them
    assert all("Too many large images" in notes[i] and "retry" in notes[i] for i in (2, 3))


def test_compare_answers_with_every_model(served):
    client, tmp, _ = served
    status, *rows = client.predict(gradio_client.handle_file(query_file(tmp, "c.png")), 4, api_name="/compare")
    assert len(rows) == 2 and all(len(row) == 4 for row in rows)
    assert "2 models" in status


def test_uploads_over_the_size_limit_are_refused(served):
    import httpx

    _, tmp, url = served
    big = tmp / "big.bin"
    big.write_bytes(b"\0" * (11 * 1024 * 1024))
    with open(big, "rb") as file:
        reply = httpx.post(f"{url}gradio_api/upload", files={"files": file}, timeout=60)
    assert reply.status_code == 413


def test_a_stale_bank_is_not_served(tmp_path, monkeypatch):
    from app import ui

    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo"))
    make_model("alpha", seed=0)
    bank = banks.build("alpha", str(make_folder(tmp_path / "gallery", per_label=1)), progress=False)
    make_model("alpha", seed=1)
    with pytest.raises(banks.StaleBankError):
        ui.build_ui([bank])


def test_demo_trains_a_missing_model_in_a_subprocess(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = []

    def fake_run(command, cwd):  # stands in for `python -m train`: exports the model it was asked for
        calls.append(command)
        make_model(command[command.index("--name") + 1])
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(demo.subprocess, "run", fake_run)
    assert demo.ensure_model("instdisc-resnet18-fmnist-smoke", "smoke").name == "instdisc-resnet18-fmnist-smoke"
    assert calls[0][1:] == ["-m", "train", "instdisc", "--preset", "smoke", "--name", "instdisc-resnet18-fmnist-smoke"]
    demo.ensure_model("instdisc-resnet18-fmnist-smoke", "smoke")
    assert len(calls) == 1  # resolves now: no second training


def test_demo_builds_then_reuses_then_rebuilds_a_stale_bank(tmp_path, monkeypatch, capsys, fashion_mnist):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_model("m")
    args = ["--model", "m", "--limit", "32", "--no-train", "--no-launch"]
    assert demo.main(args) == 0
    assert "building it" in capsys.readouterr().out
    assert demo.main(args) == 0
    assert "up to date" in capsys.readouterr().out
    make_model("m", seed=1)
    assert demo.main(args) == 0
    assert "Stale bank" in capsys.readouterr().out
    assert banks.load(banks.default_path("m", "fashion-mnist"), model="m").meta["count"] == 32
    assert demo.main(["--model", "nope", "--no-train", "--no-launch"]) == 1


def test_a_bench_replaces_its_own_section_only(tmp_path, monkeypatch):
    from bench import report

    monkeypatch.setattr(report, "REPORT", tmp_path / "BENCHMARKS.md")
    report.REPORT.write_text("# Benchmarks\n\n## kNN\n\nknn table\n\n## App load\n\nold\n\n## Later\n\nkept\n")
    report.write_section("App load", "first")
    report.write_section("App load", "second")
    text = report.REPORT.read_text()
    assert text.count("## App load") == 1 and "second" in text and "first" not in text and "old" not in text
    assert text.index("knn table") < text.index("second") < text.index("kept")  # in place, the others untouched
    report.write_section("New one", "fresh")
    assert report.REPORT.read_text().rstrip().endswith("fresh") and "second" in report.REPORT.read_text()


def test_only_uploaded_files_are_read(served):
    import httpx

    _, tmp, url = served
    on_server = tmp / "gallery" / "bag" / "0.png"  # exists on the server, but no client uploaded it
    payload = {"data": [{"path": str(on_server), "meta": {"_type": "gradio.FileData"}}, "alpha", 3]}
    event = httpx.post(f"{url}gradio_api/call/search", json=payload, timeout=30).json()["event_id"]
    reply = httpx.get(f"{url}gradio_api/call/search/{event}", timeout=60).text
    assert "was not uploaded to the app" in reply and "Fix: upload the file" in reply
    assert str(tmp) not in reply


def test_images_claiming_too_many_pixels_are_refused_before_decoding(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("1", (20_000, 5_000)).save(path)  # 100 megapixels in a few kB
    with pytest.raises(ValueError, match="wide.png is too large"):
        gallery.open_image(path)


def test_demo_serves_the_published_model_when_it_resolves_else_trains_the_quick_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo"))
    assert demo.pick_model("demo") == "instdisc-resnet18-fmnist-demo"
    make_model("instdisc-resnet18-fmnist")
    assert demo.pick_model("demo") == "instdisc-resnet18-fmnist"


def test_demo_banks_every_small_zoo_model_for_side_by_side(tmp_path, monkeypatch, capsys, fashion_mnist):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo"))
    for name in ("a", "b"):
        make_model(name)
    make_model("big", input_size=(3, 224, 224))  # a converted ImageNet release: not banked unasked
    assert demo.main(["--model", "a", "--limit", "16", "--no-train", "--no-launch"]) == 0
    built = sorted(path.name for path in banks.discover())
    assert built == ["a-fashion-mnist", "b-fashion-mnist"]
    assert "ready: 2 bank(s)" in capsys.readouterr().out


def test_the_demo_reads_each_models_weights_once_at_start(tmp_path, monkeypatch, capsys, fashion_mnist):
    """Each model is loaded once and its bank checked against the very bytes loaded, whether the bank is
    reused or rebuilt: no second read (or hash) of the weights."""
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo"))
    for name in ("a", "b"):
        make_model(name)
    args = ["--model", "a", "--limit", "16", "--no-train", "--no-launch"]
    assert demo.main(args) == 0
    reads = []
    for module, function in ((checkpoint, "load_with_digest"), (banks, "weights_sha256")):
        real = getattr(module, function)
        monkeypatch.setattr(module, function, lambda *a, _real=real, _name=function, **k:
                            reads.append(_name) or _real(*a, **k))
    assert demo.main(args) == 0
    assert reads == ["load_with_digest"] * 2 and "up to date" in capsys.readouterr().out
    make_model("b", seed=1)
    reads.clear()
    assert demo.main(args) == 0
    assert reads == ["load_with_digest"] * 2 and "Stale bank" in capsys.readouterr().out


def test_a_bank_is_tied_to_the_folder_its_model_was_loaded_from(tmp_path, monkeypatch):
    """open_model resolves the name once: the fingerprint names the folder the weights came from, even if the
    name would resolve elsewhere by the time it is asked again."""
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo"))
    make_model("m")
    resolved = []
    real = banks.zoo.resolve
    monkeypatch.setattr(banks.zoo, "resolve", lambda *a, **k: resolved.append(a) or real(*a, **k))
    _, _, meta = banks.open_model("m")
    assert resolved.count(("m",)) == 1 and meta["weights"] == str(real("m"))
