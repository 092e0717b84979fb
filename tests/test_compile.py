"""``--compile``: the networks compiled in place train as the eager ones and checkpoint, resume and export the same.

Traced with ``backend="aot_eager"``: dynamo and AOTAutograd capture and functionalise each network as inductor
would (in-place BatchNorm statistics included), and the captured graphs run eagerly, so a CPU test pays for the
tracing only. ``test_resnet`` (timm's smallest ResNet) keeps that tracing to seconds."""
import functools

import pytest
import torch

import train.__main__
import train.engine
import zoo
from train import optim
from train.engine import Schedules, compile_networks, fit, train_step
from train.methods import METHODS
from train.methods.base import Progress

TINY_ARCH = dict(arch="test_resnet", model_args={})


def two_steps(method, cfg, images):
    plan = Schedules.of(cfg, steps_per_epoch=2)
    optimizer = optim.build(method, cfg, plan.base_lr)
    losses = []
    for step in range(2):
        torch.manual_seed(100 + step)  # the same views on both sides
        out = train_step(method, method, optimizer, plan, images, torch.arange(len(images)),
                         Progress(0, step, 2), cfg, torch.device("cpu"))
        losses.append(out.loss.item())
    return losses


def test_a_compiled_moco_step_equals_the_eager_one_with_the_same_state_keys():
    """MoCo v2 is the hardest case: BatchNorm split in groups that update their statistics in place, a
    momentum encoder run under no_grad on a shuffled batch, a queue written after the loss."""
    cfg = METHODS["mocov2"].PRESETS["smoke"].override(**TINY_ARCH)
    images = torch.randint(0, 256, (cfg.batch_size, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    runs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        method = METHODS["mocov2"].build(cfg, 512, (0.5,) * 3, (0.25,) * 3)
        if compiled:
            compile_networks(method, backend="aot_eager")
        runs.append((two_steps(method, cfg, images), method.state_dict()))
    (eager_losses, eager), (compiled_losses, compiled) = runs
    assert compiled_losses == pytest.approx(eager_losses, abs=1e-4)
    assert compiled.keys() == eager.keys()  # no "_orig_mod." prefix: checkpoints are interchangeable
    for key in eager:
        assert torch.allclose(compiled[key].float(), eager[key].float(), atol=1e-4), key


def test_fit_compiled_checkpoints_and_exports_as_the_eager_run(zoo_home, tmp_path, monkeypatch):
    cfg = METHODS["simclr"].PRESETS["smoke"].override(epochs=1, **TINY_ARCH)
    monkeypatch.setattr(train.engine, "compile_networks", functools.partial(compile_networks, backend="aot_eager"))
    for compiled in (False, True):
        fit("simclr", "smoke", cfg, tmp_path / str(compiled), name=f"run-{compiled}", compiled=compiled)
    eager, compiled = (torch.load(tmp_path / str(c) / "checkpoint.pt", weights_only=True)["model"] for c in (False, True))
    assert compiled.keys() == eager.keys()
    for key in eager:
        assert torch.allclose(compiled[key].float(), eager[key].float(), atol=1e-4), key
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(zoo.load(str(zoo_home / "run-True"))(x), zoo.load(str(zoo_home / "run-False"))(x),
                              atol=1e-4)


def test_the_command_line_compiles_only_when_asked(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(train.__main__, "fit", lambda *args, **kwargs: calls.append(kwargs["compiled"]))
    for extra in ([], ["--compile"]):
        train.__main__.main(["simclr", "--preset", "smoke", "--out", str(tmp_path), *extra])
    assert calls == [False, True]
