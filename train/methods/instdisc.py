"""InstDisc: unsupervised feature learning via non-parametric instance discrimination
(Wu, Xiong, Yu & Lin, CVPR 2018, arXiv 1805.01978).

Every image is its own class. The backbone's features go through a linear map to a
128-d unit vector f_i; a memory bank keeps one such vector v_i per training image. The
non-parametric softmax P(i|f) = exp(v_i.f/T) / Z over all N images is learned by NCE
against m rows drawn uniformly from the bank, and after each step the batch's rows
move toward their new features.

The paper starts the bank from random unit vectors, so for the whole first epoch each
image's positive is noise, and with momentum 0.5 half of it still is in the second: in a
200-epoch run that fades, in a CPU run of a few epochs it is most of the signal. With
``bank_init="features"`` the bank starts from the initial network's own features of the
clean images (the engine's prefill pass), so every positive means something from the first
step. The ``paper`` preset keeps the random start.
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
from .base import Method, Progress, StepOutput, make_backbone


class InstDisc(Method):
    def __init__(self, backbone: nn.Module, augment: nn.Module, num_images: int, dim: int = 128,
                 negatives: int = 4096, temperature: float = 0.07, bank_momentum: float = 0.5,
                 proximal: float = 0.0, bank_init: str = "random"):
        super().__init__()
        if bank_init not in ("random", "features"):
            raise ValueError(f"bank_init must be 'random' (the paper) or 'features', not {bank_init!r}")
        self.backbone, self.augment = backbone, augment
        self.head = nn.Linear(backbone.num_features, dim)
        self.memory_bank = MemoryBank(num_images, dim, bank_momentum)
        self.negatives, self.temperature, self.proximal = negatives, temperature, proximal
        self.bank_init = bank_init
        # log Z is estimated once, on the first batch, then held fixed (Sec. 3.2); whether it is known is
        # also kept on the host, so that steps never wait on the device to ask
        self.register_buffer("log_z", torch.tensor(float("nan")))
        self.z_known = False
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "z_known", False))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """f = normalise(W g(x)): the 128-d unit feature the bank stores (Sec. 3.1)."""
        return F.normalize(self.head(self.backbone(images)).float(), dim=1)

    def logits(self, f: torch.Tensor, index: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v.f / T of each feature with its own row [B] and with the noise rows [B, m], in fp32 even under
        autocast: a bf16 product (8 significant bits) is off by a few 1e-3 in v.f, 14 times that after / T."""
        with torch.autocast(f.device.type, enabled=False):
            f, v = f.float(), self.memory_bank.memory.float()
            return (v[index] * f).sum(dim=1) / self.temperature, f @ v[noise].T / self.temperature

    @property
    def wants_prefill(self) -> bool:
        return self.bank_init == "features"

    @torch.no_grad()
    def prefill(self, batches) -> None:
        """With bank_init="features", v_i <- f_i(theta_0) for every (preprocessed images, index) batch;
        every rank writes every rank's rows, so the banks stay identical."""
        if self.bank_init != "features":
            return
        for images, index in batches:
            self.memory_bank.write(distributed.gather_no_grad(index), distributed.gather_no_grad(self.embed(images)))

    def forward(self, images: torch.Tensor, index: torch.Tensor, progress: Progress) -> StepOutput:
        f = self.embed(self.augment(images))
        v = self.memory_bank.memory
        # one draw of m noise rows serves the whole batch: the same P_n, without a B x m x d gather
        positive, noise = self.logits(f, index, self.memory_bank.sample(self.negatives))
        if not self.z_known:
            self.estimate_z(positive, noise)
        loss = nce_loss(positive, noise, self.log_z, len(v))
        if self.proximal:  # lambda ||v_i(t) - v_i(t-1)||^2, Sec. 3.3
            loss = loss + self.proximal * (f - v[index]).pow(2).sum(dim=1).mean()
        self.memory_bank.update(distributed.gather_no_grad(index), distributed.gather_no_grad(f))
        return StepOutput(loss, {"log_z": self.log_z.detach()})

    @torch.no_grad()
    def estimate_z(self, positive: torch.Tensor, noise: torch.Tensor) -> None:
        """Z ~ N mean exp(v.f/T) from the first batch, averaged over ranks (one host sync per run)."""
        if self.log_z.isnan():
            self.log_z.copy_(distributed.mean(estimate_log_z(torch.cat([positive[:, None], noise], 1),
                                                             len(self.memory_bank))))
        self.z_known = True


def build(cfg: Config, num_images: int, mean, std) -> InstDisc:
    return InstDisc(make_backbone(cfg), InstanceAugment(cfg.image_size, mean, std), num_images, **cfg.method)


PAPER_METHOD = dict(dim=128, negatives=4096, temperature=0.07, bank_momentum=0.5)
# The authors' ResNets start every residual branch at full scale. timm's default zero-initialises each
# block's last BN; at 32 px that leaves the initial network a chain of strided 1 x 1 subsamplings whose
# output sees one pixel of the 8 x 8 stem map (kNN 27% at init instead of 75%, and InstDisc never recovers).
AUTHORS_INIT = dict(zero_init_last=False)

# Fashion-MNIST at 32 px on a CPU: the paper's method and optimiser, a cosine schedule over a few epochs
CPU = dict(arch="resnet18", model_args=AUTHORS_INIT, image_size=32, batch_size=256, lr=0.03, schedule="cosine",
           method=dict(PAPER_METHOD, bank_init="features"), knn_subset=10000)

PRESETS = {
    # seconds: the tests' end-to-end run (the paper's random bank start)
    "smoke": Config(**dict(CPU, subset=512, epochs=2, batch_size=128, knn_subset=512, log_every=2,
                           method=dict(PAPER_METHOD, negatives=256))),
    # the CPU benchmark: about 11 minutes on two cores, within the 15 the benchmark allows
    "fmnist": Config(**CPU, epochs=4),
    # the demo's model when the published one cannot be had: one epoch of the same recipe
    "demo": Config(**CPU, epochs=1),
    # the paper's ImageNet recipe (Sec. 4) as lemniscate's ImageNet main.py runs it: ResNet-50, batch 256,
    # SGD 0.03, momentum 0.9, wd 1e-4 (5e-4 is its CIFAR script), 200 epochs, lr x0.1 at 120 and 160;
    # pass --data /path/to/imagenet
    "paper": Config(arch="resnet50", model_args=AUTHORS_INIT, dataset="imagenet", image_size=224, epochs=200,
                    batch_size=256, optimizer="sgd", lr=0.03, momentum=0.9, weight_decay=1e-4, schedule="step",
                    milestones=(120, 160), method=PAPER_METHOD, knn_subset=50000, workers=8),
}
