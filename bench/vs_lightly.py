"""Against lightly: the same SimCLR and MoCo v2 trained by this project's engine and by lightly, one after
the other in one process on one machine.

Protocol. Each method's `fmnist` preset sets every number for both sides: SimCLR (batch 512, LARS, T 0.5,
colour strength 0.5, no blur, 2-layer head with BatchNorm) and MoCo v2 (batch 256, SGD, T 0.2, a queue of
4096, momentum 0.99, MLP head, 8 BatchNorm groups with the key batch shuffled, no blur at 32 px). Both
sides start from the same seeded timm ResNet-18 (``num_classes=0, zero_init_last=False``) at 32 px, take the
same lr at every step (the preset's warm-up and cosine, set on each side's optimiser before its step),
the same weight decay and momentum, and bf16 autocast on a GPU only.

- Ours is the engine's path: ``train.data.load`` keeps Fashion-MNIST in memory as uint8, the engine's
  ``training_loader`` batches it and ``train_step`` runs the method that ``METHODS[name].build`` makes,
  whose views are cropped, jittered and flipped batched on the training device.
- Lightly is what a lightly user writes: torchvision's FashionMNIST as PIL images (converted to RGB, as
  our views expand grey to three channels) through lightly's ``SimCLRTransform`` / ``MoCoV2Transform``
  per image in DataLoader worker processes (one per CPU this process may run on), lightly's projection
  heads, ``NTXentLoss`` (with a memory bank for MoCo v2), ``update_momentum``, ``SplitBatchNorm`` and
  ``batch_shuffle``, and lightly's LARS for SimCLR (torch SGD for MoCo v2). The transform's numbers are
  read off our views by :func:`lightly_view_kwargs`, so the two cannot drift apart.

Throughput: images per second end to end, the loader's ``next`` included, over ``--steps`` steps after
``--warmup`` untimed ones (which also start lightly's workers), timed interleaved (ours, lightly, ours,
lightly, ...) ``--repeats`` times so both see the same machine load; medians with min-max, and the ratio of
the medians with the min-max of the per-repeat ratios. kNN (``--epochs N``): each side trains N full epochs
from scratch and ``train.knn.knn_monitor`` (k=200, T=0.07, the 60k training images voting for the 10k test
images) measures its backbone. The goal is at least 1.2x lightly's throughput at an equal or better kNN.

What is not the same (each side keeps its own library's parts): the projection heads' init and, for
SimCLR, the last BatchNorm's shift (ours keeps it at 0, as the authors; lightly's learns it); lightly's
LARS trust ratio eta ||w|| / (||g|| + wd ||w||) against ours eta ||w|| / ||g + wd w||, and its lr after
the momentum buffer against ours inside it (the authors' "classic" momentum); SimCLR's crop boxes (ours
TensorFlow's, as the authors' code, lightly's torchvision's: the same scale and ratio); the layout of
SimCLR's convolutions (our engine trains it channels-last, ``train.engine.training_layout``; lightly's loop
keeps PyTorch's default, in which our engine trains MoCo v2, whose split BatchNorms would copy in NHWC); for SimCLR, the colour jitter's brightness, contrast and saturation (ours are v1's TensorFlow ones, ``train.colour_tf``:
additive brightness, contrast about each channel's mean, HSV saturation; lightly's are torchvision's); and
resampling (PIL with antialiasing on the CPU, bilinear without it on the device). lightly's NTXentLoss is the mean over the 2N
views; ours, as the authors' code, is twice that, so the lightly side's SimCLR loss is doubled to give LARS
the same objective.

``python -m bench.vs_lightly`` needs lightly (``pip install -e '.[bench]'``); ``--quick`` runs one warm-up and one
timed step of each side on 2048 images and prints, ``--no-write`` prints without touching BENCHMARKS.md,
``--subset N`` trains and measures on a seeded N training and N/4 test images (a kNN run a CPU can afford).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from dataclasses import dataclass

import timm
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

import zoo.data
from train import batch_transforms as T
from train import data as datasets
from train import optim
from train.augment import Preprocess, StrongAugment
from train.config import Config
from train.engine import COMPILE_MODES, Schedules, compile_networks, on_device, train_step, training_loader, training_set
from train.knn import knn_monitor
from train.methods import METHODS
from train.methods.base import Progress

from .bare import sync
from .report import device_title, write_section

TITLE = "Against lightly (SimCLR, MoCo v2)"
METHOD_NAMES = {"simclr": "SimCLR", "mocov2": "MoCo v2"}
GOAL = 1.2  # times lightly's throughput, at an equal or better kNN
SIMCLR_LOSS_SCALE = 2.0  # ours is the authors' loss_a + loss_b; lightly's NTXentLoss is their mean


@dataclass(frozen=True)
class Spread:
    """The median of some values and their range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values) -> "Spread":
        values = list(values)
        return cls(statistics.median(values), min(values), max(values))

    def __str__(self) -> str:
        return f"{self.median:.4g} ({self.low:.4g}-{self.high:.4g})"


def ratio(ours: list[float], theirs: list[float]) -> Spread:
    """Ours over theirs: the ratio of the medians, and the range of the ratios of the repeats, pair by pair."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError(f"{len(ours)} and {len(theirs)} repeats: the ratio needs as many of each, at least one")
    pairs = [a / b for a, b in zip(ours, theirs)]
    return Spread(statistics.median(ours) / statistics.median(theirs), min(pairs), max(pairs))


def lightly_view_kwargs(views: StrongAugment) -> dict:
    """The keyword arguments of lightly's SimCLRTransform / MoCoV2Transform that make ``views``, one of our
    view makers, read off its own modules."""
    ops = {type(op): op for op in views.ops}
    crop, jitter, flip = views.crops[0], views.jitter, ops[T.RandomHorizontalFlip]
    normalize, blur = ops[T.Normalize], ops.get(T.RandomGaussianBlur)
    if crop.scale[1] != 1.0 or tuple(crop.ratio) != (3 / 4, 4 / 3):
        raise ValueError(f"lightly's crop takes scale (min, 1.0) and ratio (3/4, 4/3), not {crop}")
    return dict(input_size=crop.size, min_scale=crop.scale[0], cj_prob=jitter.p, cj_strength=1.0,
                cj_bright=jitter.brightness, cj_contrast=jitter.contrast, cj_sat=jitter.saturation,
                cj_hue=jitter.hue, random_gray_scale=ops[T.RandomGrayscale].p,
                gaussian_blur=blur.p if blur else 0.0,
                sigmas=blur.sigma if blur else (0.1, 2.0),
                hf_prob=flip.p, vf_prob=0.0, rr_prob=0.0,
                normalize=dict(mean=normalize.mean.flatten().tolist(), std=normalize.std.flatten().tolist()))


def preset(name: str, epochs: int | None = None) -> Config:
    cfg = METHODS[name].PRESETS["fmnist"].override(epochs=epochs)
    if cfg.clip_grad or cfg.weight_decay_end is not None:
        raise ValueError(f"{name}: the lightly side sets neither gradient clipping nor a weight-decay schedule")
    return cfg


class Ours:
    """The engine's path: in-memory uint8 images, ``training_loader``, ``train_step``; ``compiled``: the networks
    compiled in that mode as ``python -m train --compile MODE`` does (the warm-up steps, untimed, compile them)."""

    label = "ours"

    def __init__(self, name: str, cfg: Config, data: datasets.Data, device: torch.device, compiled: str | None = None):
        torch.manual_seed(cfg.seed)
        self.cfg, self.device = cfg, device
        self.model = on_device(METHODS[name].build(cfg, len(data.train), data.mean, data.std), device)
        if compiled:
            compile_networks(self.model, compiled)
        self.loader, self.sampler = training_loader(training_set(data, self.model), cfg, 0, 1, device)
        self.plan = Schedules.of(cfg, len(self.loader))
        self.optimizer = optim.build(self.model, cfg, self.plan.base_lr)
        self.backbone = self.model.export()

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        torch.manual_seed(self.cfg.seed + 1000 * epoch)

    def step(self, batch, step: int) -> None:
        images, index = batch
        progress = Progress(step // len(self.loader), step, self.plan.total_steps)
        train_step(self.model, self.model, self.optimizer, self.plan, images, index, progress, self.cfg, self.device)


class LightlySimCLR(nn.Module):
    def __init__(self, backbone: nn.Module, method: dict):
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        super().__init__()
        width = backbone.num_features
        self.backbone = backbone
        self.head = SimCLRProjectionHead(width, width, method["dim"], num_layers=method["head_layers"])
        self.criterion = NTXentLoss(temperature=method["temperature"])

    def forward(self, x0, x1):
        z0, z1 = self.head(self.backbone(torch.cat([x0, x1]))).chunk(2)  # one pass over both views, as ours
        return SIMCLR_LOSS_SCALE * self.criterion(z0, z1)


def split_batch_norm(module: nn.Module, splits: int) -> nn.Module:
    """Every BatchNorm2d of ``module`` replaced by lightly's SplitBatchNorm with the same affine parameters."""
    from lightly.models.batchnorm import SplitBatchNorm

    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            split = SplitBatchNorm(child.num_features, splits, eps=child.eps, momentum=child.momentum)
            split.weight.data.copy_(child.weight.data)
            split.bias.data.copy_(child.bias.data)
            setattr(module, name, split)
        else:
            split_batch_norm(child, splits)
    return module


class LightlyMoCoV2(nn.Module):
    def __init__(self, backbone: nn.Module, method: dict):
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()
        if not method["mlp"]:
            raise ValueError("MoCo v2 has an MLP head")
        width = backbone.num_features
        self.backbone = split_batch_norm(backbone, method["bn_splits"])
        self.head = MoCoProjectionHead(width, width, method["dim"])
        self.backbone_momentum, self.head_momentum = copy.deepcopy(self.backbone), copy.deepcopy(self.head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.head_momentum)
        self.criterion = NTXentLoss(temperature=method["temperature"],
                                    memory_bank_size=(method["queue_size"], method["dim"]))
        self.momentum = method["momentum"]

    def forward(self, x_query, x_key):
        from lightly.models.utils import batch_shuffle, batch_unshuffle, update_momentum

        query = self.head(self.backbone(x_query))
        with torch.no_grad():
            update_momentum(self.backbone, self.backbone_momentum, self.momentum)
            update_momentum(self.head, self.head_momentum, self.momentum)
            shuffled, order = batch_shuffle(x_key)
            key = batch_unshuffle(self.head_momentum(self.backbone_momentum(shuffled)), order)
        return self.criterion(query, key)


def rgb(image):
    return image.convert("RGB")


def our_views(name: str, mean, std) -> StrongAugment:
    """The one-view maker of our method ``name`` as its `fmnist` preset builds it."""
    return METHODS[name].build(preset(name), 1, mean, std).augment.augment


def lightly_transform(name: str, views: StrongAugment):
    """lightly's two-view transform of method ``name`` with the numbers of ``views``."""
    from lightly.transforms import MoCoV2Transform, SimCLRTransform

    return {"simclr": SimCLRTransform, "mocov2": MoCoV2Transform}[name](**lightly_view_kwargs(views))


def lightly_dataset(name: str, data: datasets.Data):
    """Fashion-MNIST's training split (the images ``data`` holds) as PIL images through lightly's transform."""
    from torchvision import transforms
    from torchvision.datasets import FashionMNIST

    transform = lightly_transform(name, our_views(name, data.mean, data.std))
    zoo.data.fashion_mnist(True)  # puts the files where torchvision reads them (Debian's package, or a download)
    dataset = FashionMNIST(zoo.data.data_home(), train=True, transform=transforms.Compose([rgb, transform]))
    return Subset(dataset, data.train.indices) if isinstance(data.train, Subset) else dataset


def lightly_optimizer(model: nn.Module, cfg: Config, lr: float) -> torch.optim.Optimizer:
    """The preset's optimiser over ``model.backbone`` and ``model.head``: lightly's LARS, sparing biases and
    norm layers from weight decay and the trust ratio if the preset does, or torch's SGD."""
    trainable = [model.backbone, model.head]
    if cfg.optimizer == "lars":
        from lightly.models.utils import get_weight_decay_parameters
        from lightly.utils.lars import LARS

        decay, other = get_weight_decay_parameters(trainable) if cfg.exclude_norm_bias else \
            ([p for m in trainable for p in m.parameters()], [])
        groups = [dict(params=decay), dict(params=other, weight_decay=0.0)]
        return LARS([g for g in groups if g["params"]], lr=lr, momentum=cfg.momentum,
                    weight_decay=cfg.weight_decay, trust_coefficient=cfg.lars_eta)
    if cfg.optimizer == "sgd" and not cfg.exclude_norm_bias:
        return torch.optim.SGD([p for m in trainable for p in m.parameters()], lr=lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    raise ValueError(f"no lightly counterpart written here for optimizer {cfg.optimizer!r}")


class Lightly:
    """A lightly user's loop over the same recipe: its transforms in DataLoader workers, its heads and losses."""

    label = "lightly"

    def __init__(self, name: str, cfg: Config, data: datasets.Data, device: torch.device, workers: int):
        torch.manual_seed(cfg.seed)
        self.cfg, self.device = cfg, device
        backbone = timm.create_model(cfg.arch, num_classes=0, **cfg.model_args)
        self.model = {"simclr": LightlySimCLR, "mocov2": LightlyMoCoV2}[name](backbone, cfg.method).to(device)
        self.generator = torch.Generator()
        self.loader = DataLoader(lightly_dataset(name, data), batch_size=cfg.batch_size, shuffle=True,
                                 drop_last=True, num_workers=workers, pin_memory=device.type == "cuda",
                                 generator=self.generator)
        self.plan = Schedules.of(cfg, len(self.loader))
        self.optimizer = lightly_optimizer(self.model, cfg, self.plan.base_lr)
        self.backbone = self.model.backbone

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.cfg.seed + epoch)
        torch.manual_seed(self.cfg.seed + 1000 * epoch)

    def step(self, batch, step: int) -> None:
        (x0, x1), _ = batch
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.plan.lr[step % self.plan.total_steps])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss = self.model(x0.to(self.device, non_blocking=True), x1.to(self.device, non_blocking=True))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def images_per_second(side, repeat: int, warmup: int, steps: int) -> float:
    """End to end over ``steps`` steps of a fresh pass over the loader, after ``warmup`` untimed ones."""
    if warmup + steps > len(side.loader):
        raise ValueError(f"{warmup} + {steps} steps do not fit in one epoch of {len(side.loader)} batches")
    side.set_epoch(repeat)
    first = repeat * (warmup + steps)
    batches = iter(side.loader)
    for i in range(warmup):
        side.step(next(batches), (first + i) % side.plan.total_steps)
    sync(side.device)
    began = time.perf_counter()
    for i in range(warmup, warmup + steps):
        side.step(next(batches), (first + i) % side.plan.total_steps)
    sync(side.device)
    seconds = time.perf_counter() - began
    del batches  # lightly's workers stop before the other side runs
    return steps * side.cfg.batch_size / seconds


def train_and_knn(side, data: datasets.Data, epochs: int) -> tuple[float, float]:
    """Train ``side`` for ``epochs`` full epochs; its kNN top-1 (%) and its images per second over them."""
    began, step = time.perf_counter(), 0
    for epoch in range(epochs):
        side.set_epoch(epoch)
        for batch in side.loader:
            side.step(batch, step)
            step += 1
    sync(side.device)
    seconds = time.perf_counter() - began
    preprocess = Preprocess(side.cfg.image_size, data.mean, data.std, data.crop_pct).to(side.device)
    return knn_monitor(side.backbone, data, preprocess, side.device), step * side.cfg.batch_size / seconds


@dataclass
class Result:
    name: str
    ours: list[float]  # images/s per repeat
    lightly: list[float]
    knn: dict | None = None  # side -> kNN top-1 (%) per seed, the same seeds on both sides
    epoch_rate: dict | None = None  # side -> images/s over each seed's kNN training

    @property
    def ratio(self) -> Spread:
        return ratio(self.ours, self.lightly)

    def knn_verdict(self) -> tuple[bool, str]:
        """Whether ours is equal or better by kNN, and why. Seed by seed (both sides start from the same
        seed): better in every seed is better, worse in every seed is worse, and a gap whose sign changes
        with the seed is no gap at all, so equal."""
        ours, theirs = self.knn["ours"], self.knn["lightly"]
        gaps = [a - b for a, b in zip(ours, theirs, strict=True)]
        mean = f"{statistics.mean(ours):.2f} {{}} {statistics.mean(theirs):.2f}"
        if len(gaps) > 1:
            mean += f" over {len(gaps)} seeds"
        if all(g >= 0 for g in gaps):
            return True, "kNN " + mean.format(">=")
        if all(g < 0 for g in gaps):
            return False, "kNN " + mean.format("<") + (" in every seed" if len(gaps) > 1 else "")
        return True, "kNN equal: " + mean.format("vs") + f", the gap's sign changes with the seed ({min(gaps):+.2f} to {max(gaps):+.2f})"

    def goal(self) -> str:
        """Decided only when every repeat's ratio falls on the same side of the goal as the median's: a range
        that straddles it is the machine's noise, not a result."""
        r = self.ratio
        fast = r.median >= GOAL
        speed = f"{r.median:.2f}x {'>=' if fast else '<'} {GOAL}x"
        if r.low < GOAL <= r.high:
            return f"undecided: {speed}, but the repeats span {r.low:.2f}-{r.high:.2f}x; rerun on a quieter machine"
        if self.knn is None:
            # every repeat short of the goal decides it; one that reaches it still needs the kNN
            return f"not met: {speed} in every repeat" if not fast else f"undecided: {speed}, kNN not measured"
        good, knn = self.knn_verdict()
        return f"{'met' if fast and good else 'not met'}: {speed}, {knn}"


def measure(name: str, data, device, workers: int, repeats: int, warmup: int, steps: int, epochs: int,
            seeds: int = 1, compiled: str | None = None) -> Result:
    cfg = preset(name)
    data = datasets.as_fed(data, cfg.normalize)  # both sides' views and the kNN as the recipe feeds them
    sides = [Ours(name, cfg, data, device, compiled), Lightly(name, cfg, data, device, workers)]
    rates = {side.label: [] for side in sides}
    for repeat in range(repeats):
        for side in sides:
            rates[side.label].append(images_per_second(side, repeat, warmup, steps))
            rate = rates[side.label][-1]
            print(f"{name} repeat {repeat + 1}/{repeats} {side.label}: {rate:.1f} images/s", flush=True)
    result = Result(name, rates["ours"], rates["lightly"])
    if epochs:
        del sides
        result.knn, result.epoch_rate = {"ours": [], "lightly": []}, {"ours": [], "lightly": []}
        for seed in range(cfg.seed, cfg.seed + seeds):
            seeded = preset(name, epochs).override(seed=seed)
            for side in (Ours(name, seeded, data, device, compiled), Lightly(name, seeded, data, device, workers)):
                knn, rate = train_and_knn(side, data, epochs)
                result.knn[side.label].append(knn)
                result.epoch_rate[side.label].append(rate)
                print(f"{name} {side.label} seed {seed}: kNN {knn:.2f}% after {epochs} epochs", flush=True)
    return result


COLUMNS = ("method", "ours images/s", "lightly images/s", "ratio ours / lightly", "kNN ours / lightly",
           "images/s over the kNN training, ours / lightly", "goal")
HEADER = "| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|"


def count(n: int, word: str, plural: str = "s") -> str:
    return f"{n} {word}{plural if n != 1 else ''}"


def seeded(values: list[float], spec: str) -> str:
    """One seed's value as it is; several as their mean with their range."""
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(statistics.mean(values), spec)} ({format(min(values), spec)}-{format(max(values), spec)})"


def report(results: list[Result], *, command: str, device: torch.device, workers: int, repeats: int, warmup: int,
           steps: int, epochs: int, train_images: int, test_images: int, lightly_version: str,
           seeds: int = 1, compiled: str | None = None) -> str:
    where = "GPU" if device.type == "cuda" else f"CPU, {count(torch.get_num_threads(), 'thread')}"
    rows = []
    for r in results:
        cfg = preset(r.name)
        knn = f"{seeded(r.knn['ours'], '.2f')} / {seeded(r.knn['lightly'], '.2f')}" if r.knn else "not measured"
        epoch_rate = (f"{seeded(r.epoch_rate['ours'], '.4g')} / {seeded(r.epoch_rate['lightly'], '.4g')}"
                      if r.epoch_rate else "-")
        rows.append(f"| {METHOD_NAMES[r.name]} (batch {cfg.batch_size}, {cfg.optimizer.upper()}) | "
                    f"{Spread.of(r.ours)} | {Spread.of(r.lightly)} | {r.ratio} | {knn} | {epoch_rate} | {r.goal()} |")
    first, processes = preset(results[0].name), count(workers, "DataLoader worker process", "es")
    per_seed = (f", for each of {seeds} seeds (both sides from the same seed; the mean with its range, and ours is "
                "equal when the gap's sign changes with the seed, better or worse when every seed agrees)"
                if seeds > 1 else "")
    knn_note = (f"kNN top-1 (%) after {count(epochs, 'epoch')} of each side from scratch over {train_images} "
                f"training images, which then vote for {test_images} test images (k=200, T=0.07){per_seed}" if epochs else
                "kNN not measured (`--epochs N` trains each side N epochs and measures it)")
    ours = (f" with its networks compiled (`torch.compile` in mode {compiled}, as `python -m train --compile {compiled}`: "
            "the compiling falls in the untimed warm-up of the timed steps, but inside the kNN training's images/s)"
            ) if compiled else ""
    cudnn = (" (cuDNN in benchmark mode for both: the engine turns it on, and the switch is the process's)"
             if device.type == "cuda" else "")
    return f"""
`{command}`: each method's `fmnist` preset trained by this
project's engine (in-memory uint8 images, views batched on the {where}){ours} and by lightly {lightly_version}
(torchvision's FashionMNIST as PIL images through lightly's transform in {processes}, one per CPU this process
may run on; lightly's heads, losses, momentum update, SplitBatchNorm and LARS),
both on timm's {first.arch} at {first.image_size} px from the same seed{cudnn}, with the same batch, augmentation numbers,
lr at every step, weight decay and steps. Images per second end to end (loading included) over
{count(steps, 'step')} after {count(warmup, 'warm-up step')}, ours and lightly's timed interleaved
{count(repeats, 'time')}: median (min-max); the ratio is of the medians, with the range of the per-repeat ratios.
{knn_note}. Goal: at least {GOAL}x lightly's throughput at an equal or better kNN.

{HEADER}
{chr(10).join(rows)}

Not equalised (each side keeps its library's parts): the projection heads' init and SimCLR's last BatchNorm
shift (learnt by lightly's head, kept at 0 by ours); LARS's trust ratio (lightly's eta ||w|| / (||g|| + wd ||w||),
ours eta ||w|| / ||g + wd w||) and its lr (lightly's after the momentum buffer, ours inside it as the authors');
SimCLR's crop boxes (ours TensorFlow's as the authors', lightly's torchvision's, the same ranges); SimCLR's convolutions' layout (ours channels-last, lightly's the default; MoCo v2 trains in the
default on both sides, as our engine keeps split BatchNorms NCHW) and
SimCLR's brightness, contrast and saturation (ours as v1's TensorFlow code, lightly's as torchvision); resampling (PIL with antialiasing, ours bilinear without it). lightly's SimCLR loss is doubled to equal ours
(the authors' sum of both directions).
"""


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(prog="python -m bench.vs_lightly", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", choices=list(METHOD_NAMES), default=list(METHOD_NAMES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each timed run")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--epochs", type=int, default=0, help="train each side N epochs and measure kNN (0: skip)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="train the kNN runs from this many seeds on each side, the same ones on both")
    parser.add_argument("--subset", type=int, default=0,
                        help="a seeded N training and N/4 test images instead of all (0: all), for a short kNN run")
    parser.add_argument("--compile", nargs="?", const="default", choices=COMPILE_MODES, metavar="MODE",
                        help="our side's networks compiled in MODE (default, reduce-overhead, max-autotune), as "
                             "train --compile")
    parser.add_argument("--quick", action="store_true",
                        help="one warm-up and one timed step of each side on 2048 images; prints only")
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    try:
        import lightly
    except ImportError:
        parser.error("lightly is not installed: pip install -e '.[bench]'")
    if args.quick:
        args.subset, args.repeats, args.warmup, args.steps, args.no_write = 2048, 1, 1, 1, True
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    workers = len(os.sched_getaffinity(0))
    data = datasets.load("fashion-mnist", 32, args.subset)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: at least one seed")
    results = [measure(name, data, device, workers, args.repeats, args.warmup, args.steps, args.epochs, args.seeds,
                       args.compile) for name in args.methods]
    command = " ".join([parser.prog, *(argv if argv is not None else sys.argv[1:])])
    body = report(results, command=command, device=device, workers=workers, repeats=args.repeats, warmup=args.warmup, steps=args.steps,
                  epochs=args.epochs, train_images=len(data.train), test_images=len(data.test),
                  lightly_version=lightly.__version__, seeds=args.seeds, compiled=args.compile)
    if not args.no_write:
        title = TITLE + {None: "", "default": ", ours compiled"}.get(args.compile, f", ours compiled ({args.compile})")
        write_section(device_title(title, device), body)
    return body


if __name__ == "__main__":
    print(main())
