"""The engine: one loop trains every method (``train.methods.base.Method``), on a CPU, a GPU or many
through torchrun.

Before the first step of a fresh run a method may see every image once (``prefill``: InstDisc
fills its memory bank). Each step, in DINO's order: lr and weight decay from the precomputed
schedules -> forward under autocast -> backward -> ``after_backward`` -> clip -> optimiser step ->
``after_step``; the loss and the method's logs are read every ``log_every`` steps. Each epoch: a
seeded shuffle and augmentation stream (so a resumed run replays exactly the epochs it lost), the
kNN monitor, a log row and an atomic checkpoint. At the end ``export()`` goes to the zoo.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler
from tqdm import tqdm

import zoo.card
import zoo.checkpoint
from zoo.registry import ENTRIES
from zoo.resolve import zoo_home

from . import data as datasets
from . import distributed, optim, schedules
from .augment import Preprocess
from .blocks.collapse import collapse_warning
from .blocks.shuffle_bn import SplitBatchNorm
from .config import Config
from .knn import knn_monitor
from .log import EpochLog, Meter
from .methods import METHODS
from .methods.base import Method, Progress, StepOutput

CHECKPOINT = "checkpoint.pt"


@dataclass
class Schedules:
    """The run's lr and weight decay at every step (functions of the step alone), and the base lr that
    ``fixed_lr`` groups keep."""

    lr: np.ndarray
    weight_decay: np.ndarray
    base_lr: float

    @classmethod
    def of(cls, cfg: Config, steps_per_epoch: int) -> "Schedules":
        return cls(schedules.lr_schedule(cfg, steps_per_epoch), schedules.weight_decay_schedule(cfg, steps_per_epoch),
                   schedules.base_lr(cfg))

    @property
    def total_steps(self) -> int:
        return len(self.lr)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        optim.set_lr_and_weight_decay(optimizer, float(self.lr[step]), float(self.weight_decay[step]), self.base_lr)


def to_device(images, device: torch.device):
    """A batch of whole images, or (image files) the list of its crops, on ``device``."""
    if isinstance(images, torch.Tensor):
        return images.to(device, non_blocking=True)
    return [crop.to(device, non_blocking=True) for crop in images]


def train_step(trainer, method: Method, optimizer, plan: Schedules, images, index, progress: Progress,
               cfg: Config, device: torch.device) -> StepOutput:
    """One optimisation step in DINO's order; ``trainer`` is ``method`` or its DDP wrapper."""
    torch.compiler.cudagraph_mark_step_begin()  # under CUDA graphs (--compile reduce-overhead) a new step may reuse
    plan.apply(optimizer, progress.step)        # the last one's graph outputs; elsewhere it does nothing
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = trainer(to_device(images, device), index.to(device, non_blocking=True), progress)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    method.after_backward(progress)
    if cfg.clip_grad:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.clip_grad)
    optimizer.step()
    method.after_step(progress)
    return out


def train_epoch(trainer, method: Method, loader, optimizer, plan: Schedules, epoch: int, cfg: Config,
                device: torch.device, bar_title: str = "", show: bool = False) -> dict[str, float]:
    """One pass over ``loader``; returns the epoch's mean loss and logs. The bar shows the last read loss."""
    meter, step = Meter(cfg.log_every), epoch * len(loader)
    bar = tqdm(loader, desc=bar_title, disable=not show, leave=False)
    for images, index in bar:
        out = train_step(trainer, method, optimizer, plan, images, index, Progress(epoch, step, plan.total_steps),
                         cfg, device)
        if meter.add(out.loss, out.logs):
            bar.set_postfix(loss=f"{meter.last['loss']:.4f}")
        step += 1
    return meter.means()


def save_atomic(obj, path: Path) -> None:
    """torch.save through a temporary file, so a kill mid-write never corrupts the last checkpoint."""
    partial = path.with_suffix(".partial")
    torch.save(obj, partial)
    os.replace(partial, path)


def export_name(method: str, preset: str, cfg: Config) -> str:
    tag = "fmnist" if cfg.dataset == "fashion-mnist" else Path(cfg.dataset).name.lower()
    arch = cfg.arch.removeprefix(f"{method}_")  # the zoo's own architectures carry the method's name already
    return f"{method}-{arch}-{tag}" + ("" if preset in ("fmnist", "paper") else f"-{preset}")


@torch.no_grad()
def prefill(method: Method, data: datasets.Data, preprocess, cfg: Config, device, rank: int, world: int) -> None:
    """Hand the method every training image once, cleanly preprocessed, in train mode and without
    gradients, before the first step (InstDisc fills its memory bank from them). Each rank takes
    an equal shard; the method gathers what it must share."""
    shard = DistributedSampler(datasets.Indexed(data.train), world, rank, shuffle=False)
    loader = DataLoader(datasets.Indexed(data.train), batch_size=cfg.batch_size // world, sampler=shard,
                        num_workers=cfg.workers)
    bar = tqdm(loader, desc="prefill", disable=rank != 0, leave=False)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        method.prefill((preprocess(images.to(device)), index.to(device)) for images, index in bar)


def restore(out: Path, cfg: Config, resume: bool, rank: int) -> tuple[dict | None, Config]:
    """The run folder's last checkpoint and its config (with this call's epochs), if resuming."""
    if resume and (out / CHECKPOINT).exists():
        state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
        return state, Config(**state["config"]).override(epochs=cfg.epochs)
    if resume and rank == 0:
        print(f"--resume: no {out / CHECKPOINT} yet, starting from epoch 0")
    return None, cfg


def training_set(data: datasets.Data, method: Method):
    """In-memory images whole (the method's views crop them on the device); image files decoded and cut
    by the CPU workers into the method's crops, each from the full-resolution image."""
    return data.train if data.train_files is None else data.training_crops(method.crops)


def training_loader(dataset, cfg: Config, rank: int, world: int, device) -> tuple[DataLoader, DistributedSampler]:
    """Each rank's shard of a seeded shuffle, in fixed-size batches. Workers are started afresh each
    epoch, so their random crops follow the epoch's seed and a resumed run replays them."""
    sampler = DistributedSampler(datasets.Indexed(dataset), world, rank, shuffle=True, seed=cfg.seed, drop_last=True)
    batch, pin = cfg.batch_size // world, device.type == "cuda"
    if datasets.in_memory(dataset):  # a batch in one gather: per-image lookups cost a GPU step's time on the host
        loader = DataLoader(datasets.Indexed(dataset), sampler=BatchSampler(sampler, batch, drop_last=True),
                            batch_size=None, num_workers=cfg.workers, pin_memory=pin)
    else:
        loader = DataLoader(datasets.Indexed(dataset), batch_size=batch, sampler=sampler, drop_last=True,
                            num_workers=cfg.workers, pin_memory=pin)
    if len(loader) == 0:
        raise ValueError(f"{len(dataset)} training images cannot fill one batch of {cfg.batch_size // world} per "
                         f"process: lower --batch-size or train on more images")
    return loader, sampler


def training_layout(model: torch.nn.Module) -> torch.memory_format:
    """The layout the engine trains ``model``'s convolutions in: channels-last (NHWC), in which oneDNN (on CPUs) and
    cuDNN's tensor-core kernels compute them, so that each conv takes and gives NHWC instead of converting on the
    way in and out (a ResNet-18 step at 32 px runs about 1.25x faster on a CPU core).

    A model with a :class:`SplitBatchNorm` (MoCo's shuffling BN on one device) stays NCHW: its groups are (N, C, H, W)
    seen as (N / g, C g, H, W), a view of NCHW memory but not of NHWC, where every such BatchNorm would copy its
    input out of the layout and the next convolution copy it back (``python -m bench.layout`` measures both)."""
    grouped = any(isinstance(m, SplitBatchNorm) for m in model.modules())
    return torch.contiguous_format if grouped else torch.channels_last


def on_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device`` in its :func:`training_layout`. The values are the same; ``zoo.checkpoint.save``
    writes them dense. On CUDA, cuDNN in benchmark mode, as the authors' main_moco.py, main_simsiam.py and
    main_dino.py set it: it times the algorithms for each convolution shape it first meets and keeps the
    fastest, which pays off because the engine's batches keep one shape (``drop_last``)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return model.to(device, memory_format=training_layout(model))


# torch.compile's modes: inductor's fused kernels ("default"); the same replayed as CUDA graphs, one launch per
# network and pass ("reduce-overhead"); kernels autotuned at compile time ("max-autotune", minutes more)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def compile_networks(method: Method, mode: str = "default", backend: str = "inductor") -> Method:
    """``torch.compile`` each of the method's networks in place (``Method.networks``). On a GPU a small-image step
    is bound by kernel launches, not arithmetic: inductor fuses each BatchNorm, activation and residual add with
    its neighbours into fewer kernels, and ``mode="reduce-overhead"`` replays each network's passes as CUDA graphs,
    which the engine's steps allow (no host syncs, fixed batch shapes). The gain on a GPU:
    ``python -m bench.gpu --parts compiled,graphed``. On a CPU it only costs the compiling (CUDA graphs need CUDA).
    In place, the state dict keeps its keys (checkpoints and exports are as without), and a deep copy is eager.
    ``backend="aot_eager"`` traces and functionalises as inductor does but runs the traced graphs eagerly (and
    ignores ``mode``): how the tests check the tracing on a CPU without paying for kernel generation."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; choose from {', '.join(COMPILE_MODES)}")
    for network in method.networks():
        # static shapes, as the engine's batches keep one: left to guess, dynamo recompiled MoCo's key encoder (its
        # wrapper's code is shared with the query encoder's) for symbolic sizes, which took inductor's CPU code
        # generation over 15 minutes for two smoke steps (17 s static), and CUDA graphs want one shape anyway
        network.compile(backend=backend, mode=None if mode == "default" else mode, dynamic=False)
    return method


def fit(method: str, preset: str, cfg: Config, out: Path, resume: bool = False, export: bool = True,
        name: str | None = None, after_epoch: Callable[[int], None] | None = None,
        compiled: str | None = None) -> Path | None:
    """Train ``method`` with ``cfg``, checkpointing into ``out``; returns the exported folder. ``after_epoch(epoch)``
    runs on the first process once each epoch's checkpoint is written (a benchmark times its yardstick there).
    ``compiled``: the networks compiled in this mode (:func:`compile_networks`), a choice of this call, not of the
    recipe."""
    rank, world, device = distributed.setup()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state, cfg = restore(out, cfg, resume, rank)
    data = datasets.as_fed(datasets.load(cfg.dataset, cfg.image_size, cfg.subset, cfg.seed), cfg.normalize)
    torch.manual_seed(cfg.seed)  # the same initial weights and memory bank on every rank
    model = on_device(METHODS[method].build(cfg, len(data.train), data.mean, data.std), device)
    loader, sampler = training_loader(training_set(data, model), cfg, rank, world, device)
    plan = Schedules.of(cfg, len(loader))
    optimizer = optim.build(model, cfg, plan.base_lr)
    start = 0
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
    preprocess = Preprocess(cfg.image_size, data.mean, data.std, data.crop_pct).to(device)
    if start == 0 and model.wants_prefill:
        prefill(model, data, preprocess, cfg, device, rank, world)
    if compiled:  # after the one pass of prefill, which would compile a graph for nothing
        compile_networks(model, compiled)
    # buffers (e.g. the memory bank) stay in step by gathering updates, not by broadcast
    trainer = DistributedDataParallel(model, broadcast_buffers=False) if world > 1 else model
    log = EpochLog(out, start) if rank == 0 else None

    for epoch in range(start, cfg.epochs):
        sampler.set_epoch(epoch)
        torch.manual_seed(cfg.seed + 1000 * epoch + rank)  # this epoch's augmentations and noise draws
        began = time.time()
        means = train_epoch(trainer, model, loader, optimizer, plan, epoch, cfg, device,
                            f"{method} epoch {epoch + 1}/{cfg.epochs}", show=rank == 0)
        if rank == 0:
            knn = knn_monitor(model.export(), data, preprocess, device, cfg.knn_subset, cfg.seed)
            row = dict(epoch=epoch + 1, **{k: round(v, 5) for k, v in means.items()}, knn_top1=round(knn, 2),
                       lr=f"{plan.lr[(epoch + 1) * len(loader) - 1]:.5g}", seconds=round(time.time() - began, 1))
            log.log(**row)
            print("  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
            if warning := collapse_warning(means):
                print(f"epoch {epoch + 1}: {warning}", file=sys.stderr, flush=True)
            save_atomic(dict(model=model.state_dict(), optimizer=optimizer.state_dict(), epoch=epoch + 1,
                             method=method, config=asdict(cfg)), out / CHECKPOINT)
            if after_epoch:
                after_epoch(epoch + 1)
        if world > 1:
            torch.distributed.barrier()

    folder = None
    if export and rank == 0:
        history = dict(method=method, preset=preset, device=str(device), processes=world,
                       epochs=[{k: float(v) for k, v in r.items() if k in ("epoch", "loss", "knn_top1", "seconds")}
                               for r in log.rows],
                       train_minutes=round(sum(float(r["seconds"]) for r in log.rows) / 60, 2))
        folder = export_model(model.export(), method, preset, cfg, data, preprocess, device, name, history=history)
        for suffix, extra in model.extra_exports().items():  # each a registered timm architecture, its cfg says what
            export_model(extra, method, preset, cfg, data, preprocess, device, f"{folder.name}-{suffix}",
                         extra.pretrained_cfg["description"], extra.pretrained_cfg["architecture"], history)
    if world > 1:
        torch.distributed.destroy_process_group()
    return folder


def write_checkpoint(model: torch.nn.Module, folder: Path, cfg: Config, data: datasets.Data, card: str) -> Path:
    """``model`` in the zoo's format (what ``zoo.load`` reads), with this run's preprocessing."""
    data_config = dict(input_size=(3, cfg.image_size, cfg.image_size), mean=data.mean, std=data.std,
                       crop_pct=data.crop_pct, interpolation="bilinear")
    return zoo.checkpoint.save(copy.deepcopy(model).cpu().float(), folder, data_config=data_config,
                               model_args=cfg.model_args, card=card)


def export_model(model, method, preset, cfg, data, preprocess, device, name=None, description=None,
                 arch=None, history: dict | None = None) -> Path:
    """Measure the final kNN on the full splits and write the exported model to the local zoo, with
    ``history`` (the training curve and its minutes) as ``training.json`` beside it for the leaderboard."""
    name, arch = name or export_name(method, preset, cfg), arch or cfg.arch
    knn = knn_monitor(model, data, preprocess, device)
    recipe = {"preset": preset, "dataset": cfg.dataset, "epochs": cfg.epochs, "batch size": cfg.batch_size,
              "optimizer": cfg.optimizer,
              "lr": f"{cfg.lr} ({cfg.schedule}" + ("" if cfg.lr_scaling == "none" else f", {cfg.lr_scaling} scaling") + ")",
              "weight decay": cfg.weight_decay, "image size": cfg.image_size, **cfg.method}
    entry = ENTRIES.get(name)
    description = entry.description if entry else (description or f"{method} {cfg.arch}") + \
        f" trained with `python -m train {method} --preset {preset}`."
    text = zoo.card.render(name, method, arch, "fashion-mnist" if cfg.dataset == "fashion-mnist" else cfg.dataset,
                           description, {zoo.card.KNN_METRIC: knn}, recipe)
    folder = write_checkpoint(model, zoo_home() / name, cfg, data, text)
    if history:
        record = dict(history, dataset=cfg.dataset, arch=arch)
        (folder / zoo.checkpoint.TRAINING).write_text(json.dumps(record, indent=1) + "\n")
    print(f"exported {name} (kNN top-1 {knn:.2f}%) to {folder}", flush=True)
    return folder
