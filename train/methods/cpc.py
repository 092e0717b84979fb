"""CPC: representation learning with contrastive predictive coding (van den Oord, Li & Vinyals 2018,
arXiv 1807.03748, Sec. 3.2), with the negatives of Henaff et al. 2019 (arXiv 1905.09272).

An image is a grid of overlapping patches; an encoder g_enc maps patch (i, j) to z_{i,j}. An
autoregressive context network g_ar summarises the rows at or above i into c_{i,j}, and a linear map
W_k per step predicts the patch k rows below: the score of a candidate z is f_k = exp(z^T W_k c_{i,j}).
InfoNCE (eq. 4) asks each prediction to pick the true z_{i+k,j} among every patch of the batch, every
position of every image (Henaff et al.), and minimising it maximises a bound on the mutual information
between the context and the patches it predicts. The representation is the encoder mean-pooled over the
grid: the backbone is ``zoo.patches.PatchModel``, the very model the run exports.

g_ar is PixelCNN-style, as in both papers: residual blocks of 1x1 and row-causal 2x3 convolutions. A GRU
down each column (v1 reports a row-GRU giving similar results) would see only its own column and walk the
rows one at a time; the convolutions also see the neighbouring columns and run the whole grid in one pass.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import zoo.patches  # also registers the cpc_* architectures with timm

from ..blocks.patches import PatchGrid
from ..config import Config
from .base import Method, Progress, StepOutput, make_backbone


class RowCausalConv(nn.Conv2d):
    """A convolution whose output row r sees input rows r - (kernel height - 1) .. r and none below: the
    masked convolution of PixelCNN, made by padding above only, so the mask cannot be forgotten."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.kernel_size
        return super().forward(F.pad(x, (width // 2, width // 2, height - 1, 0)))


class ContextNetwork(nn.Module):
    """g_ar: c = z + sum of residual blocks (1x1 -> ReLU -> row-causal 2x3 -> ReLU -> 1x1); each block
    looks one row further up, so ``blocks`` of them let row i see rows i - blocks .. i."""

    def __init__(self, dim: int, hidden: int, blocks: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.ReLU(), RowCausalConv(hidden, hidden, (2, 3)), nn.ReLU(),
                          nn.Conv2d(hidden, dim, 1))
            for _ in range(blocks))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c = z
        for block in self.blocks:
            c = c + block(c)
        return c


def info_nce(context: torch.Tensor, z: torch.Tensor, predictors: nn.ModuleList) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE over the grid (eq. 4): for every step k = 1..K and every position (b, i, j) with i + k
    inside the grid, the logits W_k c_{b,i,j} . z over all B x rows x cols patches, the positive being
    z_{b,i+k,j}. Returns the mean cross-entropy over all predictions and how often the positive wins."""
    b, dim, rows, cols = z.shape
    index = torch.arange(b * rows * cols, device=z.device).view(b, rows, cols)
    logits, targets = [], []
    with torch.autocast(z.device.type, enabled=False):  # unscaled scores, hundreds of candidates: float32
        candidates = z.float().permute(0, 2, 3, 1).reshape(-1, dim)  # patch (b, i, j) is row index[b, i, j]
        for k, predict in enumerate(predictors, start=1):
            predictions = predict(context[:, :, :rows - k].float().permute(0, 2, 3, 1))  # [B, rows - k, cols, dim]
            logits.append(predictions.reshape(-1, dim) @ candidates.T)
            targets.append(index[:, k:].reshape(-1))
    logits, targets = torch.cat(logits), torch.cat(targets)
    accuracy = (logits.argmax(dim=1) == targets).float().mean()
    return F.cross_entropy(logits, targets), accuracy


class CPC(Method):
    def __init__(self, backbone: zoo.patches.PatchModel, grid: PatchGrid, steps: int = 5, context_blocks: int = 5,
                 context_hidden: int = 256):
        super().__init__()
        rows = zoo.patches.grid_size(grid.size, backbone.patch_size, backbone.stride)
        if not 1 <= steps < rows:
            raise ValueError(f"steps={steps}: a {rows}-row grid can predict 1 to {rows - 1} rows ahead; set the "
                             "method's steps in that range")
        self.backbone, self.augment = backbone, grid  # the engine reads the image-level crop from augment.crops
        dim = backbone.num_features
        self.context = ContextNetwork(dim, context_hidden, context_blocks)
        self.predictors = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(steps))  # W_1 .. W_K

    def networks(self) -> list[nn.Module]:
        return [self.backbone.encoder, self.context, *self.predictors]  # the patch model reaches its encoder directly

    def forward(self, images: torch.Tensor, index: torch.Tensor, progress: Progress) -> StepOutput:
        z = self.backbone.encode_patches(self.augment(images))  # [B, dim, rows, cols]
        loss, accuracy = info_nce(self.context(z), z, self.predictors)
        return StepOutput(loss, {"accuracy": accuracy.detach()})


def build(cfg: Config, num_images: int, mean, std) -> CPC:
    """The patch model ``cfg.arch`` (``cpc_<encoder>``; patch_size and stride in ``cfg.model_args``) and the
    method; ``crop_scale``, ``jitter`` and ``grey`` of ``cfg.method`` go to the view maker, the rest to CPC."""
    backbone = make_backbone(cfg)
    if not isinstance(backbone, zoo.patches.PatchModel):
        raise ValueError(f"CPC trains a patch model, not {cfg.arch!r}. Fix: set arch to 'cpc_{cfg.arch}' (one of "
                         f"{', '.join(f'cpc_{e}' for e in zoo.patches.ENCODERS)}) with patch_size and stride in "
                         "model_args")
    method = dict(cfg.method)
    augment = {key: method.pop(key) for key in ("crop_scale", "jitter", "grey") if key in method}
    grid = PatchGrid(cfg.image_size, backbone.patch_size, backbone.stride, mean, std, **augment)
    return CPC(backbone, grid, **method)


# CPC v1 trains its encoder without batch norm: statistics shared across the patches of a batch let a patch's
# code depend on the patches it is asked to predict (Henaff et al. replace it by layer norm for that reason).
# groupnorm1 is layer norm over each patch's channels and positions, so every z depends on its own patch only.
PATCH_NORM = dict(norm_layer="groupnorm1")

# The paper's optimiser: Adam (AdamW without weight decay is Adam).
ADAM = dict(optimizer="adamw", lr=2e-4, weight_decay=0.0)

# Fashion-MNIST at 32 px: 16-px patches at stride 8, a 3 x 3 grid overlapping by half a patch as the paper's,
# predicting up to 2 rows ahead. The paper's grid scaled by 1/8 (8-px patches, 7 x 7) costs twice as much per
# image and barely learns: an 8-px patch of a Fashion-MNIST item is mostly background, and the loss stays at
# chance through the smoke run. The encoder is a pre-activation ResNet-18 kept to its third stage (256-d), as
# the paper keeps ResNet-v2-101 to its third block: on a 16-px patch the stride-16 trunk already ends at 1 x 1,
# and a fourth stage would only repeat 1 x 1 convolutions on it.
CPU = dict(ADAM, arch="cpc_resnetv2_18", image_size=32, batch_size=64,
           model_args=dict(patch_size=16, stride=8, layers=[2, 2, 2], channels=[64, 128, 256], **PATCH_NORM),
           method=dict(steps=2, context_blocks=2, context_hidden=128, jitter=2, grey=0.0), knn_subset=10000)

PRESETS = {
    # seconds: the tests' end-to-end run
    "smoke": Config(**dict(CPU, subset=512, epochs=2, batch_size=32, knn_subset=512)),
    # the CPU benchmark: about 4.6 minutes an epoch on two idle cores (2.8x a bare ResNet-18 step per image)
    "fmnist": Config(**CPU, epochs=2),
    # v1 for images (Sec. 3.2): 256 px, 64-px patches at stride 32 (7 x 7), ResNet-v2-101 up to its third block
    # (1024-d per patch), up to 5 rows ahead, Adam 2e-4, batch 16 on each of 32 GPUs; random 256 crop, flip,
    # grey, 60 x 60 sub-crops. The paper does not state its training length; pass --data /path/to/imagenet.
    "paper": Config(**ADAM, arch="cpc_resnetv2_101", dataset="imagenet", image_size=256, batch_size=512, epochs=100,
                    model_args=dict(patch_size=64, stride=32, layers=[3, 4, 23], channels=[256, 512, 1024],
                                    **PATCH_NORM),
                    method=dict(steps=5, context_blocks=5, context_hidden=256, crop_scale=(256 / 300) ** 2, jitter=4,
                                grey=1.0),
                    knn_subset=50000, workers=8),
}
