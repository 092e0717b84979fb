"""BYOL: the target as a cosine-scheduled moving average of the online network after each step, a target side
that gets no gradient, the loss against its formula, the authors' heads, the two views' own augmentations, and
the presets' numbers."""
import math

import pytest
import torch
from torch import nn

from conftest import step_with_target_apart

from train import batch_transforms as T
from train.blocks.losses import regression_loss
from train.blocks.momentum import cosine_momentum
from train.methods import byol
from train.methods.base import Progress

MEAN, STD = (0.286,) * 3, (0.353,) * 3


def images(n=8, seed=0):
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def smoke():
    cfg = byol.PRESETS["smoke"].override(batch_size=8)
    cfg = cfg.override(method={**cfg.method, "hidden": 32, "dim": 16})
    torch.manual_seed(0)
    return byol.build(cfg, 16, MEAN, STD), cfg


def test_the_loss_is_the_squared_distance_of_the_normalised_vectors():
    torch.manual_seed(0)
    p, z = torch.randn(6, 5), torch.randn(6, 5)
    by_hand = sum(float(((p[i] / p[i].norm() - z[i] / z[i].norm()) ** 2).sum()) for i in range(6)) / 6
    assert regression_loss(p, z).item() == pytest.approx(by_hand, abs=1e-6)


def test_tau_rises_from_its_base_to_one_on_a_cosine():
    assert cosine_momentum(0.996, 0.0) == pytest.approx(0.996)
    assert cosine_momentum(0.996, 0.5) == pytest.approx(0.998)
    assert cosine_momentum(0.996, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(0.996, 0.25) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2)


def test_after_a_step_the_target_is_the_moving_average_with_the_new_online_weights():
    """xi <- tau xi + (1 - tau) theta, theta the online weights after this step's update, tau at this step."""
    method, cfg = smoke()
    progress = Progress(0, 3, 8)
    target_before, online_before = step_with_target_apart(method, cfg, progress, (method.backbone, method.projector),
                                                          images())
    online = [p.detach() for m in (method.backbone, method.projector) for p in m.parameters()]
    tau = cosine_momentum(cfg.method["base_momentum"], progress.fraction)
    assert 0.99 < tau < 1
    for before, after, theta in zip(target_before, method.momentum_encoder.parameters(), online):
        assert torch.allclose(after, tau * before + (1 - tau) * theta, atol=1e-6)
    # neither the weights before the step nor the schedule's first tau would give the same target
    changed = [not torch.equal(old, new) for old, new in zip(online_before, online)]
    assert sum(changed) > len(changed) // 2
    first = cosine_momentum(cfg.method["base_momentum"], 0.0)
    assert not all(torch.allclose(after, first * before + (1 - first) * theta, atol=1e-6)
                   for before, after, theta in zip(target_before, method.momentum_encoder.parameters(), online))


def test_the_heads_are_the_authors_mlps():
    """networks.MLP: Linear (with bias) to 4096, BatchNorm, ReLU, Linear to 256 without bias; the same for the
    predictor."""
    backbone = nn.Linear(4, 4)
    backbone.num_features = 2048
    method = byol.BYOL(backbone, *(byol.augment(32, MEAN, STD, b, s) for b, s in ((1.0, 0.0), (0.1, 0.2))),
                       **{k: v for k, v in byol.PAPER_METHOD.items() if k not in ("blur", "solarize")})
    for head, width in ((method.projector, 2048), (method.predictor, 256)):
        linears = [m for m in head if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features, m.bias is not None) for m in linears] == [(width, 4096, True),
                                                                                           (4096, 256, False)]
        assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]


def test_the_two_views_are_augmented_as_the_authors_two():
    """View 1 always blurred and never solarised, view 2 blurred one time in ten and solarised one time in five."""
    views = byol.build(byol.PRESETS["paper"].override(arch="test_resnet", image_size=64), 1, MEAN, STD).augment
    def probabilities(augment):
        blur = [m.p for m in augment.ops if isinstance(m, T.RandomGaussianBlur)]
        solarize = [m.p for m in augment.ops if isinstance(m, T.RandomSolarize)]
        return blur, solarize
    assert probabilities(views.augment) == ([1.0], [])
    assert probabilities(views.second) == ([0.1], [0.2])
    blur = next(m for m in views.augment.ops if isinstance(m, T.RandomGaussianBlur))
    assert (blur.per_batch_sigma, blur.padding) == (False, "zeros")  # a sigma per image, 'SAME' padding
    assert views.augment.crops[0].sampler == "torchvision"  # area uniform, aspect log-uniform (not SimCLR's TF boxes)


def test_solarising_inverts_the_bright_pixels_of_the_drawn_images_only():
    x = torch.tensor([0.1, 0.49, 0.5, 0.9]).view(1, 1, 1, 4).repeat(2, 1, 1, 1)
    assert torch.allclose(T.RandomSolarize(1.0)(x)[0].flatten(), torch.tensor([0.1, 0.49, 0.5, 0.1]))
    assert torch.equal(T.RandomSolarize(0.0)(x), x)


def test_presets_follow_the_authors_numbers():
    paper = byol.PRESETS["paper"]
    assert (paper.arch, paper.batch_size, paper.lr, paper.lr_scaling, paper.weight_decay) == \
        ("resnet50", 4096, 0.2, "linear", 1.5e-6)
    assert (paper.optimizer, paper.momentum, paper.lars_eta, paper.exclude_norm_bias, paper.lars_classic_momentum) == \
        ("lars", 0.9, 1e-3, True, False)
    assert (paper.warmup_epochs, paper.epochs, paper.schedule) == (10, 1000, "cosine")
    assert paper.method == dict(hidden=4096, dim=256, base_momentum=0.996, blur=(1.0, 0.1), solarize=(0.0, 0.2))


def test_without_the_predictor_the_online_projection_meets_the_target_directly():
    """Table 5's ablation: the predictor is the identity, and nothing of it trains."""
    cfg = byol.PRESETS["smoke"].override(batch_size=8)
    cfg = cfg.override(method={**cfg.method, "hidden": 32, "dim": 16, "predictor": False})
    method = byol.build(cfg, 16, MEAN, STD)
    assert isinstance(method.predictor, nn.Identity) and not list(method.predictor.parameters())
    assert method(images(), torch.arange(8), Progress(0, 0, 2)).loss.requires_grad
