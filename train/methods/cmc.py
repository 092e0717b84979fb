"""CMC: contrastive multiview coding (Tian, Krishnan & Isola, 2019, arXiv 1906.05849).

Two views of each image, its L and ab channels in Lab colour, each with its own encoder and a
linear map to a 128-d unit feature. The views of one image are a positive pair, any other
image a negative: L's feature must pick out its own image's ab feature among the negatives and
ab's its own L, so the objective is L(V1, V2) + L(V2, V1). As in InstDisc, the other view's
features come from a memory bank, one per view, each written only from its own encoder
(momentum 0.5); each direction is learned by NCE against 4096 rows drawn uniformly
(P_n = 1/N) with its own Z, estimated once from the first batch; T = 0.07. The image's
representation is both encoders' pooled features side by side (``zoo.streams.TwoStream``).

As the authors' code (HobbitLong/CMC: ``train_CMC.py``, ``NCE/NCEAverage.py``): one random resized
crop and flip of the RGB image before the Lab split (no colour jitter), the banks start uniform in
[-a, a]^128 (a = sqrt(3/128), unit length on average), one draw of negative indices serves both
directions, the NCE loss is their ``NCECriterion`` (less its eps = 1e-7 beside m P_n), and
``loss="softmax"`` is their ``--softmax`` (cross-entropy with the positive as label 0; the CPU presets
use it). As our InstDisc, the draw is shared by the batch instead of made per example: the same P_n
and estimator, without gathering a B x 4096 x 128 tensor per view.

Fashion-MNIST is grayscale: its ab channels are empty and an L/ab contrast has nothing to learn.
Its presets use ``views="frequency"``: the grey image blurred (low-pass) and the grey image minus
its blur (high-pass), a pair of complementary views that a grayscale image does have. That is
our choice, not the paper's; the exported architecture (``cmc_frequency_resnet18``) says so and
rebuilds those views at load. ``bank_init="features"`` fills both banks from the initial
encoders before step 1 (see InstDisc); the ``paper`` preset keeps the authors' random start.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from zoo import streams

from .. import distributed
from ..blocks.lab import LabSplit
from ..blocks.losses import estimate_log_z, nce_loss
from ..blocks.memory_bank import MemoryBank
from ..config import Config
from .base import Method, Progress, StepOutput, make_backbone


class CMC(Method):
    def __init__(self, backbone: streams.TwoStream, num_images: int, image_size: int, dim: int = 128,
                 negatives: int = 4096, temperature: float = 0.07, bank_momentum: float = 0.5, loss: str = "nce",
                 crop_scale: tuple = (0.08, 1.0), bank_init: str = "random"):
        super().__init__()
        if loss not in ("nce", "softmax"):
            raise ValueError(f"loss must be 'nce' (the released weights) or 'softmax' (--softmax), not {loss!r}")
        if bank_init not in ("random", "features"):
            raise ValueError(f"bank_init must be 'random' (the paper) or 'features', not {bank_init!r}")
        self.backbone = backbone  # exported as is; its two streams are the two views' encoders
        self.augment = LabSplit(image_size, backbone.views.split, crop_scale)  # the exported model's own split
        self.heads = nn.ModuleList(nn.Linear(stream.num_features, dim) for stream in backbone.streams)
        self.banks = nn.ModuleList(MemoryBank(num_images, dim, bank_momentum) for _ in backbone.streams)
        for bank in self.banks:  # NCEAverage's start: uniform in [-a, a]^d, E|v|^2 = 1
            bank.memory.uniform_(-math.sqrt(3 / dim), math.sqrt(3 / dim))
        self.negatives, self.temperature, self.loss, self.bank_init = negatives, temperature, loss, bank_init
        if loss == "nce":  # log Z of each direction (view i against bank j): from the first batch, then fixed;
            # whether it is known is also kept on the host, so that steps never wait on the device to ask
            self.register_buffer("log_z", torch.full((2,), float("nan")))
            self.z_known = [False, False]
            self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "z_known", [False, False]))

    def embed(self, views: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        """z_i = normalise(W_i f_i(v_i)) of each view i with its own encoder f_i: what bank i stores."""
        return [F.normalize(head(stream(view)).float(), dim=1)
                for head, stream, view in zip(self.heads, self.backbone.streams, views)]

    def networks(self) -> list[nn.Module]:
        return [*self.backbone.streams, *self.heads]  # the two-stream backbone itself is never called in a step

    def contrast(self, anchor: torch.Tensor, bank: MemoryBank, index: torch.Tensor, noise_rows: torch.Tensor,
                 direction: int) -> torch.Tensor:
        """One direction, L(V_i, V_j): view i's features against view j's bank, its own image's row positive.
        The logits are fp32 even under autocast (as InstDisc's: bf16 is off by a few 1e-3 in v.z, 14 times that / T)."""
        with torch.autocast(anchor.device.type, enabled=False):
            memory = bank.memory.float()
            positive = (memory[index] * anchor).sum(dim=1) / self.temperature
            noise = anchor @ memory[noise_rows].T / self.temperature
            if self.loss == "softmax":
                return F.cross_entropy(torch.cat([positive[:, None], noise], dim=1), torch.zeros_like(index))
            if not self.z_known[direction]:
                self.estimate_z(positive, noise, direction)
            return nce_loss(positive, noise, self.log_z[direction], len(bank))

    @torch.no_grad()
    def estimate_z(self, positive: torch.Tensor, noise: torch.Tensor, direction: int) -> None:
        """Z ~ N mean exp(v.z/T) of this direction from the first batch, averaged over ranks (NCEAverage's
        Z_l and Z_ab); one host sync per run."""
        if self.log_z[direction].isnan():
            logits = torch.cat([positive[:, None], noise], dim=1)
            self.log_z[direction] = distributed.mean(estimate_log_z(logits, len(self.banks[0])))
        self.z_known[direction] = True

    def forward(self, images: torch.Tensor | list[torch.Tensor], index: torch.Tensor,
                progress: Progress) -> StepOutput:
        z = self.embed(self.augment(images))
        noise_rows = self.banks[0].sample(self.negatives)  # one draw serves both directions, as NCEAverage
        losses = [self.contrast(z[0], self.banks[1], index, noise_rows, 0),   # L anchors against ab's bank
                  self.contrast(z[1], self.banks[0], index, noise_rows, 1)]   # ab anchors against L's bank
        for bank, feature in zip(self.banks, z):  # after both losses: each bank from its own encoder only
            bank.update(distributed.gather_no_grad(index), distributed.gather_no_grad(feature))
        names = self.backbone.names
        return StepOutput(losses[0] + losses[1], {f"loss_{names[0]}": losses[0].detach(),
                                                  f"loss_{names[1]}": losses[1].detach()})

    @torch.no_grad()
    def prefill(self, batches) -> None:
        """bank_init="features": v_i <- z_i(theta_0) of each clean image in both banks; every rank writes
        every rank's rows, so the banks stay identical."""
        for images, index in batches:
            z = self.embed(self.backbone.split(self.backbone.unnormalize(images)))
            for bank, feature in zip(self.banks, z):
                bank.write(distributed.gather_no_grad(index), distributed.gather_no_grad(feature))

    @property
    def wants_prefill(self) -> bool:
        return self.bank_init == "features"


def build(cfg: Config, num_images: int, mean, std) -> CMC:
    method = dict(cfg.method)
    views = method.pop("views", "lab")
    first, second = (make_backbone(cfg, in_chans=c) for c in streams.check_views(views).channels)
    backbone = streams.assemble(cfg.arch, views, first, second, mean, std)
    return CMC(backbone, num_images, cfg.image_size, **method)


# train_CMC.py as the released weights were trained: NCE, Lab, 4096 negatives (16384 is the script's default)
PAPER_METHOD = dict(views="lab", dim=128, negatives=4096, temperature=0.07, bank_momentum=0.5, loss="nce",
                    crop_scale=(0.08, 1.0))
# The authors' ResNets start every residual branch at full scale (see InstDisc's presets for why it matters at 32 px)
AUTHORS_INIT = dict(zero_init_last=False)
# resnet50v1, the released CMC weights: each stream a ResNet-50 at half width, the stem kept at 64 channels
HALF_WIDTH = dict(channels=(32, 64, 128, 256))

# Fashion-MNIST at 32 px on a CPU: frequency views, the authors' half-width streams (together half the cost of one
# resnet18), the banks started from the initial features, softmax cross-entropy (the authors' README advises it, and
# in short CPU runs it learned faster than NCE), a cosine schedule over a few epochs
CPU = dict(arch="resnet18", model_args=dict(AUTHORS_INIT, **HALF_WIDTH), image_size=32, batch_size=256, lr=0.03,
           schedule="cosine", knn_subset=10000,
           method=dict(PAPER_METHOD, views="frequency", loss="softmax", crop_scale=(0.2, 1.0), bank_init="features"))

PRESETS = {
    # seconds: the tests' end-to-end run
    "smoke": Config(**dict(CPU, subset=512, epochs=2, batch_size=64, knn_subset=512,
                           method=dict(CPU["method"], negatives=256))),
    # the CPU benchmark, within the 15 minutes it allows on two cores
    "fmnist": Config(**CPU, epochs=4),
    # train_CMC.py --model resnet50v1 --batch_size 128: SGD 0.03, momentum 0.9, wd 1e-4, 240 epochs, lr x0.1 at
    # 120, 160 and 200; RandomResizedCrop(224, scale 0.08-1) + flip; pass --data /path/to/imagenet
    "paper": Config(arch="resnet50", model_args=dict(AUTHORS_INIT, **HALF_WIDTH), dataset="imagenet",
                    image_size=224, epochs=240, batch_size=128, lr=0.03, momentum=0.9, weight_decay=1e-4,
                    schedule="step", milestones=(120, 160, 200), method=PAPER_METHOD, knn_subset=50000,
                    workers=8),
}
