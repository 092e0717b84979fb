"""SimSiam: the negative cosine against its formula, the stop-gradient that holds (and the ablation that drops it),
the authors' projector and predictor, the predictor's fixed lr, BatchNorm per view, and a collapse that the gauge
and the engine report."""
import math

import pytest
import torch
from torch import nn

from train import optim
from train.blocks.collapse import COLLAPSED, GAUGE, collapse_warning, output_std
from train.blocks.losses import negative_cosine
from train.engine import Schedules, fit
from train.methods import METHODS, simsiam
from train.methods.base import Progress

MEAN, STD = (0.286,) * 3, (0.353,) * 3
PROGRESS = Progress(0, 0, 2)


def images(n=8, seed=0):
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def smoke(**method):
    cfg = simsiam.PRESETS["smoke"].override(batch_size=8)
    cfg = cfg.override(method={**cfg.method, "dim": 64, "pred_dim": 16, **method})
    torch.manual_seed(0)
    return simsiam.build(cfg, 16, MEAN, STD), cfg


def test_negative_cosine_is_minus_the_mean_cosine_of_each_pair():
    torch.manual_seed(0)
    p, z = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    by_hand = -sum(float(p[i] @ z[i]) / (p[i].norm().item() * z[i].norm().item()) for i in range(6)) / 6
    assert negative_cosine(p, z).item() == pytest.approx(by_hand, abs=1e-6)  # in float32, as in training
    assert negative_cosine(p, 3 * p).item() == pytest.approx(-1.0)  # scale-free: its minimum is -1


def captured_outputs(method):
    """Run a step, keeping the projector's two outputs z1, z2 with their gradients and the predictor's."""
    z = []

    def keep(module, args, out):
        out.retain_grad()
        z.append(out)

    hook = method.projector.register_forward_hook(keep)
    out = method(images(), torch.arange(8), PROGRESS)
    hook.remove()
    out.loss.backward()
    return z


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_the_target_branch_gets_no_gradient_unless_the_ablation_drops_the_stop_gradient(stop_gradient):
    """dL/dz2 is only what z2 receives as a predictor's input (D(p2, stopgrad(z1)) / 2): as the target of p1 it
    is a constant (eq. 2). Without the stop-gradient it also receives the target's share."""
    method, _ = smoke(stop_gradient=stop_gradient)
    z1, z2 = captured_outputs(method)
    as_input = z2.detach().requires_grad_()
    (expected,) = torch.autograd.grad(negative_cosine(method.predictor(as_input), z1.detach()) / 2, as_input)
    assert torch.allclose(z2.grad, expected, atol=1e-7) is stop_gradient
    assert z2.grad.abs().sum() > 0


def test_the_projector_and_predictor_are_the_authors():
    """builder.py: Linear without bias -> BN -> ReLU as wide as the encoder, twice, then Linear to 2048 and a BN
    without scale or shift; the predictor 2048 -> 512 (no bias, BN, ReLU) -> 2048 with a bias and no BN."""
    backbone = nn.Linear(4, 4)
    backbone.num_features = 2048
    method = simsiam.SimSiam(backbone, simsiam.augment(32, MEAN, STD), **simsiam.PAPER_METHOD)
    linears = [m for m in method.projector if isinstance(m, nn.Linear)]
    norms = [m for m in method.projector if isinstance(m, nn.BatchNorm1d)]
    assert [(m.in_features, m.out_features, m.bias) for m in linears] == [(2048, 2048, None)] * 3
    assert [n.affine for n in norms] == [True, True, False] and isinstance(method.projector[-1], nn.BatchNorm1d)
    first, last = method.predictor[0], method.predictor[-1]
    assert (first.in_features, first.out_features, first.bias) == (2048, 512, None)
    assert isinstance(last, nn.Linear) and (last.out_features, last.bias is not None) == (2048, True)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in method.predictor) == 1


def test_each_view_is_normalised_by_its_own_batch_statistics():
    """The authors call the encoder once per view: the backbone's BatchNorms see batches of B, not 2B."""
    method, _ = smoke()
    seen = []
    first_norm = next(m for m in method.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    first_norm.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    method(images(), torch.arange(8), PROGRESS)
    assert seen == [8, 8]


def test_the_predictor_keeps_the_base_lr_while_the_encoder_follows_the_cosine():
    method, cfg = smoke()
    plan = Schedules.of(cfg, steps_per_epoch=10)
    optimizer = optim.build(method, cfg, plan.base_lr)
    plan.apply(optimizer, plan.total_steps - 1)
    predictor = {id(p) for p in method.predictor.parameters()}
    lrs = {any(id(p) in predictor for p in g["params"]): g["lr"] for g in optimizer.param_groups}
    assert lrs[True] == pytest.approx(plan.base_lr) and lrs[False] < plan.base_lr / 10
    method, cfg = smoke(fix_pred_lr=False)
    optimizer = optim.build(method, cfg, plan.base_lr)
    plan.apply(optimizer, plan.total_steps - 1)
    assert all(g["lr"] < plan.base_lr / 10 for g in optimizer.param_groups)


def test_presets_follow_the_authors_numbers():
    paper, cpu = simsiam.PRESETS["paper"], simsiam.PRESETS["fmnist"]
    assert (paper.arch, paper.batch_size, paper.lr, paper.lr_scaling, paper.weight_decay, paper.epochs) == \
        ("resnet50", 512, 0.05, "linear", 1e-4, 100)
    assert (paper.optimizer, paper.momentum, paper.schedule, paper.exclude_norm_bias) == ("sgd", 0.9, "cosine-epoch", False)
    assert paper.method == dict(dim=2048, pred_dim=512, projector_layers=3, fix_pred_lr=True)
    assert "zero_init_last" not in paper.model_args  # timm's default zeroes it: torchvision's zero_init_residual=True
    # the CIFAR-10 recipe: a 2-layer projector, lr 0.03 x B/256, wd 5e-4, batch 512
    assert (cpu.lr, cpu.weight_decay, cpu.batch_size, cpu.method["projector_layers"]) == (0.03, 5e-4, 512, 2)


def test_the_gauge_reads_one_for_spread_outputs_and_zero_for_one_point():
    torch.manual_seed(0)
    assert output_std(torch.randn(4096, 128)).item() == pytest.approx(1.0, abs=0.02)
    assert output_std(torch.randn(1, 128).expand(64, 128) * 5).item() == pytest.approx(0.0, abs=1e-6)
    assert collapse_warning({GAUGE: 0.9}) is None and collapse_warning({"loss": 1.0}) is None
    assert "collapsed" in collapse_warning({GAUGE: COLLAPSED / 2})


def collapse(method):
    """Every image to one point: the projector's first layer zeroed, so every z is the same (zero) vector."""
    with torch.no_grad():
        method.projector[0].weight.zero_()
    return method


def test_a_collapsed_model_is_detected_by_its_logged_gauge():
    method, _ = smoke()
    healthy = method(images(), torch.arange(8), PROGRESS).logs[GAUGE].item()
    collapsed = collapse(method)(images(), torch.arange(8), PROGRESS).logs[GAUGE].item()
    assert healthy > 0.5 and collapsed < COLLAPSED and not math.isnan(collapsed)


def test_the_engine_warns_when_an_epoch_collapsed(tmp_path, zoo_home, monkeypatch, capsys):
    build = simsiam.build
    monkeypatch.setitem(METHODS, "simsiam", type("collapsed", (), dict(
        build=staticmethod(lambda *args: collapse(build(*args))), PRESETS=simsiam.PRESETS)))
    cfg = simsiam.PRESETS["smoke"].override(subset=128, epochs=1, knn_subset=128)
    fit("simsiam", "smoke", cfg, tmp_path / "run", export=False)
    assert "epoch 1: warning: the outputs have collapsed" in capsys.readouterr().err

