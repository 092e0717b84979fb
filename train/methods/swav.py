"""SwAV: swapping assignments between views (Caron, Misra, Mairal, Goyal, Bojanowski & Joulin, NeurIPS 2020,
arXiv 2006.09882; code: facebookresearch/swav).

Contrast cluster assignments instead of features. Each crop's feature z (the backbone, a projection MLP, L2
normalisation) is scored against K prototypes c_k (unit vectors, a Linear without bias normalised after every
step): z^T C. The codes q of a crop are those scores made into an equipartitioned soft assignment by three
Sinkhorn-Knopp iterations (eq. 3, ``train.blocks.sinkhorn``), with no gradient; and every other crop must
predict them from its own scores (the swapped prediction, eqs. 1-2):

    l(z_t, q_s) = -sum_k q_s^(k) log softmax_k(z_t^T C / tau),   tau = 0.1,

averaged over the other crops and over the crops that give codes (the two global ones). Multi-crop (Sec. 3.2):
two crops at full resolution and six small ones of a smaller area, each resolution one backbone call and the
projection head one call over every crop; only the full-resolution crops give codes. The prototypes stay frozen
for the first epoch (``freeze_prototypes_epochs``; the authors' scripts freeze 313 iterations at batch 4096 and
5005 at 256, an epoch and one step), and with small batches a queue of earlier features joins the Sinkhorn
problem from ``queue_start_epoch`` on, once it is full (the authors' ``use_the_queue``). Each process queues its
own features; a checkpoint keeps the first process's queue, which every process resumes with (the authors save
one file per process).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .. import distributed
from ..augment import StrongAugment
from ..blocks.heads import mlp
from ..blocks.queue import Queue
from ..blocks.sinkhorn import sinkhorn
from ..blocks.views import MultiCrop
from ..config import Config
from .base import Method, Progress, StepOutput, make_backbone


class SwAV(Method):
    def __init__(self, backbone, views: MultiCrop, hidden: int = 2048, dim: int = 128, prototypes: int = 3000,
                 temperature: float = 0.1, epsilon: float = 0.05, sinkhorn_iterations: int = 3,
                 crops_for_assign: tuple = (0, 1), freeze_prototypes_epochs: int = 1, queue_size: int = 0,
                 queue_start_epoch: int = 15):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp([backbone.num_features, hidden, dim], hidden_bias=True)  # resnet50.py's projection_head
        self.prototypes = nn.Linear(dim, prototypes, bias=False)
        self.normalise_prototypes()
        self.augment = views
        self.temperature, self.epsilon, self.sinkhorn_iterations = temperature, epsilon, sinkhorn_iterations
        self.crops_for_assign, self.freeze_prototypes_epochs = tuple(crops_for_assign), freeze_prototypes_epochs
        local = queue_size // distributed.world_size()  # each process queues its own features, as the authors'
        self.queues = nn.ModuleList(Queue(local, dim) for _ in self.crops_for_assign) if queue_size else None
        self.queue_start_epoch, self.queued = queue_start_epoch, 0  # rows enqueued, kept on the host: no sync

    @torch.no_grad()
    def normalise_prototypes(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def codes(self, i: int, scores: torch.Tensor, features: torch.Tensor, progress: Progress) -> torch.Tensor:
        """q of the batch's crop ``crops_for_assign[i]``: Sinkhorn over its scores, and the queue's once it is full."""
        if self.queues is None or progress.epoch < self.queue_start_epoch:
            return sinkhorn(scores, self.epsilon, self.sinkhorn_iterations)
        queue = self.queues[i]
        if self.queued >= len(queue):
            scores = torch.cat([queue.keys.float() @ self.prototypes.weight.detach().float().T, scores])
        queue.enqueue(features)
        return sinkhorn(scores, self.epsilon, self.sinkhorn_iterations)[-len(features):]

    def forward(self, images, index, progress: Progress) -> StepOutput:
        crops = self.augment(images)  # one batch per resolution: a backbone call each, one head call for all (its
        features = torch.cat([self.backbone(x) for x in crops])  # BatchNorm over every crop, as resnet50.py)
        z = F.normalize(self.projector(features).float(), dim=1)
        with torch.autocast(z.device.type, enabled=False):  # scores in float32: e^(score / 0.05) magnifies bf16's steps
            scores = self.prototypes(z)
        views = len(self.augment.crops)
        batch = len(z) // views
        log_p = F.log_softmax(scores.view(views, batch, -1) / self.temperature, dim=-1)  # every crop's prediction
        loss = 0.0
        for i, crop in enumerate(self.crops_for_assign):
            with torch.no_grad():
                q = self.codes(i, scores[crop * batch:(crop + 1) * batch].detach(),
                               z[crop * batch:(crop + 1) * batch].detach(), progress)
            per_view = -(q * log_p).sum(dim=-1).mean(dim=-1)  # [views]: l(z_t, q_s) for every crop t
            loss = loss + (per_view.sum() - per_view[crop]) / (views - 1)  # every crop but the one giving q
        if self.training and self.queues is not None and progress.epoch >= self.queue_start_epoch:
            self.queued += batch
        return StepOutput(loss / len(self.crops_for_assign))

    def after_backward(self, progress: Progress) -> None:
        """The prototypes are frozen for the first epochs (their gradients cancelled, as the authors')."""
        if progress.epoch < self.freeze_prototypes_epochs:
            self.prototypes.weight.grad = None

    def after_step(self, progress: Progress) -> None:
        """Back to unit vectors (the authors normalise at the start of the next step: the same values)."""
        self.normalise_prototypes()

    def get_extra_state(self):
        return torch.tensor(self.queued)  # in the checkpoint: a resumed run reads a full queue as full

    def set_extra_state(self, state) -> None:
        self.queued = int(state)


def crop_maker(size: int, scale: tuple, mean, std, blur: float) -> StrongAugment:
    """One of multicropdataset.py's crops: random resized crop of area ``scale``, flip, colour distortion of
    strength 1 (torchvision's jitter 0.8, 0.8, 0.8, 0.2 with p 0.8, grayscale 0.2), blur with p ``blur``."""
    return StrongAugment(size, mean, std, scale=tuple(scale), blur=blur)


def build(cfg: Config, num_images: int, mean, std) -> SwAV:
    method = dict(cfg.method)
    blur = method.pop("blur", 0.5)
    views = MultiCrop([(crop_maker(size, scale, mean, std, blur), count) for count, size, scale in method.pop("crops")])
    # SyncBN over every process, as the batch-256 scripts (the 800-epoch one syncs groups of 8 GPUs, 512 images)
    return distributed.global_batch_norm(SwAV(make_backbone(cfg), views, **method))


# scripts/swav_800ep_pretrain.sh: 2 x 224 (area 0.14-1) + 6 x 96 (0.05-0.14), codes from the two global crops,
# T = 0.1, epsilon 0.05, 3 Sinkhorn iterations, 128-d, 3000 prototypes, no queue at batch 4096, the prototypes frozen
# for 313 iterations (an epoch of 312 steps at 4096, and one more); resnet50.py's head: Linear 2048 (with bias) -> BN -> ReLU -> Linear 128
PAPER_METHOD = dict(hidden=2048, dim=128, prototypes=3000, temperature=0.1, epsilon=0.05, sinkhorn_iterations=3,
                    crops=((2, 224, (0.14, 1.0)), (6, 96, (0.05, 0.14))), crops_for_assign=(0, 1),
                    freeze_prototypes_epochs=1, queue_size=0, blur=0.5)
# its optimiser: SGD with momentum 0.9 wrapped in apex's LARC (eta 1e-3, clip off) on every parameter, wd 1e-6 on
# every parameter too, a linear warm-up then a cosine to final_lr; src/resnet50.py keeps each block's last BN at 1
AUTHORS_CODE = dict(optimizer="lars", momentum=0.9, lars_eta=1e-3, lars_trust="larc", exclude_norm_bias=False,
                    schedule="cosine", model_args=dict(zero_init_last=False))
# Fashion-MNIST at 32 px on a CPU, after the README's batch-256 command (base_lr 0.6 to final_lr 0.0006, no
# warm-up, the prototypes frozen for an epoch, a queue of 3840 from epoch 15, which a 4-epoch run never reaches):
# 2 x 32 + 6 x 16 px crops (the recipe's ratio of resolutions, about 1 : 0.43, rounded to a ResNet's stride), no
# blur at 32 px (as the CIFAR recipes of MoCo and SimCLR), the lineage's ResNet-18
CPU = dict(AUTHORS_CODE, arch="resnet18", image_size=32, batch_size=256, lr=0.6, lr_end=0.0006, weight_decay=1e-6,
           knn_subset=10000, method=dict(PAPER_METHOD, crops=((2, 32, (0.14, 1.0)), (6, 16, (0.05, 0.14))),
                                         queue_size=3840, queue_start_epoch=15, blur=0.0))

PRESETS = {
    # seconds: the tests' end-to-end run, its queue started and filled in the second epoch
    "smoke": Config(**dict(CPU, subset=512, epochs=2, batch_size=64, knn_subset=512,
                           method=dict(CPU["method"], prototypes=100, queue_size=128, queue_start_epoch=1))),
    "fmnist": Config(**CPU, epochs=4),
    # scripts/swav_800ep_pretrain.sh: 64 GPUs x 64 = 4096, base_lr 4.8 (no scaling rule) to final_lr 0.0048, 10
    # warm-up epochs from 0.3, wd 1e-6, 800 epochs (75.3% linear, the released model)
    "paper": Config(**AUTHORS_CODE, arch="resnet50", dataset="imagenet", image_size=224, epochs=800, batch_size=4096,
                    lr=4.8, lr_end=0.0048, warmup_epochs=10, warmup_start=0.3, weight_decay=1e-6,
                    method=PAPER_METHOD, knn_subset=50000, workers=8),
}
