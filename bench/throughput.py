"""Training throughput: the InstDisc step against the bare backbone's forward + backward on the same batch."""
from __future__ import annotations

import time

import timm
import torch

from train.methods.instdisc import PRESETS, build

from .report import write_section


def images_per_second(step, batch: int, repeats: int = 5) -> float:
    step()  # warm-up
    began = time.perf_counter()
    for _ in range(repeats):
        step()
    return batch * repeats / (time.perf_counter() - began)


def main(batch: int = 256) -> None:
    cfg = PRESETS["fmnist"]
    torch.manual_seed(0)
    images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8)
    index = torch.randperm(60000)[:batch]
    method = build(timm.create_model(cfg.arch, num_classes=0, **cfg.model_args), cfg, 60000, (0.286,) * 3, (0.353,) * 3)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.01, momentum=0.9)
    ready = method.augment(images)

    def instdisc_step():
        loss = method(images, index)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def backbone_step():
        loss = method.backbone(ready).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    full, bare = images_per_second(instdisc_step, batch), images_per_second(backbone_step, batch)
    write_section("Training throughput", f"""
`python -m bench.throughput`: images/s of one optimisation step at batch {batch}, {cfg.arch} at
{cfg.image_size} px. The InstDisc step includes batched augmentation, the 128-d head, NCE against
{cfg.method['negatives']} noise rows and the memory-bank update; the bare step is backbone forward + backward + SGD.

| step | images/s |
|---|---|
| InstDisc (`fmnist` preset) | {full:.0f} |
| bare {cfg.arch} forward + backward | {bare:.0f} |
| ratio InstDisc / bare | {full / bare:.2f} |
""")


if __name__ == "__main__":
    main()
