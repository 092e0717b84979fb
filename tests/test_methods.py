"""Every method of `train.methods.METHODS` through the same checks: what the engine and the zoo rely on
(`train/methods/base.py`). A new method is checked by being registered; each check builds it from its
`smoke` preset at a tiny size (32 px, batch 8, 16 images)."""
import copy
import math

import pytest
import torch
from torch.utils.data import TensorDataset

import zoo
from bench.dispatch import host_syncs
from train import optim
from train.augment import Preprocess
from train.data import Data
from train.engine import Schedules, train_step, write_checkpoint
from train.methods import METHODS
from train.methods.base import Method, Progress, StepOutput
from zoo.registry import PAPERS

NUM_IMAGES, BATCH = 16, 8
MEAN, STD = (0.286,) * 3, (0.353,) * 3
TINY = dict(image_size=32, batch_size=BATCH, epochs=1)
PROGRESS = Progress(epoch=0, step=0, total_steps=2)
IMAGES = torch.randint(0, 256, (NUM_IMAGES, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
LABELS = torch.arange(NUM_IMAGES) % 2
INDEX = torch.tensor([3, 14, 0, 9, 5, 11, 7, 1])  # a batch as a shuffled loader gives it

every_method = pytest.mark.parametrize("name", sorted(METHODS))


def build(name: str, seed: int = 0) -> tuple[Method, object]:
    """The method as the engine makes it (seeded, prefilled with every image when it asks), and its config."""
    cfg = METHODS[name].PRESETS["smoke"].override(**TINY)
    torch.manual_seed(seed)
    method = METHODS[name].build(cfg, NUM_IMAGES, MEAN, STD)
    if method.wants_prefill:
        with torch.no_grad():
            method.prefill([(Preprocess(cfg.image_size, MEAN, STD)(IMAGES), torch.arange(NUM_IMAGES))])
    return method, cfg


def data() -> Data:
    split = TensorDataset(IMAGES, LABELS)
    return Data(split, split, LABELS, LABELS, MEAN, STD, 1.0)


def engine_step(method: Method, cfg, images=IMAGES[INDEX]) -> StepOutput:
    """One step as the engine takes it: scheduled lr, forward, backward, hooks, clip, optimiser step."""
    plan = Schedules.of(cfg, steps_per_epoch=PROGRESS.total_steps)
    optimizer = optim.build(method, cfg, plan.base_lr)
    return train_step(method, method, optimizer, plan, images, INDEX, PROGRESS, cfg, torch.device("cpu"))


@every_method
def test_builds_from_its_smoke_preset_with_an_exportable_model(name):
    method, _ = build(name)
    assert isinstance(method, Method)
    assert {"smoke", "paper"} <= set(METHODS[name].PRESETS)
    assert getattr(method.export(), "num_classes", None) == 0  # a timm model without a classifier
    assert name in PAPERS  # its model card cites the paper


@every_method
def test_a_step_gives_a_finite_loss_and_scalar_logs(name):
    method, _ = build(name)
    out = method(IMAGES[INDEX], INDEX, PROGRESS)
    assert isinstance(out, StepOutput) and out.loss.ndim == 0 and math.isfinite(out.loss.item())
    assert out.loss.requires_grad
    for key, value in out.logs.items():
        assert value.ndim == 0 and not value.requires_grad, key


@every_method
def test_a_training_step_trains_the_exported_model(name):
    """The export gets gradients (or, an EMA target such as DINO's teacher, moves with what got them)."""
    method, cfg = build(name)
    exported = method.export()
    before = {k: p.detach().clone() for k, p in exported.named_parameters()}
    engine_step(method, cfg)
    trainable = [p for p in exported.parameters() if p.requires_grad]
    if trainable:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    assert any(not torch.equal(before[k], p) for k, p in exported.named_parameters())


MOMENTUM_ENCODERS = ("moco", "mocov2", "byol", "mocov3", "dino")  # key encoders, BYOL's target, DINO's teacher


def test_the_methods_with_a_momentum_encoder_are_those_listed():
    assert {name for name in METHODS if hasattr(build(name)[0], "momentum_encoder")} == set(MOMENTUM_ENCODERS)


@pytest.mark.parametrize("name", MOMENTUM_ENCODERS)
def test_a_momentum_encoder_gets_no_gradient_and_is_no_parameter_of_the_optimiser(name):
    """Moved only by its moving average, never by the optimiser."""
    method, cfg = build(name)
    target = method.momentum_encoder
    method(IMAGES[INDEX], INDEX, PROGRESS).loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in target.parameters())
    trained = {id(p) for g in optim.param_groups(method, cfg) for p in g["params"]}
    assert trained and not trained & {id(p) for p in target.parameters()}


@every_method
def test_state_round_trips_through_a_checkpoint(name, tmp_path):
    method, cfg = build(name)
    engine_step(method, cfg)  # state in motion: memory banks, queues, estimates, EMA targets
    torch.save({"model": method.state_dict()}, tmp_path / "checkpoint.pt")
    restored, _ = build(name, seed=1)
    restored.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"])
    saved, loaded = method.state_dict(), restored.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    losses = []
    for model in (method, restored):
        torch.manual_seed(5)
        losses.append(model(IMAGES[INDEX], INDEX, Progress(0, 1, 2)).loss.detach())
    assert torch.equal(*losses)


@every_method
def test_export_saves_and_loads_through_the_zoo_format(name, zoo_home, tmp_path):
    """Every export, the main one and any extra (SimCLR v2's projected encoder), as users will load it."""
    method, cfg = build(name)
    x = Preprocess(cfg.image_size, MEAN, STD)(IMAGES[:4])
    for suffix, module in {"": method.export(), **method.extra_exports()}.items():
        exported = copy.deepcopy(module).eval()
        folder = write_checkpoint(exported, tmp_path / f"{name}{suffix}", cfg, data(), card="# test\n")
        loaded = zoo.load(str(folder))
        assert getattr(loaded, "num_classes", None) == 0
        with torch.no_grad():
            assert torch.allclose(exported(x), loaded(x), atol=1e-6), suffix


@every_method
def test_image_files_arrive_as_the_methods_own_crops(name):
    """For image folders the CPU workers cut `crops` and the step receives one uint8 batch per crop."""
    method, cfg = build(name)
    crops = [torch.randint(0, 256, (BATCH, 3, crop.size, crop.size), dtype=torch.uint8) for crop in method.crops]
    assert crops, f"{name} names no crops"
    out = engine_step(method, cfg, crops)
    assert math.isfinite(out.loss.item())


@every_method
def test_views_are_made_without_a_host_sync(name):
    """The views run on the training device in the step's own stream: a mask index or a value read back
    there would make the host wait for the GPU at every step."""
    method, _ = build(name)
    with torch.no_grad():
        assert host_syncs(lambda: method.augment(IMAGES[INDEX])) == set()


@every_method
def test_its_networks_are_what_a_step_calls_and_hold_every_trained_parameter(name):
    """What ``--compile`` compiles (``Method.networks``): each is called by a step, none trained is left out."""
    method, _ = build(name)
    networks, called = method.networks(), set()
    hooks = [network.register_forward_pre_hook(lambda module, args, i=i: called.add(i))
             for i, network in enumerate(networks)]
    method(IMAGES[INDEX], INDEX, PROGRESS)
    for hook in hooks:
        hook.remove()
    assert called == set(range(len(networks)))
    inside = {id(p) for network in networks for p in network.parameters()}
    assert all(id(p) in inside for p in method.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", [n for n in sorted(METHODS) if "smoke-vit" in METHODS[n].PRESETS])
def test_a_vit_preset_trains_and_its_export_loads_as_a_plain_timm_vit(name, zoo_home, tmp_path):
    """The stage-4 methods on a Vision Transformer: a step trains it, and the export (whatever class the method
    gives its ViT) loads through the zoo as timm's and gives the same features."""
    cfg = METHODS[name].PRESETS["smoke-vit"].override(**TINY)
    torch.manual_seed(0)
    method = METHODS[name].build(cfg, NUM_IMAGES, MEAN, STD)
    out = engine_step(method, cfg)
    assert math.isfinite(out.loss.item())
    exported = copy.deepcopy(method.export()).eval()
    loaded = zoo.load(str(write_checkpoint(exported, tmp_path / name, cfg, data(), card="# test\n")))
    assert type(loaded).__name__ == "VisionTransformer"
    x = Preprocess(cfg.image_size, MEAN, STD)(IMAGES[:4])
    with torch.no_grad():
        assert torch.allclose(exported(x), loaded(x), atol=1e-6)
