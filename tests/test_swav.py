"""SwAV: Sinkhorn's codes against the algorithm written out, the swapped prediction against its formula, the
prototypes frozen then trained and always unit vectors, multi-crop with one backbone call per resolution, the
queue read only once full (and still full after a resume), LARC's trust ratio, and the presets' numbers."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from train import optim, schedules
from train.blocks import sinkhorn as sinkhorn_module
from train.blocks.sinkhorn import sinkhorn
from train.engine import Schedules, train_step
from train.methods import swav
from train.methods.base import Progress

MEAN, STD = (0.286,) * 3, (0.353,) * 3


def images(n=8, seed=0):
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def smoke(**method):
    cfg = swav.PRESETS["smoke"].override(batch_size=8)
    cfg = cfg.override(method={**cfg.method, "hidden": 32, "dim": 16, "prototypes": 12, **method})
    torch.manual_seed(0)
    return swav.build(cfg, 16, MEAN, STD), cfg


def sinkhorn_by_hand(scores, epsilon, iterations):
    """The authors' distributed_sinkhorn on one process, in float64: rows (prototypes) to 1/K, columns to 1/B."""
    q = np.exp(scores.double().numpy() / epsilon).T
    k, b = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    return (q * b).T


def test_sinkhorn_is_the_algorithm_and_equipartitions_the_batch():
    torch.manual_seed(0)
    scores = F.normalize(torch.randn(16, 8), dim=1) @ F.normalize(torch.randn(5, 8), dim=1).T
    q = sinkhorn(scores, epsilon=0.05, iterations=3)
    assert np.allclose(q.numpy(), sinkhorn_by_hand(scores, 0.05, 3), atol=1e-5)
    assert torch.allclose(q.sum(dim=1), torch.ones(16), atol=1e-5)  # each sample's code is a distribution
    converged = sinkhorn(scores, epsilon=0.05, iterations=200)
    assert torch.allclose(converged.sum(dim=0), torch.full((5,), 16 / 5), atol=1e-3)  # each prototype B / K


def test_the_loss_is_the_swapped_prediction_over_every_other_crop():
    method, _ = smoke()
    kept = {}
    method.augment.register_forward_hook(lambda module, args, out: kept.setdefault("crops", [c.clone() for c in out]))
    progress = Progress(0, 0, 2)
    torch.manual_seed(3)
    loss = method(images(), torch.arange(8), progress).loss
    with torch.no_grad():
        z = F.normalize(method.projector(torch.cat([method.backbone(x) for x in kept["crops"]])), dim=1)
        scores = [s for s in (z @ method.prototypes.weight.T).split(8)]
        by_hand = 0.0
        for crop in (0, 1):
            q = sinkhorn(scores[crop], 0.05, 3)
            others = [v for v in range(len(scores)) if v != crop]
            by_hand += sum(-(q * F.log_softmax(scores[v] / 0.1, dim=1)).sum(1).mean() for v in others) / len(others)
    assert loss.item() == pytest.approx(by_hand.item() / 2, rel=1e-4)


def step(method, cfg, epoch):
    plan = Schedules.of(cfg, steps_per_epoch=2)
    optimizer = optim.build(method, cfg, plan.base_lr)
    train_step(method, method, optimizer, plan, images(), torch.arange(8), Progress(epoch, 2 * epoch, 4), cfg,
               torch.device("cpu"))


def test_the_prototypes_are_frozen_in_the_first_epoch_then_train_and_stay_unit_vectors():
    method, cfg = smoke(freeze_prototypes_epochs=1)
    cfg = cfg.override(epochs=2)
    before = method.prototypes.weight.detach().clone()
    step(method, cfg, epoch=0)
    assert torch.allclose(method.prototypes.weight, before, atol=1e-6)
    step(method, cfg, epoch=1)
    assert not torch.allclose(method.prototypes.weight, before, atol=1e-4)
    assert torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(12), atol=1e-5)


def test_multi_crop_runs_the_backbone_once_per_resolution_and_the_head_once_and_the_cpu_preset_is_2x32_and_6x16():
    method, _ = smoke()
    sizes, heads = [], []
    method.backbone.register_forward_pre_hook(lambda module, args: sizes.append(tuple(args[0].shape)))
    method.projector.register_forward_pre_hook(lambda module, args: heads.append(len(args[0])))
    method(images(), torch.arange(8), Progress(0, 0, 2))
    assert sizes == [(16, 3, 32, 32), (48, 3, 16, 16)]
    assert heads == [64]  # the head's BatchNorm normalises all eight crops together, as the authors' forward_head
    assert [crop.size for crop in method.augment.crops] == [32] * 2 + [16] * 6
    assert [crop.scale for crop in method.augment.crops] == [(0.14, 1.0)] * 2 + [(0.05, 0.14)] * 6


def test_the_queue_joins_sinkhorn_only_once_full_and_a_resume_knows_it_is(monkeypatch):
    seen = []
    monkeypatch.setattr(swav, "sinkhorn", lambda scores, *args: (seen.append(len(scores)), sinkhorn(scores, *args))[1])
    method, _ = smoke(queue_size=16, queue_start_epoch=1)
    method(images(), torch.arange(8), Progress(0, 0, 8))  # before the queue starts
    for i in range(3):  # epoch 1: 8 rows, then 16 (full), then read
        method(images(seed=i), torch.arange(8), Progress(1, 2 + i, 8))
    assert seen == [8, 8] + [8, 8] + [8, 8] + [24, 24]
    restored, _ = smoke(queue_size=16, queue_start_epoch=1)
    restored.load_state_dict(method.state_dict())
    seen.clear()
    restored(images(), torch.arange(8), Progress(1, 5, 8))
    assert seen == [24, 24]


def test_larc_trust_ratio_adds_the_norms_of_the_gradient_and_the_decay():
    """apex LARC (clip off), as SwAV: d = (g + wd w) eta ||w|| / (||g|| + wd ||w||); buf = d; w <- w - lr buf."""
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    w.grad = torch.tensor([0.6, 0.8])
    opt = optim.LARS([dict(params=[w], lars=True)], lr=0.5, momentum=0.9, weight_decay=0.1, eta=0.01, trust="larc")
    opt.step()
    trust = 0.01 * 5.0 / (1.0 + 0.1 * 5.0)
    expected = torch.tensor([3.0, 4.0]) - 0.5 * trust * (torch.tensor([0.6, 0.8]) + 0.1 * torch.tensor([3.0, 4.0]))
    assert torch.allclose(w.detach(), expected, atol=1e-6)


def test_the_warm_up_rises_from_swavs_start_warmup_as_linspace():
    values = schedules.cosine(4.8, 0.0048, total=30, warmup=10, origin=0.3)
    assert np.allclose(values[:10], np.linspace(0.3, 4.8, 10))
    assert values[10] == pytest.approx(4.8)
    assert values[1] == pytest.approx(0.3 + 4.5 / 9)


def test_presets_follow_the_authors_script():
    paper = swav.PRESETS["paper"]
    assert (paper.batch_size, paper.lr, paper.lr_scaling, paper.lr_end, paper.warmup_epochs, paper.warmup_start) == \
        (4096, 4.8, "none", 0.0048, 10, 0.3)
    assert (paper.optimizer, paper.lars_trust, paper.exclude_norm_bias, paper.weight_decay, paper.epochs) == \
        ("lars", "larc", False, 1e-6, 800)
    assert paper.model_args == dict(zero_init_last=False)
    m = paper.method
    assert (m["temperature"], m["epsilon"], m["sinkhorn_iterations"], m["dim"], m["prototypes"], m["queue_size"]) == \
        (0.1, 0.05, 3, 128, 3000, 0)
    assert m["crops"] == ((2, 224, (0.14, 1.0)), (6, 96, (0.05, 0.14)))


def test_sinkhorn_sums_over_processes(monkeypatch):
    """The row sums and the total are all-reduced and B counts every process's batch: two processes holding the
    same batch give the codes of one process holding both copies."""
    torch.manual_seed(0)
    scores = torch.randn(6, 4)
    monkeypatch.setattr(sinkhorn_module.distributed, "world_size", lambda: 2)
    monkeypatch.setattr(sinkhorn_module, "all_sum", lambda tensor: tensor * 2)
    doubled = sinkhorn(scores, 0.5, 3)
    monkeypatch.undo()
    assert torch.allclose(doubled, sinkhorn(torch.cat([scores, scores]), 0.5, 3)[:6], atol=1e-5)
