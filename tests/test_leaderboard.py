"""The leaderboard: every model of the local zoo measured and described, in the lineage's order, and the app's
"Lineage" tab that shows it. Measured on a small image folder here (the benchmark uses Fashion-MNIST)."""
import json

import timm
import torch

import zoo.checkpoint
from app import lineage
from bench import leaderboard
from zoo.checkpoint import TRAINING

from test_eval import image_folder

CONFIG = dict(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3, crop_pct=1.0, interpolation="bilinear")


def trained(home, name, method, curve):
    torch.manual_seed(len(name))
    folder = zoo.checkpoint.save(timm.create_model("resnet18", num_classes=0), home / name, data_config=CONFIG,
                                 card="# t\n")
    (folder / TRAINING).write_text(json.dumps(dict(method=method, dataset="fashion-mnist", train_minutes=12.5,
                                                   epochs=[dict(epoch=e + 1, knn_top1=k) for e, k in enumerate(curve)])))
    return folder


def test_every_model_is_measured_and_ranked_in_the_lineages_order(tmp_path, zoo_home):
    data = image_folder(tmp_path / "data")
    trained(zoo_home, "simclr-resnet18-fmnist", "simclr", [70.0, 75.0])
    trained(zoo_home, "instdisc-resnet18-fmnist", "instdisc", [76.0])
    trained(zoo_home, "moco-resnet18-fmnist-smoke", "moco", [10.0])  # a test's proof, not a model
    trained(zoo_home, "moco-resnet18-fmnist-K256", "moco", [70.0])  # a claim's ablation, reported by bench.claims
    rows = leaderboard.leaderboard(zoo_home, str(data), baselines=False)
    assert [r["model"] for r in rows] == ["instdisc-resnet18-fmnist", "simclr-resnet18-fmnist"]  # stage 1, then 2
    assert [r["stage"] for r in rows] == [1, 2]
    simclr = rows[1]
    assert simclr["train_minutes"] == 12.5 and simclr["curve"] == [[1, 70.0], [2, 75.0]] or \
        simclr["curve"] == [(1, 70.0), (2, 75.0)]
    assert 0 <= simclr["knn"] <= 100 and 0 <= simclr["linear"] <= 100 and simclr["resolution"] == 32
    text = leaderboard.table(rows)
    assert "| 1 many ideas | instdisc | `instdisc-resnet18-fmnist` |" in text


def test_the_lineage_tab_shows_the_stages_in_order_with_the_measured_figures(zoo_home):
    rows = [dict(model="raw pixels (784-d)", stage=0, knn=79.13, linear=82.0),
            dict(model="moco-resnet18-fmnist", method="moco", stage=2, arch="resnet18", data="fashion-mnist",
                 knn=81.234, linear=84.5, resolution=32, train_minutes=40.0, curve=[[1, 70.0], [2, 80.0]])]
    zoo_home.mkdir(parents=True)
    (zoo_home / lineage.LEADERBOARD).write_text(json.dumps(rows))
    read = lineage.read()
    assert lineage.baselines_markdown(read) == "Baselines: raw pixels (784-d): kNN 79.13%, linear 82.00%."
    stage2 = lineage.stage_markdown(2, read)
    assert stage2.startswith("## Stage 2: the champions")
    assert "| `moco-resnet18-fmnist` | resnet18 | fashion-mnist | 81.23 | 84.50 | 32 | 40.0 |" in stage2
    assert stage2.index("### moco") < stage2.index("### mocov2") < stage2.index("### simclr")
    assert "No model of this method in the local zoo yet" in stage2.split("### simclr")[1]
    assert list(lineage.curves(read)["knn"]) == [70.0, 80.0]


def test_the_app_has_a_lineage_tab_even_before_a_leaderboard_exists(zoo_home):
    import gradio as gr

    with gr.Blocks() as demo:
        lineage.render()
    texts = [block.value for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
    assert any("No leaderboard yet" in str(t) for t in texts)
    assert any("Stage 4: Transformers" in str(t) for t in texts)


def test_recorded_results_of_the_same_weights_are_reused_and_new_weights_are_measured(tmp_path, zoo_home,
                                                                                      monkeypatch):
    data = str(image_folder(tmp_path / "data"))
    folder = trained(zoo_home, "instdisc-resnet18-fmnist", "instdisc", [76.0])
    first = leaderboard.measure(str(folder), data)
    calls = []
    real = leaderboard.evaluate
    monkeypatch.setattr(leaderboard, "evaluate", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    assert leaderboard.measure(str(folder), data) == first and calls == []  # nothing measured twice
    torch.manual_seed(1)
    zoo.checkpoint.save(timm.create_model("resnet18", num_classes=0), folder, data_config=CONFIG, card="# t\n")
    leaderboard.measure(str(folder), data)
    assert calls == ["knn", "linear"]  # other weights: measured afresh
