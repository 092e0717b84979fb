"""The yardstick every training benchmark divides by: one engine step of the bare backbone.

The bare step is timm's ResNet-18 with the authors' init (as the `fmnist` presets build it) at 32 px, batch
256: forward, a scalar, backward and SGD through the engine's ``train_step``, on real images preprocessed
beforehand. It is the work every method does at least, in PyTorch's default memory layout: a fixed reference
for the machine, so that what the engine does faster than plain PyTorch (it trains channels-last) counts in
the methods' favour. A method's step can be below 1 in this unit, never against its own backbone in the
engine's layout (``bench.throughput``'s middle column).
"""
from __future__ import annotations

import timm
import torch

from train import data as datasets
from train import optim
from train.augment import Preprocess
from train.config import Config
from train.engine import Schedules, train_step
from train.methods.base import Method, Progress, StepOutput

BARE = Config(arch="resnet18", model_args=dict(zero_init_last=False), image_size=32, batch_size=256)


class Bare(Method):
    """The backbone alone on already prepared images: forward, a scalar, backward."""

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, images, index, progress) -> StepOutput:
        return StepOutput(self.backbone(images).square().mean())


def sync(device: torch.device) -> None:
    """Wait for the device to finish the work queued on it (a CPU's is done when the call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_step(method: Method, cfg: Config, images, index, device: torch.device):
    """A closure running one engine step (schedules, forward, backward, hooks, optimiser) of ``method`` on one
    batch, at the first step of a long run."""
    plan = Schedules.of(cfg, steps_per_epoch=1000)
    optimizer = optim.build(method, cfg, plan.base_lr)
    return lambda: train_step(method, method, optimizer, plan, images, index, Progress(0, 0, plan.total_steps), cfg,
                              device)


def prepared(data: datasets.Data, index, size: int) -> torch.Tensor:
    """The training images ``index`` of ``data``, preprocessed once (resized to ``size``, normalised): a bare
    step's input, the augmentation left out."""
    images = torch.stack([data.train[int(i)][0] for i in index])
    return Preprocess(size, data.mean, data.std)(images)


def bare_step(data: datasets.Data, device: torch.device, batch: int = BARE.batch_size):
    """The bare step on the first ``batch`` training images of ``data``."""
    torch.manual_seed(0)
    method = Bare(timm.create_model(BARE.arch, num_classes=0, **BARE.model_args)).to(device)
    ready = prepared(data, range(min(batch, len(data.train))), BARE.image_size).to(device)
    return engine_step(method, BARE, ready, torch.arange(len(ready)), device)
