"""InstDisc: unsupervised feature learning via non-parametric instance discrimination
(Wu, Xiong, Yu & Lin, CVPR 2018, arXiv 1805.01978).

Every image is its own class. The backbone's features go through a linear map to a
128-d unit vector f_i; a memory bank keeps one such vector v_i per training image. The
non-parametric softmax P(i|f) = exp(v_i.f/T) / Z over all N images is learned by NCE
against m rows drawn uniformly from the bank, and after each step the batch's rows
move toward their new features.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .. import distributed
from ..augment import InstanceAugment
from ..blocks.losses import estimate_log_z, nce_loss
from ..blocks.memory_bank import MemoryBank
from ..config import Config


class InstDisc(nn.Module):
    def __init__(self, backbone: nn.Module, augment: nn.Module, num_images: int, dim: int = 128,
                 negatives: int = 4096, temperature: float = 0.07, bank_momentum: float = 0.5,
                 proximal: float = 0.0):
        super().__init__()
        self.backbone, self.augment = backbone, augment
        self.head = nn.Linear(backbone.num_features, dim)
        self.memory_bank = MemoryBank(num_images, dim, bank_momentum)
        self.negatives, self.temperature, self.proximal = negatives, temperature, proximal
        # log Z is estimated once, on the first batch, then held fixed (Sec. 3.2)
        self.register_buffer("log_z", torch.tensor(float("nan")))

    def forward(self, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        f = F.normalize(self.head(self.backbone(self.augment(images))).float(), dim=1)
        v = self.memory_bank.memory
        positive = (v[index] * f).sum(dim=1) / self.temperature
        # one draw of m noise rows serves the whole batch: the same P_n, without a B x m x d gather
        noise = f @ v[self.memory_bank.sample(self.negatives)].T / self.temperature
        if self.log_z.isnan():
            self.log_z.copy_(distributed.mean(estimate_log_z(torch.cat([positive[:, None], noise], 1).detach(),
                                                             len(v))))
        loss = nce_loss(positive, noise, self.log_z, len(v))
        if self.proximal:  # lambda ||v_i(t) - v_i(t-1)||^2, Sec. 3.3
            loss = loss + self.proximal * (f - v[index]).pow(2).sum(dim=1).mean()
        self.memory_bank.update(distributed.gather(index), distributed.gather(f.detach()))
        return loss


def build(backbone: nn.Module, cfg: Config, num_images: int, mean, std) -> InstDisc:
    return InstDisc(backbone, InstanceAugment(cfg.image_size, mean, std), num_images, **cfg.method)


PAPER_METHOD = dict(dim=128, negatives=4096, temperature=0.07, bank_momentum=0.5)

PRESETS = {
    # seconds on a CPU: the tests' end-to-end run
    "smoke": Config(arch="resnet18", image_size=32, subset=512, epochs=2, batch_size=128,
                    method=dict(PAPER_METHOD, negatives=256), knn_subset=512),
    # the CPU benchmark: Fashion-MNIST, 32 x 32, a few minutes per epoch on two cores
    "fmnist": Config(arch="resnet18", image_size=32, epochs=3, batch_size=256, lr=0.03,
                     schedule="cosine", method=PAPER_METHOD, knn_subset=10000),
    # the demo's quick model when the published one cannot be had: one epoch of the fmnist recipe
    "demo": Config(arch="resnet18", image_size=32, epochs=1, batch_size=256, lr=0.03,
                   schedule="cosine", method=PAPER_METHOD, knn_subset=10000),
    # the paper's ImageNet recipe (Sec. 4): ResNet-50, batch 256, SGD 0.03, wd 5e-4, 200 epochs,
    # lr x0.1 at 120 and 160; pass --data /path/to/imagenet
    "paper": Config(arch="resnet50", dataset="imagenet", image_size=224, epochs=200, batch_size=256,
                    lr=0.03, momentum=0.9, weight_decay=5e-4, schedule="step", milestones=(120, 160),
                    method=PAPER_METHOD, knn_subset=50000, workers=8),
}
