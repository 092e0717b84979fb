"""MoCo v3: the in-batch InfoNCE against its formula, the key encoder averaged before the keys with m on its cosine,
keys without gradient, the authors' MLPs for ResNets and ViTs, the ViT's fixed position embedding and frozen random
patch projection, and the presets' numbers."""
import math

import pytest
import torch
from torch import nn

from conftest import step_with_target_apart

from train import optim
from train.blocks.losses import in_batch_info_nce
from train.blocks.momentum import cosine_momentum
from train.blocks.vit import sincos_position_embedding
from train.engine import Schedules, train_step
from train.methods import mocov3
from train.methods.base import Progress

MEAN, STD = (0.286,) * 3, (0.353,) * 3


def images(n=8, seed=0):
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def smoke(preset="smoke", **method):
    cfg = mocov3.PRESETS[preset].override(batch_size=8)
    cfg = cfg.override(method={**cfg.method, "hidden": 32, "dim": 16, **method})
    torch.manual_seed(0)
    return mocov3.build(cfg, 16, MEAN, STD), cfg


def test_the_loss_is_infonce_over_the_batch_keys_times_2t():
    """ctr(q, k) = -log exp(q.k+ / T) / sum_j exp(q.k_j / T), averaged, times 2T; this process's keys at ``offset``."""
    torch.manual_seed(0)
    q, keys, offset, t = torch.randn(3, 5), torch.randn(7, 5), 2, 0.2
    qn, kn = q / q.norm(dim=1, keepdim=True), keys / keys.norm(dim=1, keepdim=True)
    by_hand = 0.0
    for i in range(3):
        scores = [math.exp(float(qn[i] @ kn[j]) / t) for j in range(7)]
        by_hand += -math.log(scores[offset + i] / sum(scores)) / 3
    loss, _ = in_batch_info_nce(q, keys, offset, t)
    assert loss.item() == pytest.approx(by_hand * 2 * t, rel=1e-5)
    assert in_batch_info_nce(q, keys, 0, t)[0].item() != pytest.approx(loss.item())  # the offset picks the positive


def test_the_key_encoder_is_averaged_with_the_weights_before_the_step_then_gives_the_keys():
    """theta_k <- m theta_k + (1 - m) theta_q at the start of the step (theta_q not yet updated), m on its cosine."""
    method, cfg = smoke()
    progress = Progress(0, 3, 8)
    key_before, online_before = step_with_target_apart(method, cfg, progress, (method.backbone, method.projector),
                                                       images())
    m = cosine_momentum(cfg.method["base_momentum"], progress.fraction)
    assert 0.99 < m < 1
    for before, after, theta in zip(key_before, method.momentum_encoder.parameters(), online_before):
        assert torch.allclose(after, m * before + (1 - m) * theta, atol=1e-6)
    online_after = [p.detach() for mod in (method.backbone, method.projector) for p in mod.parameters()]
    assert sum(not torch.equal(a, b) for a, b in zip(online_before, online_after)) > len(online_before) // 2
    # the predictor is no part of the key encoder
    assert len(key_before) == len(online_before)


def layout(head):
    return [(type(m).__name__, getattr(m, "bias", None) is not None if isinstance(m, nn.Linear) else
             getattr(m, "affine", None)) for m in head]


def test_the_heads_are_the_authors_mlps_for_resnets_and_for_vits():
    """builder.py: Linear without bias, BN, ReLU; the projector ends in a BN without affine (2 layers on a ResNet,
    3 on a ViT); the predictor has 2 layers and ends in that BN on a ViT only."""
    resnet, _ = smoke()
    vit, _ = smoke("smoke-vit")
    hidden = [("Linear", False), ("BatchNorm1d", True), ("ReLU", None)]
    assert layout(resnet.projector) == hidden + [("Linear", False), ("BatchNorm1d", False)]
    assert layout(resnet.predictor) == hidden + [("Linear", False)]
    assert layout(vit.projector) == hidden * 2 + [("Linear", False), ("BatchNorm1d", False)]
    assert layout(vit.predictor) == hidden + [("Linear", False), ("BatchNorm1d", False)]


def test_the_sincos_embedding_encodes_row_then_column_at_falling_frequencies():
    pe = sincos_position_embedding((3, 4), 8)[0]  # dim 8: two frequencies, 1 and 1/100
    assert pe.shape == (1 + 12, 8) and torch.equal(pe[0], torch.zeros(8))  # the class token's row is zero
    row, col = 2, 3
    omega = torch.tensor([1.0, 0.01])
    expected = torch.cat([(row * omega).sin(), (row * omega).cos(), (col * omega).sin(), (col * omega).cos()])
    assert torch.allclose(pe[1 + row * 4 + col], expected)  # timm's tokens run row by row


def test_the_vit_keeps_its_position_embedding_and_random_patch_projection_through_training():
    """Sec. 4.2: the patch projection stays at its random init, the sin-cos position embedding is not learnt;
    the blocks do train."""
    method, cfg = smoke("smoke-vit")
    vit = method.backbone
    assert torch.equal(vit.pos_embed, sincos_position_embedding(vit.patch_embed.grid_size, vit.embed_dim))
    frozen = {"pos_embed": vit.pos_embed, "proj.weight": vit.patch_embed.proj.weight,
              "proj.bias": vit.patch_embed.proj.bias}
    before = {k: p.detach().clone() for k, p in frozen.items()}
    block = vit.blocks[0].attn.qkv.weight.detach().clone()
    plan = Schedules.of(cfg, steps_per_epoch=4)
    train_step(method, method, optim.build(method, cfg, plan.base_lr), plan, images(), torch.arange(8),
               Progress(0, 2, plan.total_steps), cfg, torch.device("cpu"))
    for key, p in frozen.items():
        assert not p.requires_grad and torch.equal(p, before[key]), key
    assert not torch.equal(vit.blocks[0].attn.qkv.weight, block)
    assert not torch.equal(vit.patch_embed.proj.bias, torch.ones_like(vit.patch_embed.proj.bias))
    assert vit.patch_embed.proj.bias.abs().max() == 0  # zero-initialised, as vits.py


def test_without_stop_grad_conv1_the_patch_projection_trains():
    method, _ = smoke("smoke-vit", stop_grad_conv1=False)
    assert method.backbone.patch_embed.proj.weight.requires_grad


def test_the_qkv_projection_is_initialised_on_each_of_its_three_parts():
    method, _ = smoke("smoke-vit")
    qkv = method.backbone.blocks[0].attn.qkv.weight  # [3 d, d]: Xavier bound sqrt(6 / (d + d)), not (3 d + d)
    width = qkv.shape[1]
    assert qkv.abs().max() <= math.sqrt(6 / (2 * width)) and qkv.abs().max() > math.sqrt(6 / (4 * width))
    assert method.backbone.cls_token.abs().max() < 1e-4


def test_presets_follow_the_authors_numbers():
    paper = mocov3.PRESETS["paper"]
    assert (paper.arch, paper.model_args, paper.batch_size, paper.optimizer, paper.lr, paper.lr_scaling) == \
        ("vit_small_patch16_224", dict(num_heads=12), 4096, "adamw", 1.5e-4, "linear")
    assert (paper.weight_decay, paper.exclude_norm_bias, paper.warmup_epochs, paper.epochs) == (0.1, False, 40, 300)
    assert (paper.method["temperature"], paper.method["base_momentum"], paper.method["crop_min"],
            paper.method["stop_grad_conv1"]) == (0.2, 0.99, 0.08, True)
    r50 = mocov3.PRESETS["paper-r50"]
    assert (r50.optimizer, r50.lr, r50.weight_decay, r50.exclude_norm_bias, r50.warmup_epochs, r50.epochs) == \
        ("lars", 0.6, 1e-6, True, 10, 100)
    assert (r50.method["temperature"], r50.method["crop_min"], r50.model_args) == (1.0, 0.2, {})
    long = mocov3.PRESETS["paper-r50-1000ep"]
    assert (long.lr, long.weight_decay, long.epochs, long.method["base_momentum"]) == (0.3, 1.5e-6, 1000, 0.996)
