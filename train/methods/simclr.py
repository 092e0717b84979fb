"""SimCLR: a simple framework for contrastive learning of visual representations (Chen, Kornblith,
Norouzi & Hinton, ICML 2020, arXiv 2002.05709; code: google-research/simclr).

No memory bank, no momentum encoder, no special architecture: two strongly augmented views of each
image (random crop, strong colour distortion, blur), one encoder f, a projection head g, and the
NT-Xent loss (eq. 1) in which each view must find its partner among the other 2N - 1 views of the
batch, T = 0.1 on ImageNet. The negatives are the batch itself, so the batch is large (4096) and
global: every process's projections are gathered *with* gradients, and BatchNorm is synchronised
across GPUs ("global BN", Sec. B.1). LARS makes the large batch trainable: lr 0.3 x B/256, 10 warm-up
epochs then cosine, weight decay 1e-6, with BatchNorm and biases excluded from weight decay and from
the trust ratio, as the authors' ``exclude_from_weight_decay``.

The projection head (Sec. 2 and the authors' ``projection_head``): Dense-BN-ReLU layers as wide as the
encoder, then a Dense to 128 with BN and neither bias nor ReLU. The representation is h = f(x), before
the head: the paper finds it much better than g(h) for downstream tasks (Sec. 4.2), and it is what
``export()`` gives.

As the authors' code, the loss is the sum of the two directions' means (``loss_a + loss_b``), i.e. twice
the mean of eq. 1 over the 2N views; under LARS the factor sets the balance with weight decay. The
authors' TensorFlow LARS uses "classic" momentum, the lr inside the momentum buffer (buf <- m buf + lr d,
w <- w - buf), and so does every preset here (``lars_classic_momentum``): with warm-up and cosine, it is
not PyTorch's placement of the lr after the buffer.
"""
from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from zoo.projected import projection_layer

from .. import distributed
from ..augment import StrongAugment, simclr_jitter
from ..colour_tf import ColourJitterTF
from ..blocks.losses import nt_xent
from ..blocks.views import TwoViews
from ..config import Config
from .base import Method, Progress, StepOutput, make_backbone


class ProjectionHead(nn.Sequential):
    """g(h): ``layers - 1`` hidden layers (Dense without bias, BN, ReLU; as wide as the encoder), then Dense to
    ``dim`` and a BN that scales without shifting (the authors' ``center=False``: its beta stays 0). Dense
    weights start N(0, 0.01) as the authors'. ``self[0]`` is the first layer SimCLR v2 fine-tunes from."""

    def __init__(self, width: int, dim: int = 128, layers: int = 2):
        if layers < 1:
            raise ValueError(f"a projection head has at least one layer, not {layers}")
        last = nn.Sequential(nn.Linear(width, dim, bias=False), nn.BatchNorm1d(dim))
        super().__init__(*[projection_layer(width) for _ in range(layers - 1)], last)
        last[1].bias.requires_grad_(False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.01)


class SimCLR(Method):
    def __init__(self, backbone: nn.Module, augment: nn.Module, dim: int = 128, head_layers: int = 2,
                 temperature: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.head = ProjectionHead(backbone.num_features, dim, head_layers)
        self.augment = TwoViews(augment)
        self.temperature = temperature

    def project(self, views):
        """z = g(f(x)), L2-normalised: what NT-Xent compares (sim is the cosine similarity)."""
        return F.normalize(self.head(self.backbone(views)).float(), dim=1)

    def negatives(self, views):
        """Further negatives beside the batch: none in SimCLR v1 (SimCLR v2's memory overrides this)."""
        return None

    def forward(self, images, index, progress: Progress) -> StepOutput:
        views = self.augment(images)  # [2B]: view 1 of every image, then view 2
        z = self.project(views)
        keys = distributed.gather_with_grad(z)  # the global batch, gradients flowing back to every process
        loss, accuracy = nt_xent(z, keys, distributed.rank() * len(z), self.temperature, self.negatives(views))
        return StepOutput(2 * loss, {"top1": accuracy})  # the authors' loss_a + loss_b


def augment(size: int, mean, std, strength: float = 1.0, blur: float = 0.5, impl: str = "simclrv1") -> StrongAugment:
    """The authors' pretraining views: crop (area 0.08-1, TensorFlow's boxes as their ``crop_and_resize``), flip,
    colour distortion of ``strength`` with p 0.8, grayscale 0.2, blur with p ``blur`` (ImageNet 0.5, CIFAR-10
    none; as ``batch_random_blur``: one sigma per batch, zero padding). ``impl`` is the authors' switch of the
    same name in the TensorFlow jitter (``train.colour_tf``): v1's additive brightness or v2's multiplicative one."""
    jitter = ColourJitterTF(*simclr_jitter(strength), p=0.8, impl=impl)
    return StrongAugment(size, mean, std, scale=(0.08, 1.0), jitter=jitter, blur=blur, tensorflow=True)


def build(cfg: Config, num_images: int, mean, std) -> SimCLR:
    method = dict(cfg.method)
    views = augment(cfg.image_size, mean, std, method.pop("strength", 1.0), method.pop("blur", 0.5))
    return distributed.global_batch_norm(SimCLR(make_backbone(cfg), views, **method))


PAPER_METHOD = dict(dim=128, head_layers=2, temperature=0.1, strength=1.0, blur=0.5)
# what google-research/simclr does in every recipe: LARS with classic momentum, sparing BN and biases, a cosine
# schedule, and RGB in [0, 1] without mean or std (its data_util only converts the dtype)
AUTHORS_CODE = dict(optimizer="lars", momentum=0.9, lars_classic_momentum=True, exclude_norm_bias=True,
                    schedule="cosine", normalize=False)
# Fashion-MNIST at 32 px on a CPU follows the authors' CIFAR-10 recipe (v1's README at 85e8552: batch 512, LARS
# lr 1.0 x B/256, wd 1e-6, colour strength 0.5, no blur) for a few epochs, with half an epoch of warm-up (the
# command's 1% of the epochs would be under 5 steps of 4 epochs). The network is the lineage's, shared by every
# method: timm's ResNet-18 with its ImageNet stem (the authors' code switches to a 3 x 3, stride-1 stem without
# max-pool at 32 px) and every residual branch at full scale (InstDisc's presets say why; SimCLR's code, as the
# paper preset, zero-initialises each block's last BN). One number is the ImageNet recipe's instead: T = 0.1,
# not the CIFAR command's 0.5, which in 4 epochs stays below raw pixels (78.11% kNN against 79.13%) where 0.1
# reaches 81.75% (bench.claims "simclr-temperature", the paper's Table 5)
CPU = dict(AUTHORS_CODE, arch="resnet18", model_args=dict(zero_init_last=False), image_size=32, batch_size=512, lr=1.0,
           lr_scaling="linear", weight_decay=1e-6, warmup_epochs=0.5, knn_subset=10000,
           method=dict(PAPER_METHOD, strength=0.5, blur=0.0))

PRESETS = {
    # seconds: the tests' end-to-end run
    "smoke": Config(**dict(CPU, subset=512, epochs=2, batch_size=64, knn_subset=512, warmup_epochs=0)),
    "fmnist": Config(**CPU, epochs=4),
    # the ImageNet recipe (Sec. 3 and B.9; README): ResNet-50, batch 4096, LARS lr 0.3 x B/256 = 4.8, wd 1e-6,
    # 10 warm-up epochs then cosine, T = 0.1, colour strength 1, blur; 1000 epochs as the released ResNet-50 (1x)
    # (the ablations train 100)
    "paper": Config(**AUTHORS_CODE, arch="resnet50", dataset="imagenet", image_size=224, epochs=1000, batch_size=4096,
                    lr=0.3, lr_scaling="linear", weight_decay=1e-6, warmup_epochs=10, method=PAPER_METHOD,
                    knn_subset=50000, workers=8),
}
