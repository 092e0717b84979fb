"""The engine end to end: train the smoke preset, log, checkpoint, resume, export, DDP."""
import csv
import json
import math
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


def run(out, *extra, method="instdisc"):
    assert train.__main__.main([method, "--preset", "smoke", "--out", str(out), *extra]) == 0


def rows(out):
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_smoke_run_logs_checkpoints_and_exports_a_loadable_model(zoo_home, tmp_path):
    run(tmp_path / "run")
    assert [r["epoch"] for r in rows(tmp_path / "run")] == ["1", "2"]
    assert float(rows(tmp_path / "run")[0]["log_z"]) > 0  # the method's own logs, beside the loss
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


def test_after_epoch_runs_once_each_epoch_is_checkpointed(zoo_home, tmp_path):
    from train.engine import fit

    seen = []

    def after_epoch(epoch):  # what a benchmark's yardstick relies on: the epoch is safe on disk when it runs
        seen.append((epoch, torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"]))

    fit("instdisc", "smoke", PRESETS["smoke"], tmp_path / "run", export=False, after_epoch=after_epoch)
    assert seen == [(1, 1), (2, 2)]


@pytest.mark.parametrize("method", ["instdisc", "moco"])  # a memory bank and log Z; a queue and its pointer
def test_resumed_run_equals_an_uninterrupted_one(method, zoo_home, tmp_path, monkeypatch):
    import train.engine

    run(tmp_path / "straight", "--no-export", method=method)
    save = train.engine.save_atomic

    def save_then_die(state, path):
        save(state, path)
        raise KeyboardInterrupt  # killed once epoch 1's checkpoint is on disk

    monkeypatch.setattr(train.engine, "save_atomic", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", "--no-export", method=method)
    monkeypatch.undo()
    run(tmp_path / "killed", "--no-export", "--resume", method=method)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["model"]
    for key in straight:
        assert torch.allclose(straight[key].float(), resumed[key].float(), atol=1e-5), key
    assert [r["epoch"] for r in rows(tmp_path / "killed")] == ["1", "2"]


def test_unknown_method_suggests_the_close_one(capsys):
    with pytest.raises(SystemExit):
        train.__main__.main(["instdsc"])
    assert "Did you mean instdisc" in capsys.readouterr().err


def test_torchrun_trains_two_processes_on_one_memory_bank_and_exports(zoo_home, tmp_path):
    """torchrun with 2 CPU processes (gloo) end to end: every bank row is updated, whichever rank saw its
    image (which feature lands in which row: test_instdisc.test_two_processes_keep_one_memory_bank)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "train", "instdisc", "--preset", "smoke", "--epochs", "1", "--out", str(tmp_path / "ddp")],
                   check=True, env=env, cwd=tmp_path, timeout=600)
    state = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["model"]
    torch.manual_seed(0)  # the engine's seed: rebuild the initial bank to compare against
    from train.methods.instdisc import build
    initial = build(PRESETS["smoke"], 512, (0.5,) * 3, (0.5,) * 3)
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



# --- the step, the schedules and the optimisers, on a tiny method ---------------------------------------

from train import optim  # noqa: E402
from train.config import Config  # noqa: E402
from train.engine import Schedules, train_epoch, train_step  # noqa: E402
from train.methods.base import Method, Progress, StepOutput, group  # noqa: E402
from train.schedules import base_lr, lr_schedule, weight_decay_schedule  # noqa: E402

CPU = torch.device("cpu")


class Tiny(Method):
    """A linear 'backbone' whose hooks write down when they ran and what they saw."""

    def __init__(self, grad_scale: float = 1.0):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = torch.nn.Linear(4, 3)
        self.grad_scale, self.events, self.losses, self.optimizer = grad_scale, [], [], None

    def forward(self, images, index, progress):
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer else None
        self.events.append(("forward", progress.step, lr))
        loss = self.backbone(images).pow(2).mean()
        self.losses.append(loss.detach())
        return StepOutput(loss, {"half": loss.detach() / 2})

    def after_backward(self, progress):
        self.events.append(("after_backward", progress.step, self.backbone.weight.grad is not None))
        self.backbone.weight.grad *= self.grad_scale  # clipping must come after this

    def after_step(self, progress):
        self.events.append(("after_step", progress.step, progress.total_steps))


def tiny_run(cfg: Config, steps: int, method: Tiny | None = None):
    method = method or Tiny()
    plan = Schedules.of(cfg, steps)
    method.optimizer = optim.build(method, cfg, plan.base_lr)
    batches = [(torch.randn(2, 4), torch.arange(2)) for _ in range(steps)]
    return method, plan, batches


def test_a_step_runs_in_dinos_order_on_the_scheduled_lr():
    cfg = Config(lr=0.5, epochs=1, schedule="cosine", warmup_epochs=0)
    method, plan, batches = tiny_run(cfg, 3)
    for step, (x, index) in enumerate(batches):
        train_step(method, method, method.optimizer, plan, x, index, Progress(0, step, 3), cfg, CPU)
    assert method.events[:3] == [("forward", 0, 0.5), ("after_backward", 0, True), ("after_step", 0, 3)]
    assert method.events[3] == ("forward", 1, pytest.approx(plan.lr[1])) and plan.lr[1] < 0.5


def test_gradient_clipping_bounds_the_step_after_the_methods_own_gradient_edits():
    for clip, bounded in ((0.0, False), (1.0, True)):
        cfg = Config(lr=0.1, momentum=0.0, weight_decay=0.0, clip_grad=clip, epochs=1)
        method, plan, [(x, index)] = tiny_run(cfg, 1, Tiny(grad_scale=1e4))
        before = [p.detach().clone() for p in method.parameters()]
        train_step(method, method, method.optimizer, plan, x, index, Progress(0, 0, 1), cfg, CPU)
        moved = torch.cat([(p - b).flatten() for p, b in zip(method.parameters(), before)]).norm()
        assert (moved <= 0.1 + 1e-6) == bounded  # lr x max norm when clipped; far larger when not


def test_loss_and_logs_reach_the_host_once_per_log_window(monkeypatch):
    cfg = Config(lr=0.1, epochs=1, log_every=5)
    method, plan, batches = tiny_run(cfg, 10)
    reads = []
    for name in ("item", "tolist", "__float__", "__bool__", "__int__", "cpu", "numpy"):
        def counting(self, *args, _name=name, _original=getattr(torch.Tensor, name), **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counting)
    means = train_epoch(method, method, batches, method.optimizer, plan, 0, cfg, CPU)
    monkeypatch.undo()
    assert reads == ["tolist", "tolist"]  # steps 5 and 10, not one per step
    assert means["loss"] == pytest.approx(torch.stack(method.losses).mean().item(), rel=1e-6)
    assert means["half"] == pytest.approx(means["loss"] / 2, rel=1e-6)


def test_a_non_finite_loss_stops_the_run_with_a_hint():
    from train.log import Meter
    meter = Meter(every=2)
    assert not meter.add(torch.tensor(float("nan")), {})
    with pytest.raises(FloatingPointError, match="lower the lr"):
        meter.add(torch.tensor(1.0), {})


def test_lr_schedule_warms_up_linearly_then_follows_cosine_or_steps():
    cosine = lr_schedule(Config(lr=1.0, epochs=10, warmup_epochs=2, schedule="cosine"), steps_per_epoch=10)
    assert len(cosine) == 100 and cosine[[0, 9, 19]] == pytest.approx([0.05, 0.5, 1.0])
    assert cosine[20] == pytest.approx(1.0) and cosine[60] == pytest.approx(0.5) and cosine[99] < 0.001
    step = lr_schedule(Config(lr=1.0, epochs=200, schedule="step", milestones=(120, 160)), steps_per_epoch=5)
    assert step[[119 * 5, 120 * 5, 160 * 5]] == pytest.approx([1.0, 0.1, 0.01])
    ending = lr_schedule(Config(lr=1.0, lr_end=0.1, epochs=1, schedule="cosine"), steps_per_epoch=1000)
    assert ending[-1] == pytest.approx(0.1, abs=1e-5)


def test_the_per_epoch_cosine_is_mocos_adjust_learning_rate():
    held = lr_schedule(Config(lr=0.03, epochs=200, schedule="cosine-epoch"), steps_per_epoch=5)
    for epoch in (0, 1, 100, 199):  # main_moco.py: lr = base x 0.5 x (1 + cos(pi epoch / epochs)), once an epoch
        assert held[epoch * 5:epoch * 5 + 5] == pytest.approx([0.03 * 0.5 * (1 + math.cos(math.pi * epoch / 200))] * 5)
    warmed = lr_schedule(Config(lr=1.0, epochs=4, warmup_epochs=1.5, schedule="cosine-epoch"), steps_per_epoch=4)
    per_step = lr_schedule(Config(lr=1.0, epochs=4, warmup_epochs=1.5, schedule="cosine"), steps_per_epoch=4)
    assert warmed[:6] == pytest.approx(per_step[:6])  # the warm-up rises step by step
    assert warmed[6:8] == pytest.approx([1.0, 1.0]) and warmed[8:12] == pytest.approx([per_step[8]] * 4)


def test_lr_scales_with_the_batch_as_the_preset_says():
    assert base_lr(Config(lr=0.03, batch_size=512)) == pytest.approx(0.03)
    assert base_lr(Config(lr=0.3, batch_size=4096, lr_scaling="linear")) == pytest.approx(4.8)  # SimCLR v1
    assert base_lr(Config(lr=0.075, batch_size=4096, lr_scaling="sqrt")) == pytest.approx(4.8)  # SimCLR v2


def test_weight_decay_is_constant_or_follows_a_cosine_to_its_end():
    assert set(weight_decay_schedule(Config(weight_decay=1e-4, epochs=2), 3)) == {1e-4}
    dino = weight_decay_schedule(Config(weight_decay=0.04, weight_decay_end=0.4, epochs=10), 100)
    assert dino[0] == pytest.approx(0.04) and dino[500] == pytest.approx(0.22) and dino[-1] == pytest.approx(0.4, abs=1e-4)


class Predictor(Method):
    """SimSiam's shape: an encoder on the schedule, a predictor on a fixed lr without weight decay."""

    def __init__(self):
        super().__init__()
        self.backbone, self.predictor = torch.nn.Linear(4, 3), torch.nn.Linear(3, 3)

    def param_groups(self):
        return [group(self.backbone.parameters()), group(self.predictor.parameters(), fixed_lr=True, weight_decay=False)]


def test_fixed_lr_groups_keep_the_base_lr_and_spared_groups_get_no_weight_decay():
    cfg = Config(lr=0.1, batch_size=512, lr_scaling="linear", schedule="cosine", epochs=2, weight_decay=1e-4,
                 weight_decay_end=1e-3)
    method, plan = Predictor(), Schedules.of(cfg, 5)
    optimizer = optim.build(method, cfg, plan.base_lr)
    plan.apply(optimizer, 7)
    scheduled, fixed = optimizer.param_groups
    assert scheduled["lr"] == pytest.approx(plan.lr[7]) and scheduled["lr"] < 0.2
    assert scheduled["weight_decay"] == pytest.approx(plan.weight_decay[7]) and scheduled["weight_decay"] > 1e-4
    assert fixed["lr"] == pytest.approx(0.2) and fixed["weight_decay"] == 0


def test_weight_decay_and_lars_spare_biases_and_norms_only_when_asked():
    class ConvBN(Method):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))

    (plain,) = optim.param_groups(ConvBN(), Config())
    assert plain["decay"] and plain["lars"] and len(plain["params"]) == 4
    decayed, spared = optim.param_groups(ConvBN(), Config(exclude_norm_bias=True))
    assert decayed["decay"] and [p.shape for p in decayed["params"]] == [(4, 3, 3, 3)]
    assert not spared["decay"] and not spared["lars"] and len(spared["params"]) == 3  # conv bias, BN weight, bias


def test_groups_must_hold_every_trainable_parameter_once():
    class Forgetful(Predictor):
        def param_groups(self):
            return [group(self.backbone.parameters())]

    with pytest.raises(ValueError, match="in none: predictor.weight"):
        optim.build(Forgetful(), Config(), 0.1)
    with pytest.raises(ValueError, match="weight_decay is a flag"):
        optim.param_groups(type("Amount", (Predictor,), {"param_groups": lambda self: [
            dict(params=list(self.parameters()), weight_decay=1e-4)]})(), Config())


def test_lars_scales_the_step_by_the_trust_ratio_and_spares_excluded_groups():
    torch.manual_seed(0)
    w, b = torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(4))
    w.grad, b.grad = torch.randn(4, 3), torch.randn(4)
    w0, b0 = w.detach().clone(), b.detach().clone()
    lars = optim.LARS([dict(params=[w], lars=True, weight_decay=0.1), dict(params=[b], lars=False)],
                      lr=0.5, momentum=0.9, eta=0.01)
    lars.step()
    d = w.grad + 0.1 * w0
    assert torch.allclose(w, w0 - 0.5 * 0.01 * w0.norm() / d.norm() * d, atol=1e-6)
    assert (w.detach() - w0).norm().item() == pytest.approx(0.5 * 0.01 * w0.norm().item(), rel=1e-5)  # |step| = lr eta |w|
    assert torch.allclose(b, b0 - 0.5 * b.grad, atol=1e-6)


def test_lars_gives_each_parameter_of_a_group_its_own_trust_ratio_over_steps():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3) * scale) for scale in (0.1, 10.0)]
    lars = optim.LARS([dict(params=params, lars=True, weight_decay=0.1)], lr=0.5, momentum=0.9, eta=0.01)
    expected, buffers = [p.detach().clone() for p in params], [torch.zeros(4, 3) for _ in params]
    for _ in range(3):  # by hand, one parameter at a time: the multi-tensor step must agree
        grads = [torch.randn(4, 3) for _ in params]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        for i, g in enumerate(grads):
            d = g + 0.1 * expected[i]
            buffers[i] = 0.9 * buffers[i] + 0.01 * expected[i].norm() / d.norm() * d
            expected[i] = expected[i] - 0.5 * buffers[i]
        lars.step()
    for p, e in zip(params, expected):
        assert torch.allclose(p, e, atol=1e-5)


def test_lars_classic_momentum_keeps_each_step_at_the_lr_it_was_taken_with():
    torch.manual_seed(0)
    start, grads, lrs = torch.randn(4, 3), [torch.randn(4, 3) for _ in range(3)], (0.1, 0.5, 0.2)

    def train(classic: bool) -> torch.Tensor:
        w = torch.nn.Parameter(start.clone())
        lars = optim.LARS([dict(params=[w], lars=True, weight_decay=0.1)], lr=lrs[0], momentum=0.9, eta=0.01,
                          classic_momentum=classic)
        for lr, g in zip(lrs, grads):
            lars.param_groups[0]["lr"], w.grad = lr, g.clone()
            lars.step()
        return w.detach()

    expected, buffer = start.clone(), torch.zeros(4, 3)
    for lr, g in zip(lrs, grads):  # SimCLR's TensorFlow LARS: buf <- m buf + lr * trust * d, w <- w - buf
        d = g + 0.1 * expected
        buffer = 0.9 * buffer + lr * 0.01 * expected.norm() / d.norm() * d
        expected = expected - buffer
    assert torch.allclose(train(classic=True), expected, atol=1e-6)
    assert not torch.allclose(train(classic=False), expected, atol=1e-4)  # the lr changed: the placements differ


def test_a_lars_state_from_before_classic_momentum_resumes_without_it():
    w = torch.nn.Parameter(torch.randn(3))
    lars = optim.LARS([w], lr=0.1, classic_momentum=True)
    state = lars.state_dict()
    del state["param_groups"][0]["classic_momentum"]
    lars.load_state_dict(state)
    assert lars.param_groups[0]["classic_momentum"] is False


def test_lars_without_the_trust_ratio_is_sgd_with_momentum():
    torch.manual_seed(0)
    ours, theirs = torch.nn.Parameter(torch.randn(5, 2)), torch.nn.Parameter(torch.randn(5, 2))
    with torch.no_grad():
        theirs.copy_(ours)
    lars = optim.LARS([dict(params=[ours], lars=False, weight_decay=1e-2)], lr=0.1, momentum=0.9)
    sgd = torch.optim.SGD([theirs], lr=0.1, momentum=0.9, weight_decay=1e-2)
    for _ in range(3):
        grad = torch.randn(5, 2)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        lars.step()
        sgd.step()
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_the_preset_chooses_the_optimiser():
    assert isinstance(optim.build(Tiny(), Config(optimizer="sgd", momentum=0.8), 0.1), torch.optim.SGD)
    lars = optim.build(Tiny(), Config(optimizer="lars", lars_eta=0.02, lars_classic_momentum=True), 0.1)
    assert isinstance(lars, optim.LARS) and lars.param_groups[0]["eta"] == 0.02
    assert lars.param_groups[0]["classic_momentum"]
    adamw = optim.build(Tiny(), Config(optimizer="adamw", betas=(0.9, 0.95)), 0.1)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["betas"] == (0.9, 0.95)


def test_a_preset_with_an_unknown_choice_is_refused_by_name():
    with pytest.raises(ValueError, match="optimizer is 'adam'; choose one of sgd, lars, adamw"):
        Config(optimizer="adam")
    with pytest.raises(ValueError, match="lr_scaling"):
        Config(lr_scaling="square")


# --- data: crops from the full image, seeded random subsets ----------------------------------------------

def test_image_files_are_cut_on_the_cpu_into_every_crop_from_the_full_image(tmp_path):
    """A 32 x 96 image, red | green | blue: a crop of the whole image keeps both edges, which the old
    256-px-style centre square had already cut away."""
    from PIL import Image

    from train.augment import Crop
    from train.data import load
    pixels = torch.zeros(32, 96, 3, dtype=torch.uint8)
    for third in range(3):
        pixels[:, 32 * third:32 * (third + 1), third] = 255
    for split in ("train", "val"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(pixels.numpy()).save(tmp_path / split / "a" / "0.png")
    data = load(str(tmp_path), size=16)
    whole, small = Crop(16, scale=(1.0, 1.0), ratio=(3.0, 3.0)), Crop(8, scale=(0.05, 0.1))
    (first, second), label = data.training_crops([whole, small])[0]
    assert first.dtype == torch.uint8 and first.shape == (3, 16, 16) and second.shape == (3, 8, 8)
    assert first[0, :, 0].min() > 200 and first[2, :, -1].min() > 200  # red left edge, blue right edge
    centre = data.train[0][0]  # what kNN and prefill see: the centre square
    assert centre[0].max() < 50 and centre[2].max() < 50


def test_knn_monitor_takes_the_same_seeded_random_subset_every_time():
    """Folders are sorted by class: the first N training images would hold only class 0."""
    from torch.utils.data import TensorDataset

    from train.data import Data
    from train.knn import knn_monitor
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 2, 2).contiguous()
    labels = (torch.arange(40) >= 20).long()
    data = Data(TensorDataset(images, labels), TensorDataset(images, labels), labels, labels, (0.5,), (0.5,), 1.0)
    seen = []

    def backbone(x):
        seen.append(x[:, 0, 0, 0].long().tolist())
        return torch.stack([x[:, 0, 0, 0], 40 - x[:, 0, 0, 0]], dim=1)
    backbone.eval = backbone.train = lambda *args: None
    backbone.training = False
    knn_monitor(backbone, data, lambda x: x.float(), CPU, limit=8, seed=0)
    knn_monitor(backbone, data, lambda x: x.float(), CPU, limit=8, seed=0)
    assert seen[0] == seen[2] and seen[1] == seen[3]  # the same subset at every epoch
    assert len(seen[0]) == 8 and seen[0] != list(range(8)) and set(labels[seen[0]].tolist()) == {0, 1}
    assert len(seen[1]) == 2


def test_in_memory_images_load_as_whole_batches_equal_to_image_by_image(fashion_mnist):
    from torch.utils.data import DataLoader, Subset

    from train import data as datasets
    from train.engine import training_loader

    images = datasets.fashion_mnist(False)
    for dataset in (images, Subset(images, list(range(100, 400)))):
        assert datasets.in_memory(dataset)
        cfg = Config(batch_size=64, seed=3)
        loader, sampler = training_loader(dataset, cfg, 0, 1, torch.device("cpu"))
        sampler.set_epoch(2)
        one_by_one = DataLoader(datasets.Indexed(dataset), batch_size=64, sampler=sampler, drop_last=True)
        batches = list(loader)
        assert len(batches) == len(loader) == len(dataset) // 64
        for (x, i), (y, j) in zip(batches, one_by_one):
            assert x.dtype == torch.uint8 and torch.equal(x, y) and torch.equal(i, j)


def test_the_engine_trains_channels_last_and_exports_dense_weights_that_load_equal(tmp_path, zoo_home):
    import timm

    import zoo.checkpoint
    from conftest import FMNIST_DATA
    from train.engine import on_device

    torch.manual_seed(0)
    model = on_device(timm.create_model("resnet18", num_classes=0, channels=(8, 16, 32, 64), stem_width=8),
                      torch.device("cpu")).eval()
    weight = model.conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    zoo.checkpoint.save(model, tmp_path / "m", data_config=FMNIST_DATA, card="# test\n",
                        model_args=dict(channels=[8, 16, 32, 64], stem_width=8))
    assert model.conv1.weight is weight  # the model in training is left as it was
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(zoo.load(str(tmp_path / "m"))(x), model(x), atol=1e-5)


def test_on_cuda_the_engine_lets_cudnn_pick_each_convolutions_fastest_algorithm(monkeypatch):
    """As the authors' main_moco.py: the batches keep one shape, so cuDNN's benchmark of each shape pays off. The
    move itself is stubbed (no GPU here); on a CPU the process-wide flag is left as it was."""
    from train.engine import on_device

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    model = torch.nn.Conv2d(3, 4, 3)
    moved = []
    monkeypatch.setattr(model, "to", lambda device, memory_format: moved.append((device, memory_format)) or model)
    on_device(model, torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    on_device(model, torch.device("cuda", 0))
    assert torch.backends.cudnn.benchmark is True
    assert moved == [(torch.device("cpu"), torch.channels_last), (torch.device("cuda", 0), torch.channels_last)]
