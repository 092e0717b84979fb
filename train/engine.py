"""The engine: one loop trains every method, on a CPU, a GPU or many through torchrun.

Before the first epoch a method may see every image once (``warm_start``: InstDisc fills
its memory bank). Per epoch: a seeded shuffle and augmentation stream (so a resumed run
replays exactly the epochs it lost), the method's loss, an SGD step on the schedule, the
kNN monitor, a log row and an atomic checkpoint. At the end the backbone is exported to the zoo.
"""
from __future__ import annotations

import copy
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import timm
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import zoo.card
import zoo.checkpoint
from zoo.registry import ENTRIES
from zoo.resolve import zoo_home

from . import data as datasets
from . import distributed
from .augment import Preprocess
from .config import Config
from .knn import embed, knn_accuracy
from .log import EpochLog
from .methods import METHODS

CHECKPOINT = "checkpoint.pt"
MODEL_CARDS = Path(__file__).resolve().parents[1] / "model_cards"


def lr_factor(cfg: Config, steps_per_epoch: int):
    """Linear warm-up, then a cosine decay to 0 or x0.1 at each milestone epoch."""
    warmup, total = cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
        return 0.1 ** sum(step // steps_per_epoch >= m for m in cfg.milestones)
    return factor


def optimizer_for(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """SGD with momentum; with ``cfg.exclude_norm_bias``, biases and normalisation weights (the 1-d
    parameters) get no weight decay, as SimCLR, BYOL and MoCo v3 train."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": params}]
    if cfg.exclude_norm_bias:
        groups = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def optimise(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: Config) -> None:
    """One step: gradients of ``loss``, clipped to norm ``cfg.clip_grad`` if set, then the update."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip_grad:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
    optimizer.step()


def save_atomic(obj, path: Path) -> None:
    """torch.save through a temporary file, so a kill mid-write never corrupts the last checkpoint."""
    partial = path.with_suffix(".partial")
    torch.save(obj, partial)
    os.replace(partial, path)


def export_name(method: str, preset: str, cfg: Config) -> str:
    tag = "fmnist" if cfg.dataset == "fashion-mnist" else Path(cfg.dataset).name.lower()
    return f"{method}-{cfg.arch}-{tag}" + ("" if preset in ("fmnist", "paper") else f"-{preset}")


def knn_monitor(backbone, data: datasets.Data, preprocess, device, limit: int = 0) -> float:
    """kNN top-1 (k=200, T=0.07) of L2-normalised backbone features, on the first ``limit`` images."""
    def features(dataset, n):
        subset = torch.utils.data.Subset(dataset, range(min(n, len(dataset)))) if n else dataset
        return embed(backbone, (x for x, _ in DataLoader(subset, batch_size=512)), preprocess, device)

    train, test = features(data.train, limit), features(data.test, limit // 4)
    return knn_accuracy(train, data.train_labels[:len(train)], test, data.test_labels[:len(test)])


def warm_start(model, data: datasets.Data, preprocess, cfg: Config, device, rank: int, world: int) -> None:
    """Hand the method every training image once, cleanly preprocessed, in train mode and without
    gradients, before the first step (InstDisc fills its memory bank from them). Each rank takes
    an equal shard; the method gathers what it must share."""
    shard = DistributedSampler(datasets.Indexed(data.train), world, rank, shuffle=False)
    loader = DataLoader(datasets.Indexed(data.train), batch_size=cfg.batch_size // world, sampler=shard,
                        num_workers=cfg.workers)
    bar = tqdm(loader, desc="warm start", disable=rank != 0, leave=False)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        model.warm_start((preprocess(images.to(device)), index.to(device)) for images, index in bar)


def fit(method: str, preset: str, cfg: Config, out: Path, resume: bool = False,
        export: bool = True, name: str | None = None) -> Path | None:
    """Train ``method`` with ``cfg``, checkpointing into ``out``; returns the exported folder."""
    rank, world, device = distributed.setup()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = None
    if resume and (out / CHECKPOINT).exists():
        state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
        cfg = Config(**state["config"]).override(epochs=cfg.epochs)
    elif resume and rank == 0:
        print(f"--resume: no {out / CHECKPOINT} yet, starting from epoch 0")

    data = datasets.load(cfg.dataset, cfg.image_size, cfg.subset)
    torch.manual_seed(cfg.seed)  # the same initial weights and memory bank on every rank
    backbone = timm.create_model(cfg.arch, num_classes=0, **cfg.model_args)
    model = METHODS[method].build(backbone, cfg, len(data.train), data.mean, data.std).to(device)
    sampler = DistributedSampler(datasets.Indexed(data.train), world, rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    loader = DataLoader(datasets.Indexed(data.train), batch_size=cfg.batch_size // world, sampler=sampler,
                        drop_last=True, num_workers=cfg.workers, pin_memory=device.type == "cuda",
                        persistent_workers=cfg.workers > 0)
    optimizer = optimizer_for(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, len(loader)))
    start = 0
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["epoch"]
    preprocess = Preprocess(cfg.image_size, data.mean, data.std, data.crop_pct).to(device)
    if start == 0 and hasattr(model, "warm_start"):
        warm_start(model, data, preprocess, cfg, device, rank, world)
    # buffers (e.g. the memory bank) stay in step by gathering updates, not by broadcast
    trainer = DistributedDataParallel(model, broadcast_buffers=False) if world > 1 else model
    log = EpochLog(out, start) if rank == 0 else None

    for epoch in range(start, cfg.epochs):
        sampler.set_epoch(epoch)
        torch.manual_seed(cfg.seed + 1000 * epoch + rank)  # this epoch's augmentations and noise draws
        began, total, steps = time.time(), 0.0, 0
        bar = tqdm(loader, desc=f"{method} epoch {epoch + 1}/{cfg.epochs}", disable=rank != 0, leave=False)
        for images, index in bar:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = trainer(images.to(device, non_blocking=True), index.to(device, non_blocking=True))
            optimise(loss, model, optimizer, cfg)
            scheduler.step()
            total, steps = total + loss.item(), steps + 1
            bar.set_postfix(loss=f"{total / steps:.4f}")
        if rank == 0:
            knn = knn_monitor(model.backbone, data, preprocess, device, cfg.knn_subset)
            row = dict(epoch=epoch + 1, loss=round(total / steps, 5), knn_top1=round(knn, 2),
                       lr=f"{scheduler.get_last_lr()[0]:.5g}", seconds=round(time.time() - began, 1))
            log.log(**row)
            print("  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
            save_atomic(dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                             scheduler=scheduler.state_dict(), epoch=epoch + 1, method=method,
                             config=asdict(cfg)), out / CHECKPOINT)
        if world > 1:
            torch.distributed.barrier()

    folder = None
    if export and rank == 0:
        folder = export_backbone(model.backbone, method, preset, cfg, data, preprocess, device, name)
    if world > 1:
        torch.distributed.destroy_process_group()
    return folder


def export_backbone(backbone, method, preset, cfg, data, preprocess, device, name=None) -> Path:
    """Measure the final kNN on the full splits and write the backbone to the local zoo."""
    name = name or export_name(method, preset, cfg)
    knn = knn_monitor(backbone, data, preprocess, device)
    recipe = {"preset": preset, "dataset": cfg.dataset, "epochs": cfg.epochs, "batch size": cfg.batch_size,
              "lr": f"{cfg.lr} ({cfg.schedule})", "weight decay": cfg.weight_decay,
              "image size": cfg.image_size, **cfg.method}
    entry = ENTRIES.get(name)
    text = zoo.card.render(name, method, cfg.arch, "fashion-mnist" if cfg.dataset == "fashion-mnist" else cfg.dataset,
                           entry.description if entry else f"{method} {cfg.arch} trained with `python -m train`.",
                           {zoo.card.KNN_METRIC: knn}, recipe)
    data_config = dict(input_size=(3, cfg.image_size, cfg.image_size), mean=data.mean, std=data.std,
                       crop_pct=data.crop_pct, interpolation="bilinear")
    folder = zoo.checkpoint.save(copy.deepcopy(backbone).cpu().float(), zoo_home() / name,
                                 data_config=data_config, model_args=cfg.model_args, card=text)
    if entry and MODEL_CARDS.is_dir():  # the project's published cards live in the repository too
        shutil.copy(folder / zoo.checkpoint.CARD, MODEL_CARDS / f"{name}.md")
    print(f"exported {name} (kNN top-1 {knn:.2f}%) to {folder}", flush=True)
    return folder
