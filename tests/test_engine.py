"""The engine end to end: train the smoke preset, log, checkpoint, resume, export, DDP."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

import train.__main__
import zoo
from train.methods.instdisc import PRESETS

ROOT = Path(__file__).resolve().parents[1]


def run(out, *extra):
    assert train.__main__.main(["instdisc", "--preset", "smoke", "--out", str(out), *extra]) == 0


def rows(out):
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_smoke_run_logs_checkpoints_and_exports_a_loadable_model(zoo_home, tmp_path):
    run(tmp_path / "run")
    assert [r["epoch"] for r in rows(tmp_path / "run")] == ["1", "2"]
    assert (tmp_path / "run" / "metrics.png").stat().st_size > 0
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 2
    model = zoo.load("instdisc-resnet18-fmnist-smoke")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    config = json.loads((zoo_home / "instdisc-resnet18-fmnist-smoke" / "config.json").read_text())
    assert PRESETS["smoke"].model_args.items() <= config["model_args"].items()  # for timm to rebuild it so
    card = ModelCard.load(zoo_home / "instdisc-resnet18-fmnist-smoke" / "README.md")
    (result,) = card.data.eval_results
    assert result.metric_name == "kNN top-1 (k=200, T=0.07)" and 0 < result.metric_value <= 100
    assert result.dataset_type == "fashion-mnist"


def test_resumed_run_equals_an_uninterrupted_one(zoo_home, tmp_path, monkeypatch):
    import train.engine

    run(tmp_path / "straight", "--no-export")
    save = train.engine.save_atomic

    def save_then_die(state, path):
        save(state, path)
        raise KeyboardInterrupt  # killed once epoch 1's checkpoint is on disk

    monkeypatch.setattr(train.engine, "save_atomic", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", "--no-export")
    monkeypatch.undo()
    run(tmp_path / "killed", "--no-export", "--resume")
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["model"]
    for key in straight:
        assert torch.allclose(straight[key].float(), resumed[key].float(), atol=1e-5), key
    assert [r["epoch"] for r in rows(tmp_path / "killed")] == ["1", "2"]


def test_unknown_method_suggests_the_close_one(capsys):
    with pytest.raises(SystemExit):
        train.__main__.main(["instdsc"])
    assert "Did you mean instdisc" in capsys.readouterr().err


def test_two_processes_keep_one_memory_bank(zoo_home, tmp_path):
    """torchrun with 2 CPU processes (gloo): every bank row is updated, whichever rank saw its image."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "train", "instdisc", "--preset", "smoke", "--epochs", "1", "--out", str(tmp_path / "ddp")],
                   check=True, env=env, cwd=tmp_path, timeout=600)
    state = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["model"]
    torch.manual_seed(0)  # the engine's seed: rebuild the initial bank to compare against
    import timm
    from train.methods.instdisc import build
    smoke = PRESETS["smoke"]
    backbone = timm.create_model(smoke.arch, num_classes=0, **smoke.model_args)
    initial = build(backbone, smoke, 512, (0.5,) * 3, (0.5,) * 3)
    changed = (state["memory_bank.memory"] != initial.memory_bank.memory).any(dim=1)
    assert changed.all()
    assert (zoo_home / "instdisc-resnet18-fmnist-smoke" / "model.safetensors").exists()


def test_image_folder_data_trains_and_exports_imagenet_style_preprocessing(zoo_home, tmp_path):
    """The `paper` preset's data path (train/ and val/ ImageFolders), shrunk to 16 tiny images."""
    from PIL import Image
    torch.manual_seed(0)
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            (tmp_path / "data" / split / label).mkdir(parents=True)
            for i in range(8):
                pixels = torch.randint(0, 256, (40, 48, 3), dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(tmp_path / "data" / split / label / f"{i}.png")
    run(tmp_path / "run", "--data", str(tmp_path / "data"), "--batch-size", "8", "--epochs", "1")
    info = zoo.info("instdisc-resnet18-data-smoke")
    assert info["input_size"] == (3, 32, 32) and info["mean"] == pytest.approx((0.485, 0.456, 0.406))
    config = (zoo_home / "instdisc-resnet18-data-smoke" / "config.json").read_text()
    assert '"crop_pct": 0.875' in config


def test_schedule_warms_up_linearly_then_follows_cosine_or_steps():
    from train.config import Config
    from train.engine import lr_factor

    cosine = lr_factor(Config(epochs=10, warmup_epochs=2, schedule="cosine"), steps_per_epoch=10)
    assert [cosine(s) for s in (0, 9, 19)] == pytest.approx([0.05, 0.5, 1.0])
    assert cosine(20) == pytest.approx(1.0) and cosine(60) == pytest.approx(0.5) and cosine(99) < 0.001
    step = lr_factor(Config(epochs=200, schedule="step", milestones=(120, 160)), steps_per_epoch=5)
    assert [step(119 * 5), step(120 * 5), step(160 * 5)] == pytest.approx([1.0, 0.1, 0.01])


def test_weight_decay_spares_biases_and_norms_only_when_asked():
    from train.config import Config
    from train.engine import optimizer_for

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    (plain,) = optimizer_for(model, Config(weight_decay=1e-4)).param_groups
    assert plain["weight_decay"] == 1e-4 and len(plain["params"]) == 4
    decayed, spared = optimizer_for(model, Config(weight_decay=1e-4, exclude_norm_bias=True)).param_groups
    assert decayed["weight_decay"] == 1e-4 and [p.shape for p in decayed["params"]] == [(4, 3, 3, 3)]
    assert spared["weight_decay"] == 0 and len(spared["params"]) == 3  # conv bias, BN weight and bias


def test_gradient_clipping_bounds_the_step():
    from train.config import Config
    from train.engine import optimise

    for clip, bounded in ((0.0, False), (1.0, True)):
        layer = torch.nn.Linear(10, 1)
        before = [p.detach().clone() for p in layer.parameters()]
        cfg = Config(lr=0.1, momentum=0.0, weight_decay=0.0, clip_grad=clip)
        optimizer = torch.optim.SGD(layer.parameters(), lr=cfg.lr)
        optimise(1000 * layer(torch.ones(1, 10)).sum(), layer, optimizer, cfg)
        moved = torch.cat([(p - b).flatten() for p, b in zip(layer.parameters(), before)]).norm()
        assert (moved <= 0.1 + 1e-6) == bounded  # lr x max norm when clipped; far larger when not
