"""SimSiam: exploring simple Siamese representation learning (Chen & He, CVPR 2021, arXiv 2011.10566;
code: facebookresearch/simsiam).

No negatives, no momentum encoder, no large batch. Two views x1, x2 of an image pass through one encoder f
(the backbone and a projection MLP); a prediction MLP h maps one view's output onto the other's:
p1 = h(f(x1)), z2 = f(x2). The loss is the symmetrised negative cosine (eqs. 1-2),

    L = D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2,      D(p, z) = -(p / ||p||) . (z / ||z||),

and the stop-gradient is what keeps it from collapsing (Sec. 4.1): without it every image maps to one point at
once. ``stop_gradient=False`` is that ablation (``bench.claims``), and every step logs the paper's gauge of it,
``output_std`` (``train.blocks.collapse``), which the engine watches.

As the authors' ``builder.py``: the projector is 3 layers (2 in the CIFAR recipe) as wide as the encoder, each
Linear without bias followed by BatchNorm, the output BN without a learnt scale or shift; the predictor is a
bottleneck (2048 -> 512 -> 2048) whose output layer has a bias and no BN. Each view is its own encoder call, so
BatchNorm's statistics are per view. With ``fix_pred_lr`` (the README's command) the predictor keeps the base lr
while the rest follows the cosine schedule.
"""
from __future__ import annotations

from .. import distributed
from ..blocks.collapse import GAUGE, output_std
from ..blocks.heads import mlp
from ..blocks.losses import negative_cosine
from ..blocks.views import TwoViews
from ..config import Config
from .base import Method, Progress, StepOutput, group, make_backbone
from .mocov2 import augment


class SimSiam(Method):
    def __init__(self, backbone, augment, dim: int = 2048, pred_dim: int = 512, projector_layers: int = 3,
                 fix_pred_lr: bool = True, stop_gradient: bool = True):
        super().__init__()
        width = backbone.num_features
        self.backbone = backbone
        self.projector = mlp([width] * projector_layers + [dim], last_bias=False, last_norm="plain")
        self.predictor = mlp([dim, pred_dim, dim])
        self.augment = TwoViews(augment)
        self.fix_pred_lr, self.stop_gradient = fix_pred_lr, stop_gradient

    def encode(self, views):
        """z = f(x): the backbone and the projector."""
        return self.projector(self.backbone(views))

    def target(self, z):
        """stopgrad(z) (eq. 2): the target is a constant, unless the ablation leaves the gradient on."""
        return z.detach() if self.stop_gradient else z

    def forward(self, images, index, progress: Progress) -> StepOutput:
        x1, x2 = self.augment(images).chunk(2)
        z1, z2 = self.encode(x1), self.encode(x2)  # two calls, as the authors': BatchNorm statistics per view
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = (negative_cosine(p1, self.target(z2)) + negative_cosine(p2, self.target(z1))) / 2
        return StepOutput(loss, {GAUGE: output_std(z1)})

    def param_groups(self) -> list[dict]:
        encoder = [*self.backbone.parameters(), *self.projector.parameters()]
        return [group(encoder), group(self.predictor.parameters(), fixed_lr=self.fix_pred_lr)]


def build(cfg: Config, num_images: int, mean, std) -> SimSiam:
    method = dict(cfg.method)
    views = augment(cfg.image_size, mean, std, method.pop("blur", 0.5))  # MoCo v2's, as main_simsiam.py
    return distributed.global_batch_norm(SimSiam(make_backbone(cfg), views, **method))  # the authors' SyncBN


# builder.py and main_simsiam.py's defaults: 2048-d, a 512-d predictor bottleneck, 3 projector layers; the README's
# --fix-pred-lr
PAPER_METHOD = dict(dim=2048, pred_dim=512, projector_layers=3, fix_pred_lr=True)
# Fashion-MNIST at 32 px on a CPU, after the paper's CIFAR-10 recipe (Appendix D): a 2-layer projector, batch 512,
# SGD lr 0.03 x B/256, wd 5e-4, cosine (per step, as MoCo v2's CPU preset says why), no blur at 32 px (as MoCo v2's
# CPU preset). Two departures shared by the lineage's CPU presets: timm's ResNet-18 with its ImageNet stem (the
# paper's CIFAR variant takes a 3 x 3 stem without max-pool), and every residual branch at full scale
# (zero_init_last=False, where builder.py zero-initialises the last BN of each block: at 32 px that start is a chain
# of strided 1 x 1 subsamplings, InstDisc's presets say more). The projector's hidden width is the encoder's (512),
# as builder.py's rule, where the paper's text gives 2048 for its ResNet-50
CPU = dict(arch="resnet18", model_args=dict(zero_init_last=False), image_size=32, batch_size=512, lr=0.03,
           lr_scaling="linear", momentum=0.9, weight_decay=5e-4, schedule="cosine", knn_subset=10000,
           method=dict(PAPER_METHOD, projector_layers=2, blur=0.0))

PRESETS = {
    # seconds: the tests' end-to-end run
    "smoke": Config(**dict(CPU, subset=512, epochs=2, batch_size=64, knn_subset=512)),
    "fmnist": Config(**CPU, epochs=4),
    # main_simsiam.py -a resnet50 --lr 0.05 --batch-size 512 --fix-pred-lr on 8 GPUs: SGD lr 0.05 x B/256, momentum
    # 0.9, wd 1e-4 on every parameter, the cosine read per epoch, 100 epochs (68.1% linear, the released model);
    # torchvision's ResNet-50 with zero_init_residual=True, which is timm's default
    "paper": Config(arch="resnet50", dataset="imagenet", image_size=224, epochs=100, batch_size=512, lr=0.05,
                    lr_scaling="linear", momentum=0.9, weight_decay=1e-4, schedule="cosine-epoch",
                    method=PAPER_METHOD, knn_subset=50000, workers=8),
}
