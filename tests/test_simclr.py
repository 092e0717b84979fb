"""SimCLR v1/v2: NT-Xent against the paper's formula, its gradients, the projection head as the authors
build it, LARS on the method's own groups, v2's second export and its optional memory."""
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from train import optim
from train.augment import Preprocess
from train.batch_transforms import RandomGaussianBlur
from train.blocks.losses import nt_xent
from train.data import Data
from train.engine import Schedules, write_checkpoint
from train.methods import simclr, simclrv2
from train.methods.base import Progress
from zoo.projected import Projected

MEAN, STD = (0.5,) * 3, (0.25,) * 3
T = 0.5


def unit_rows(n, d=5, seed=0):
    torch.manual_seed(seed)
    return F.normalize(torch.randn(n, d, dtype=torch.float64), dim=1)


def paper_formula(z, temperature=T, negatives=()):
    """Eq. 1 averaged over the 2N ordered pairs, written out: l(i, j) = -log e_ij / sum_{k != i} e_ik."""
    n, total = len(z), 0.0
    for i in range(n):
        j = (i + n // 2) % n
        e = [math.exp(float(z[i] @ z[k]) / temperature) for k in range(n)]
        e_negatives = [math.exp(float(z[i] @ v) / temperature) for v in negatives]
        total -= math.log(e[j] / (sum(e[k] for k in range(n) if k != i) + sum(e_negatives)))
    return total / n


def images(n=8, seed=0):
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def smoke(module=simclr, preset="smoke"):
    cfg = module.PRESETS[preset].override(batch_size=8)
    torch.manual_seed(0)
    return module.build(cfg, 16, MEAN, STD), cfg


def test_nt_xent_equals_the_papers_formula_over_all_2n_pairs():
    z = unit_rows(8)
    loss, _ = nt_xent(z, temperature=T)
    assert loss.item() == pytest.approx(paper_formula(z), rel=1e-6)


def test_nt_xent_with_memory_negatives_adds_them_to_every_denominator():
    z, memory = unit_rows(6), unit_rows(5, seed=1)
    loss, _ = nt_xent(z, temperature=T, negatives=memory)
    assert loss.item() == pytest.approx(paper_formula(z, negatives=memory), rel=1e-6)


def test_gradient_reaches_every_view_as_key_too_unlike_invaspread():
    z, keys = unit_rows(6).requires_grad_(), unit_rows(6).clone().requires_grad_()
    nt_xent(z, keys, temperature=T)[0].backward()
    assert (keys.grad.norm(dim=1) > 0).all() and (z.grad.norm(dim=1) > 0).all()


def test_the_loss_is_the_authors_sum_of_both_directions():
    method, _ = smoke()
    torch.manual_seed(3)
    out = method(images(), torch.arange(8), Progress(0, 0, 1))
    torch.manual_seed(3)
    z = method.project(method.augment(images()))
    assert out.loss.item() == pytest.approx(2 * nt_xent(z, temperature=method.temperature)[0].item(), rel=1e-5)


@pytest.mark.parametrize("module, layers", [(simclr, 2), (simclrv2, 3)])
def test_projection_head_is_dense_bn_relu_then_dense_bn_without_bias_or_relu(module, layers):
    method, cfg = smoke(module)
    head, width = method.head, method.backbone.num_features
    assert len(head) == layers
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(width, width)] * (layers - 1) + [(width, 128)]
    assert all(m.bias is None for m in linears)  # the BatchNorm after each Dense is its bias
    assert not any(isinstance(m, nn.ReLU) for m in head[-1].modules())
    last_bn = head[-1][1]
    trained = {id(p) for g in optim.build(method, cfg, 0.1).param_groups for p in g["params"]}
    assert id(last_bn.weight) in trained and id(last_bn.bias) not in trained  # scale, never shift
    method(images(), torch.arange(8), Progress(0, 0, 1)).loss.backward()
    assert torch.equal(last_bn.bias, torch.zeros(128))


def test_lars_step_on_simclrs_groups_is_the_hand_computed_trust_ratio_with_norms_and_biases_excluded():
    method, cfg = smoke()
    plan = Schedules.of(cfg, steps_per_epoch=2)
    optimizer = optim.build(method, cfg, plan.base_lr)
    plan.apply(optimizer, 1)
    lr, wd, eta = optimizer.param_groups[0]["lr"], cfg.weight_decay, cfg.lars_eta
    conv, bn, bias = method.backbone.conv1.weight, method.backbone.bn1.weight, method.backbone.bn1.bias
    torch.manual_seed(0)
    for p in method.parameters():
        p.grad = torch.randn_like(p) if p.requires_grad else None
    before = {name: p.detach().clone() for name, p in (("conv", conv), ("bn", bn), ("bias", bias))}
    grads = {name: p.grad.clone() for name, p in (("conv", conv), ("bn", bn), ("bias", bias))}
    optimizer.step()
    d = grads["conv"] + wd * before["conv"]
    assert torch.allclose(conv, before["conv"] - lr * eta * before["conv"].norm() / d.norm() * d, atol=1e-7)
    for name, p in (("bn", bn), ("bias", bias)):  # no trust ratio, no weight decay
        assert torch.allclose(p, before[name] - lr * grads[name], atol=1e-7)
    assert cfg.optimizer == "lars" and simclr.PRESETS["paper"].exclude_norm_bias
    # the authors' LARS is "classic": the lr inside the momentum buffer, in every preset of v1 and v2
    assert all(p.lars_classic_momentum for m in (simclr, simclrv2) for p in m.PRESETS.values())


def test_a_recipe_without_normalisation_is_fed_rgb_in_0_1():
    from train.data import FMNIST_STATS, as_fed, fed_stats
    data = Data([], [], torch.zeros(0), torch.zeros(0), (0.3,) * 3, (0.35,) * 3, 1.0)
    kept = as_fed(data, True)
    assert (kept.mean, kept.std, kept.train) == (data.mean, data.std, data.train)
    assert fed_stats(FMNIST_STATS, True) == FMNIST_STATS and fed_stats(FMNIST_STATS, False)["std"] == (1.0,) * 3
    raw = as_fed(data, False)
    assert (raw.mean, raw.std) == ((0.0,) * 3, (1.0,) * 3) and (data.mean, data.std) == ((0.3,) * 3, (0.35,) * 3)


def test_the_views_are_the_authors_unnormalised_rgb_in_tensorflows_crops():
    assert not any(p.normalize for m in (simclr, simclrv2) for p in m.PRESETS.values())  # data_util: no mean or std
    views = simclr.augment(32, (0.0,) * 3, (1.0,) * 3, strength=0.5, blur=0.0)
    assert views.crops[0].sampler == "tensorflow"
    blur = [op for op in simclr.augment(32, (0.0,) * 3, (1.0,) * 3).ops if isinstance(op, RandomGaussianBlur)]
    assert [(b.per_batch_sigma, b.padding, b.p) for b in blur] == [(True, "zeros", 0.5)]  # batch_random_blur
    out = views(torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8))
    assert out.min() >= 0 and out.max() <= 1 and out.max() > 0.5  # RGB in [0, 1], as the authors feed it


def test_presets_follow_the_papers_numbers():
    v1, v2 = simclr.PRESETS["paper"], simclrv2.PRESETS["paper"]
    assert (v1.batch_size, v1.lr, v1.lr_scaling, v1.weight_decay, v1.warmup_epochs) == (4096, 0.3, "linear", 1e-6, 10)
    assert (v2.lr, v2.lr_scaling, v2.weight_decay, v2.warmup_epochs, v2.epochs) == (0.1, "sqrt", 1e-4, 40, 800)
    readme = simclrv2.PRESETS["paper-100ep"]
    assert (readme.lr, readme.lr_scaling, readme.warmup_epochs, readme.epochs) == (0.075, "sqrt", 10, 100)
    assert v2.method["head_layers"] == 3 and (v1.method["head_layers"], v1.weight_decay) == (2, 1e-6)
    # the CPU presets: v1's CIFAR-10 command (wd 1e-6) and v2's (wd 1e-4)
    assert (simclr.PRESETS["fmnist"].weight_decay, simclrv2.PRESETS["fmnist"].weight_decay) == (1e-6, 1e-4)
    # T = 0.1 in every recipe: the CIFAR command's 0.5 stays below raw pixels at the CPU preset's 4 epochs
    assert {p.method["temperature"] for m in (simclr, simclrv2) for p in m.PRESETS.values()} == {0.1}
    assert v2.method["memory"] == 0  # the memory is the paper's, not the public code's: off unless asked


def test_v2_exports_the_encoder_and_the_encoder_with_the_heads_first_layer(tmp_path, zoo_home):
    method, cfg = smoke(simclrv2)
    method(images(), torch.arange(8), Progress(0, 0, 1))  # BatchNorm statistics in motion
    extra = method.extra_exports()["projected"].eval()
    assert isinstance(extra, Projected) and extra.projection is method.head[0]
    x = Preprocess(32, MEAN, STD)(images(4))
    with torch.no_grad():
        assert torch.allclose(extra(x), method.head[0](method.backbone.eval()(x)))
        split = Data(None, None, None, None, MEAN, STD, 1.0)
        folder = write_checkpoint(extra, tmp_path / "projected", cfg, split, card="# test\n")
        assert torch.allclose(zoo.load(str(folder))(x), extra(x), atol=1e-6)
        assert timm.create_model(f"local-dir:{folder}", pretrained=True).eval()(x).shape == (4, 512)
    tuned = zoo.load(str(folder), num_classes=5)
    assert tuned(x).shape == (4, 5) and torch.equal(tuned.projection[0].weight, extra.projection[0].weight)


def test_v2_memory_queues_the_momentum_encoders_projections_and_never_trains_it():
    method, cfg = smoke(simclrv2, "smoke-memory")
    out = method(images(), torch.arange(8), Progress(0, 0, 1))
    out.loss.backward()
    assert int(method.queue.pointer) == 16  # both views of 8 images
    assert torch.allclose(method.queue.keys[:16].norm(dim=1), torch.ones(16))
    assert all(p.grad is None for p in method.momentum_encoder.parameters())
    trained = {id(p) for g in optim.build(method, cfg, 0.1).param_groups for p in g["params"]}
    assert not trained & {id(p) for p in method.momentum_encoder.parameters()}


def test_training_v2_exports_both_models_each_with_its_card(zoo_home, tmp_path):
    import train.__main__

    assert train.__main__.main(["simclrv2", "--preset", "smoke", "--out", str(tmp_path / "run")]) == 0
    encoder = zoo.load("simclrv2-resnet18-fmnist-smoke")
    projected = zoo.load("simclrv2-resnet18-fmnist-smoke-projected")
    for name in ("simclrv2-resnet18-fmnist-smoke", "simclrv2-resnet18-fmnist-smoke-projected"):
        info = zoo.info(name)  # trained on unnormalised RGB: so is each export fed
        assert info["mean"] == pytest.approx((0.0,) * 3) and info["std"] == pytest.approx((1.0,) * 3)
    x = torch.randn(2, 3, 32, 32)
    assert encoder(x).shape == projected(x).shape == (2, 512)
    assert isinstance(projected, Projected) and not isinstance(encoder, Projected)
    card = (zoo_home / "simclrv2-resnet18-fmnist-smoke-projected" / "README.md").read_text()
    assert "projection head" in card and "simclrv2_resnet18" in card
