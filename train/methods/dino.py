"""DINO: self-distillation with no labels (Caron, Touvron, Misra, Jégou, Mairal, Bojanowski & Joulin, ICCV 2021,
arXiv 2104.14294; code: facebookresearch/dino).

A student network g_s (backbone and ``DINOHead``, K outputs) learns to match the output distribution of a teacher
g_t on other crops of the same image: the cross-entropy H(P_t(x), P_s(x')) over every pair of a global crop x and
another crop x' (eq. 2-3, ``train.blocks.losses.dino_loss``). The teacher is not trained: it is an exponential
moving average of the student, theta_t <- l theta_t + (1 - l) theta_s after every step, l on a cosine from 0.996 to
1 (Sec. 3.1). It sees only the two global crops; the student sees those and the local ones (multi-crop, two 224-px
crops of 40-100% of the area and eight 96-px ones of 5-40%). Collapse is avoided by centring and sharpening the
teacher (Sec. 3.1, eq. 4): its outputs minus a centre c, an EMA (0.9) of its batch means over every process, then a
softmax at T_t = 0.04 (warmed up from ``warmup_teacher_temperature`` over the first epochs), sharper than the
student's T_s = 0.1. The teacher, as the paper finds it the better network, is what the zoo exports.

As the authors' ``main_dino.py``: the student's two global crops run as one backbone call and the local ones as
another (``MultiCropWrapper``), the head once over all; the teacher has no stochastic depth; each parameter's
gradient is clipped to norm 3 on its own (``clip_gradients``, not the global norm); the head's last layer gets no
update in the first epoch (``freeze_last_layer``); weight decay spares biases and norms and follows a cosine
(0.04 to 0.4 for ViTs); ResNets keep their BatchNorm in training mode in both networks.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import distributed
from ..augment import StrongAugment, colour_jitter
from ..blocks.collapse import GAUGE, output_std
from ..blocks.heads import DINOHead
from ..blocks.losses import dino_loss
from ..blocks.momentum import cosine_momentum, momentum_copy, momentum_update
from ..blocks.views import MultiCrop, by_resolution
from ..blocks.vit import dino_vit, is_vit, without_drop_path
from ..config import Config
from .base import Method, Progress, StepOutput, make_backbone


@torch.no_grad()
def clip_per_parameter(parameters, max_norm: float) -> None:
    """Each gradient scaled to norm at most ``max_norm`` on its own, g <- g min(1, max_norm / (||g|| + 1e-6)),
    as DINO's ``utils.clip_gradients`` (where ``clip_grad_norm_`` would scale all of them by their joint norm)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        norms = torch.stack(torch._foreach_norm(grads))
        torch._foreach_mul_(grads, list((max_norm / (norms + 1e-6)).clamp(max=1.0).unbind()))


class DINO(Method):
    def __init__(self, backbone: nn.Module, views: MultiCrop, out_dim: int = 65536, hidden: int = 2048,
                 bottleneck: int = 256, use_bn: bool = False, norm_last_layer: bool = True,
                 student_temperature: float = 0.1, teacher_temperature: float = 0.04,
                 warmup_teacher_temperature: float = 0.04, warmup_teacher_temperature_epochs: int = 0,
                 center_momentum: float = 0.9, base_momentum: float = 0.996, clip_grad: float = 3.0,
                 freeze_last_layer_epochs: int = 1, centring: bool = True):
        super().__init__()
        self.backbone = backbone
        self.head = DINOHead(backbone.num_features, out_dim, hidden, bottleneck, use_bn=use_bn,
                             norm_last_layer=norm_last_layer)
        self.augment = views
        self.momentum_encoder = without_drop_path(momentum_copy(self.backbone, self.head))  # the teacher
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.student_temperature, self.teacher_temperature = student_temperature, teacher_temperature
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.warmup_teacher_temperature_epochs = warmup_teacher_temperature_epochs
        self.center_momentum, self.base_momentum = center_momentum, base_momentum
        self.clip_grad, self.freeze_last_layer_epochs = clip_grad, freeze_last_layer_epochs
        self.centring = centring  # False: the centre stays 0, sharpening alone (Sec. 5.3's ablation, bench.claims)

    def teacher_temperature_at(self, epoch: int) -> float:
        """T_t of ``epoch``: linear from the warm-up value to T_t over the warm-up epochs (``np.linspace``), then T_t."""
        warmup = self.warmup_teacher_temperature_epochs
        if epoch >= warmup:
            return self.teacher_temperature
        start = self.warmup_teacher_temperature
        return start + (self.teacher_temperature - start) * epoch / max(1, warmup - 1)

    def forward(self, images, index, progress: Progress) -> StepOutput:
        crops = self.augment(images)  # the two global crops' batches first, then the local crops'
        runs = by_resolution(crops)  # one batch per resolution, the global crops' first
        student = self.head(torch.cat([self.backbone(x) for x in runs]))
        with torch.no_grad():  # the global crops: a view of the student's first batch, not a second concatenation
            teacher = self.momentum_encoder(runs[0][:2 * len(crops[0])])
        views = len(self.augment.crops)
        loss = dino_loss(student, teacher, self.center, views, self.student_temperature,
                         self.teacher_temperature_at(progress.epoch))
        if self.training and self.centring:
            self.update_center(teacher)
        return StepOutput(loss, {GAUGE: output_std(teacher)})

    @torch.no_grad()
    def update_center(self, teacher: torch.Tensor) -> None:
        """c <- m c + (1 - m) mean of the teacher's outputs over the global batch (eq. 4), after the loss used c."""
        batch_center = distributed.all_sum(teacher.float().sum(dim=0, keepdim=True))
        batch_center /= len(teacher) * distributed.world_size()
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)

    def after_backward(self, progress: Progress) -> None:
        """Per-parameter clipping, then the last layer's gradients cancelled in its frozen first epochs (their order)."""
        if self.clip_grad:
            clip_per_parameter([*self.backbone.parameters(), *self.head.parameters()], self.clip_grad)
        if progress.epoch < self.freeze_last_layer_epochs:
            for p in self.head.last_layer.parameters():
                p.grad = None

    def after_step(self, progress: Progress) -> None:
        """theta_t <- l theta_t + (1 - l) theta_s with the new student weights, l on its cosine (as BYOL's tau)."""
        momentum_update(self.momentum_encoder, (self.backbone, self.head),
                        cosine_momentum(self.base_momentum, progress.fraction))

    def export(self) -> nn.Module:
        """The teacher's backbone: the network the paper evaluates."""
        return self.momentum_encoder[0]


def crop_maker(size: int, scale: tuple, mean, std, blur: float, solarize: float = 0.0) -> StrongAugment:
    """One of ``DataAugmentationDINO``'s crops: random resized crop of area ``scale``, flip, torchvision's colour
    jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale 0.2, blur (sigma 0.1-2) with p ``blur``, solarisation with p
    ``solarize``; image files' crops resized bicubically. (Theirs flips before the jitter: the two commute.)"""
    return StrongAugment(size, mean, std, scale=tuple(scale), jitter=colour_jitter(0.4, 0.4, 0.2, 0.1), blur=blur,
                         solarize=solarize, interpolation="bicubic")


def build(cfg: Config, num_images: int, mean, std) -> DINO:
    method = dict(cfg.method)
    (size, scale), (local_count, local_size, local_scale) = method.pop("global_crops"), method.pop("local_crops")
    blur1, blur2, blur_local = method.pop("blur", (1.0, 0.1, 0.5))
    views = MultiCrop([(crop_maker(size, scale, mean, std, blur1), 1),
                       (crop_maker(size, scale, mean, std, blur2, solarize=method.pop("solarize", 0.2)), 1)]
                      + ([(crop_maker(local_size, local_scale, mean, std, blur_local), local_count)] if local_count else []))
    backbone = make_backbone(cfg)
    if is_vit(backbone):
        dino_vit(backbone)
    return distributed.global_batch_norm(DINO(backbone, views, **method))  # SyncBN, as theirs


# main_dino.py's defaults: 2 global crops of 224 px (area 0.4-1; blur 1.0 in the first, 0.1 and solarisation 0.2 in
# the second), 8 local ones of 96 px (0.05-0.4, blur 0.5); K = 65536, the last layer's scale fixed, T_s 0.1, T_t 0.04,
# centre momentum 0.9, teacher momentum 0.996 to 1, each gradient clipped to 3, the last layer frozen for an epoch
PAPER_METHOD = dict(global_crops=(224, (0.4, 1.0)), local_crops=(8, 96, (0.05, 0.4)), blur=(1.0, 0.1, 0.5),
                    solarize=0.2, out_dim=65536, hidden=2048, bottleneck=256, use_bn=False, norm_last_layer=True,
                    student_temperature=0.1, teacher_temperature=0.04, warmup_teacher_temperature=0.04,
                    warmup_teacher_temperature_epochs=0, center_momentum=0.9, base_momentum=0.996, clip_grad=3.0,
                    freeze_last_layer_epochs=1)
# its optimisation for ViTs: AdamW, lr 5e-4 x B/256 after 10 warm-up epochs, a cosine to 1e-6; weight decay on a
# cosine from 0.04 to 0.4, biases and norms spared; stochastic depth 0.1 in the student; 100 epochs, 8 GPUs x 64;
# the position embedding resampled to the local crops' smaller grid as their interpolate_pos_encoding (``DINOViT``)
VIT_CODE = dict(optimizer="adamw", lr=5e-4, lr_scaling="linear", lr_end=1e-6, warmup_epochs=10, schedule="cosine",
                weight_decay=0.04, weight_decay_end=0.4, exclude_norm_bias=True, epochs=100, batch_size=512,
                arch="vit_small_patch16_224", model_args=dict(drop_path_rate=0.1, dynamic_img_size=True), dataset="imagenet",
                image_size=224, knn_subset=50000, workers=8)
# the README's ResNet-50 command: SGD (momentum 0.9) lr 0.03 x B/256, wd 1e-4 throughout, global crops of 14-100%
# of the area, local ones of 5-14%; torchvision's ResNet-50, whose blocks' last BatchNorm starts at 1
R50_METHOD = dict(PAPER_METHOD, global_crops=(224, (0.14, 1.0)), local_crops=(8, 96, (0.05, 0.14)))
R50_CODE = dict(VIT_CODE, optimizer="sgd", lr=0.03, weight_decay=1e-4, weight_decay_end=1e-4, arch="resnet50",
                model_args=dict(zero_init_last=False), method=R50_METHOD)
# Fashion-MNIST at 32 px on a CPU: the ResNet command on the lineage's ResNet-18, global crops of 32 px and local ones
# of 16 (the recipe's ratio of resolutions, about 1 : 0.43, rounded to a ResNet's stride, as SwAV's CPU preset),
# batch 256, half an epoch of warm-up, no blur at 32 px (as the CIFAR recipes of MoCo and SimCLR), and K = 4096
# outputs: at 65536 the last layer's matmuls cost this CPU more than the ResNet-18 itself
CPU = dict(R50_CODE, arch="resnet18", image_size=32, dataset="fashion-mnist", batch_size=256, warmup_epochs=0.5,
           knn_subset=10000, workers=0,
           method=dict(R50_METHOD, global_crops=(32, (0.14, 1.0)), local_crops=(8, 16, (0.05, 0.14)),
                       blur=(0.0, 0.0, 0.0), out_dim=4096))

PRESETS = {
    # seconds: the tests' end-to-end runs, on the ResNet and on a two-block ViT with stochastic depth
    "smoke": Config(**dict(CPU, subset=512, epochs=2, batch_size=64, knn_subset=512, warmup_epochs=0,
                           method=dict(CPU["method"], out_dim=256, hidden=128, bottleneck=64, local_crops=(2, 16, (0.05, 0.14)),
                                       warmup_teacher_temperature_epochs=2))),
    "smoke-vit": Config(**dict(VIT_CODE, arch="vit_tiny_patch16_224", dataset="fashion-mnist", image_size=32,
                               model_args=dict(img_size=32, patch_size=8, depth=2, drop_path_rate=0.1,
                                               dynamic_img_size=True),
                               subset=512, epochs=2, batch_size=64, warmup_epochs=0, knn_subset=512, workers=0,
                               method=dict(PAPER_METHOD, global_crops=(32, (0.4, 1.0)), local_crops=(2, 16, (0.05, 0.4)),
                                           blur=(0.0, 0.0, 0.0), out_dim=256, hidden=128, bottleneck=64))),
    "fmnist": Config(**dict(CPU, epochs=4)),
    # the README's vanilla ViT-S/16 run, main_dino.py's defaults (69.3% kNN, 74.0% linear)
    "paper": Config(**VIT_CODE, method=PAPER_METHOD),
    # the README's boosted ViT-S/16: 300 epochs on 16 GPUs, T_t 0.07 after 30 warm-up epochs, the last layer's scale
    # trained (76.0% linear)
    "paper-boost": Config(**dict(VIT_CODE, epochs=300, batch_size=1024),
                          method=dict(PAPER_METHOD, teacher_temperature=0.07, warmup_teacher_temperature_epochs=30,
                                      norm_last_layer=False)),
    # the README's ResNet-50 run (100 epochs, 8 GPUs x 64)
    "paper-r50": Config(**R50_CODE),
}
