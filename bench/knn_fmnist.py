"""kNN top-1 (k=200, T=0.07) on the Fashion-MNIST test set: InstDisc's `fmnist` preset against
raw pixels and a randomly initialised backbone, all measured by the same monitor."""
from __future__ import annotations

import csv
import time

import timm
import torch
from torch import nn

import zoo
from train import data as datasets
from train.augment import Preprocess
from train.engine import fit, knn_monitor
from train.methods.instdisc import PRESETS

from .report import write_section


class Pixels(nn.Module):
    def forward(self, x):
        return x.flatten(1)


def main() -> None:
    cfg = PRESETS["fmnist"]
    data = datasets.load("fashion-mnist", cfg.image_size)
    device = torch.device("cpu")
    pixels = knn_monitor(Pixels(), data, lambda x: x.float(), device)
    preprocess = Preprocess(cfg.image_size, data.mean, data.std)
    random_init = {}
    inits = (("timm's default init (last BN of each block zeroed)", {}), ("the authors' init", cfg.model_args))
    for label, args in inits:
        torch.manual_seed(0)
        backbone = timm.create_model(cfg.arch, num_classes=0, **args)
        random_init[label] = knn_monitor(backbone, data, preprocess, device)
    began = time.time()
    folder = fit("instdisc", "fmnist", cfg, "runs/bench-instdisc-fmnist")
    minutes = (time.time() - began) / 60
    (trained,) = zoo.info(folder.name)["metrics"].values()
    with open("runs/bench-instdisc-fmnist/metrics.csv") as log:
        curve = " -> ".join(f"{float(row['knn_top1']):.1f}" for row in csv.DictReader(log))
    write_section("InstDisc on Fashion-MNIST (kNN)", f"""
`python -m bench.knn_fmnist`: kNN top-1 (k=200, T=0.07, cosine on L2-normalised features) of the 60k
training images voting for the 10k test images. Preset `fmnist`: {cfg.arch} at {cfg.image_size} px,
{cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr} ({cfg.schedule}), {cfg.method['negatives']} NCE noise samples, T={cfg.method['temperature']},
the authors' ResNet init and a memory bank started from the initial features (see `train/methods/instdisc.py`).

| features | kNN top-1 (%) | CPU minutes |
|---|---|---|
| raw pixels (784-d) | {pixels:.2f} | - |
""" + "".join(f"| {cfg.arch}, random, {label} | {value:.2f} | - |\n" for label, value in random_init.items()) + f"""| {cfg.arch}, InstDisc `fmnist` preset | {trained:.2f} | {minutes:.1f} (training + monitor + export) |

The monitor after each epoch (first 10k training images voting for the first 2.5k test images): {curve}.
""")


if __name__ == "__main__":
    main()
