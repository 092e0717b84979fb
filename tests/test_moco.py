"""MoCo v1/v2: the momentum encoder, the FIFO queue, InfoNCE, shuffling BN (two gloo processes and its
one-device substitute), and the v2 head."""
import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import two_processes
from train import optim
from train.blocks.losses import info_nce
from train.blocks.queue import Queue
from train.blocks.shuffle_bn import SplitBatchNorm, shuffled_forward, split_batch_norm
from train.engine import Schedules, train_step
from train.methods import moco, mocov2
from train.methods.base import Progress

MEAN, STD = (0.5,) * 3, (0.25,) * 3


def images(n=8, seed=0):
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def smoke(module=moco, **method):
    cfg = module.PRESETS["smoke"]
    cfg = cfg.override(batch_size=8, method={**cfg.method, **method})
    torch.manual_seed(0)
    return module.build(cfg, 16, MEAN, STD), cfg


def step(method, cfg):
    plan = Schedules.of(cfg, steps_per_epoch=4)
    optimizer = optim.build(method, cfg, plan.base_lr)
    return train_step(method, method, optimizer, plan, images(), torch.arange(8), Progress(0, 0, 4), cfg,
                      torch.device("cpu"))


# --- the queue ------------------------------------------------------------------------------------------


def test_queue_is_first_in_first_out_and_wraps_without_a_multiple_of_the_batch():
    queue, sent = Queue(5, 2), []
    for start in range(0, 12, 3):  # batches of 3 into 5 slots: every write after the first wraps somewhere
        keys = torch.arange(start, start + 3).float()[:, None].repeat(1, 2)
        queue.enqueue(keys)
        sent += keys.tolist()
        if len(sent) >= 5:
            assert queue.oldest_first().tolist() == sent[-5:]
    assert queue.oldest_first()[:, 0].tolist() == [7, 8, 9, 10, 11]
    assert int(queue.pointer) == 12 % 5


def test_a_batch_longer_than_the_queue_leaves_its_newest_keys():
    queue = Queue(4, 1)
    queue.enqueue(torch.arange(10).float()[:, None])
    assert queue.oldest_first()[:, 0].tolist() == [6, 7, 8, 9]


def test_queue_starts_as_random_unit_keys_and_travels_with_the_state_dict():
    queue = Queue(6, 3)
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(6))
    queue.enqueue(F.normalize(torch.randn(4, 3), dim=1))
    restored = Queue(6, 3)
    restored.load_state_dict(queue.state_dict())
    assert torch.equal(restored.keys, queue.keys) and int(restored.pointer) == 4


# --- InfoNCE --------------------------------------------------------------------------------------------


def test_info_nce_equals_eq_1_with_the_positive_at_index_0():
    torch.manual_seed(0)
    q, k, queue = (F.normalize(torch.randn(n, 4, dtype=torch.float64), dim=1) for n in (3, 3, 7))
    loss, accuracy = info_nce(q, k, queue, temperature=0.07)
    expected = 0.0
    for i in range(3):
        positive = math.exp(float(q[i] @ k[i]) / 0.07)
        negatives = sum(math.exp(float(q[i] @ key) / 0.07) for key in queue)
        expected -= math.log(positive / (positive + negatives)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert info_nce(k, k, queue)[1] == 1.0  # a query equal to its key scores highest


# --- the momentum encoder and a step --------------------------------------------------------------------


def test_after_a_step_each_key_parameter_is_m_key_plus_1_minus_m_query_of_before_the_step():
    method, cfg = smoke()
    m = method.momentum
    query = [p.detach().clone() for p in [*method.backbone.parameters(), *method.head.parameters()]]
    key = [p.detach().clone() for p in method.momentum_encoder.parameters()]
    step(method, cfg)
    after = list(method.momentum_encoder.parameters())
    assert len(after) == len(query)
    for before_k, before_q, now in zip(key, query, after):
        assert torch.allclose(now, m * before_k + (1 - m) * before_q, atol=1e-6)
    assert not torch.equal(query[-1], method.head.weight if not isinstance(method.head, nn.Sequential)
                           else method.head[-1].weight)  # the query moved, so "before" mattered


def test_gradient_never_reaches_the_key_encoder_and_the_queue_takes_the_batchs_keys():
    method, cfg = smoke()
    queue_before = method.queue.keys.clone()
    out = method(images(), torch.arange(8), Progress(0, 0, 4))
    out.loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in method.momentum_encoder.parameters())
    assert method.backbone.conv1.weight.grad.abs().sum() > 0
    assert int(method.queue.pointer) == 8
    changed = (method.queue.keys != queue_before).any(dim=1)
    assert changed[:8].all() and not changed[8:].any()  # the 8 new keys replaced the 8 oldest, nothing else
    assert torch.allclose(method.queue.keys[:8].norm(dim=1), torch.ones(8))


def test_each_optimiser_group_leaves_out_the_momentum_encoder():
    method, cfg = smoke()
    trained = {id(p) for g in optim.build(method, cfg, 0.1).param_groups for p in g["params"]}
    assert not trained & {id(p) for p in method.momentum_encoder.parameters()}


def test_mocov2_has_an_mlp_head_as_wide_as_the_encoder_without_batchnorm_and_t_0_2():
    method, _ = smoke(mocov2)
    width = method.backbone.num_features
    linears = [m for m in method.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(width, width), (width, 128)]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in method.head.modules())
    assert mocov2.PRESETS["paper"].method["temperature"] == 0.2
    assert {mocov2.PRESETS[p].schedule for p in ("paper", "paper-800ep")} == {"cosine-epoch"}  # held each epoch
    assert moco.PRESETS["paper"].schedule == "step"
    assert {mocov2.PRESETS[p].epochs for p in ("paper", "paper-800ep")} == {200, 800}


# --- shuffling BN ---------------------------------------------------------------------------------------


def test_split_batchnorm_normalises_each_group_alone_and_is_plain_batchnorm_in_eval():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    plain = nn.BatchNorm2d(3)
    split = split_batch_norm(nn.Sequential(nn.BatchNorm2d(3)), 2)[0]
    assert isinstance(split, SplitBatchNorm) and split.state_dict().keys() == plain.state_dict().keys()
    groups = [nn.BatchNorm2d(3) for _ in range(2)]
    expected = torch.empty_like(x)
    for g, bn in enumerate(groups):
        expected[g::2] = bn(x[g::2])
    assert torch.allclose(split(x), expected, atol=1e-5)
    assert not torch.allclose(split(x), plain(x), atol=1e-3)  # the groups' statistics differ from the batch's
    split.eval(), plain.eval()
    split.running_mean.copy_(plain.running_mean), split.running_var.copy_(plain.running_var)
    assert torch.allclose(split(x), plain(x))


def authors_split_batchnorm(x, running_mean, running_var, splits):
    """The authors' training step: the running statistics repeated per group, then the groups' copies
    averaged back (the MoCo CIFAR demo's SplitBatchNorm)."""
    n, c, h, w = x.shape
    mean, var = running_mean.repeat(splits), running_var.repeat(splits)
    out = F.batch_norm(x.view(n // splits, c * splits, h, w), mean, var, None, None, True, 0.1, 1e-5)
    return out.view(n, c, h, w), mean.view(splits, c).mean(0), var.view(splits, c).mean(0)


def test_split_batchnorm_keeps_the_authors_running_statistics_through_eval_a_checkpoint_and_a_resume():
    torch.manual_seed(0)
    split, mean, var = SplitBatchNorm(3, 4), torch.zeros(3), torch.ones(3)
    for step in range(6):
        x = torch.randn(8, 3, 4, 4) * (step + 1) + step
        expected, mean, var = authors_split_batchnorm(x, mean, var, 4)
        assert torch.allclose(split(x), expected, atol=1e-5)
        if step == 1:  # the kNN monitor's eval pass reads the statistics, then training goes on
            split.eval()
            assert torch.allclose(split.running_mean, mean, atol=1e-6)
            assert torch.allclose(split(x), F.batch_norm(x, mean, var, eps=1e-5), atol=1e-5)
            split.train()
        if step == 3:  # a checkpoint in the middle of training, resumed by a new process
            state = split.state_dict()
            assert set(state) == set(nn.BatchNorm2d(3).state_dict())
            assert torch.allclose(state["running_mean"], mean, atol=1e-6)
            assert torch.allclose(state["running_var"], var, atol=1e-6)
            split = SplitBatchNorm(3, 4)
            split.load_state_dict(state)
    split.eval()
    assert torch.allclose(split.running_mean, mean, atol=1e-5) and torch.allclose(split.running_var, var, atol=1e-5)


def test_split_batchnorm_of_one_group_is_batchnorm_in_training_too():
    torch.manual_seed(0)
    x, plain, one = torch.randn(4, 3, 2, 2) + 5, nn.BatchNorm2d(3), SplitBatchNorm(3, 1)
    assert torch.allclose(one(x), plain(x), atol=1e-5)
    assert torch.allclose(one.state_dict()["running_mean"], plain.running_mean, atol=1e-6)


def test_split_batchnorm_trains_on_from_running_statistics_written_in_eval_mode():
    split = SplitBatchNorm(3, 2).eval()
    split.running_mean.fill_(5.0)
    split.train()
    split(torch.zeros(4, 3, 2, 2))  # every group's batch mean is 0: each copy moves 10% of the way from 5
    assert torch.allclose(split.state_dict()["running_mean"], torch.full((3,), 4.5))


def test_split_batchnorm_keeps_its_groups_through_a_partial_load_and_resets_them_with_its_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(SplitBatchNorm(3, 2), nn.Linear(2, 2))
    model[0](torch.randn(4, 3, 2, 2) + 2)
    trained = model.state_dict()["0.running_mean"].clone()
    assert trained.abs().sum() > 0
    model.load_state_dict({"1.weight": torch.eye(2), "1.bias": torch.zeros(2)}, strict=False)  # the head only
    assert torch.allclose(model.state_dict()["0.running_mean"], trained)
    model[0].reset_running_stats()
    assert model.state_dict()["0.running_mean"].abs().sum() == 0


def test_split_batchnorm_without_a_momentum_keeps_the_cumulative_average_of_the_groups():
    torch.manual_seed(0)
    split, batches = SplitBatchNorm(3, 2, momentum=None), [torch.randn(4, 3, 2, 2) * 2 + k for k in range(3)]
    groups = [nn.BatchNorm2d(3, momentum=None) for _ in range(2)]
    for x in batches:
        split(x)
        for g, bn in enumerate(groups):
            bn(x[g::2])
    expected = (groups[0].running_mean + groups[1].running_mean) / 2
    assert torch.allclose(split.state_dict()["running_mean"], expected, atol=1e-6)
    assert split.num_batches_tracked == 3


def split_counts(encoder: nn.Module) -> set[int]:
    return {m.splits if isinstance(m, SplitBatchNorm) else 1 for m in encoder.modules()
            if isinstance(m, nn.BatchNorm2d)}


def test_the_engine_trains_split_batchnorm_models_nchw_where_their_groups_copy_no_activation():
    """SplitBatchNorm views (N, C, H, W) as (N / g, C g, H, W): free in NCHW, a copy of every activation in
    channels-last, so the engine keeps such a model NCHW (train.engine.training_layout), and only such a model."""
    from bench.dispatch import dispatched
    from train.engine import on_device, training_layout

    method, cfg = smoke(mocov2)
    assert cfg.method["bn_splits"] > 1 and training_layout(method) == torch.contiguous_format
    method = on_device(method, torch.device("cpu"))
    assert all(p.is_contiguous() for p in method.parameters())
    assert training_layout(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))) == torch.channels_last
    for layout, copies in ((torch.contiguous_format, 0), (torch.channels_last, 1)):
        norm, x = SplitBatchNorm(3, 2), torch.randn(8, 3, 32, 32).contiguous(memory_format=layout)
        ops = dispatched(lambda: norm(x)).ops
        assert ops["clone"] == copies  # the reshape's copy out of channels-last, which NCHW never makes


@pytest.mark.parametrize("module", [moco, mocov2])
def test_the_paper_preset_on_one_device_normalises_in_the_8_groups_of_the_papers_8_gpus(module):
    cfg = module.PRESETS["paper"].override(arch="resnet18")  # the recipe's method on a smaller encoder
    torch.manual_seed(0)
    method = module.build(cfg, 16, MEAN, STD)
    assert split_counts(method.backbone) == {8}
    assert split_counts(method.momentum_encoder[0]) == {8}  # the key encoder is a copy: its BatchNorms split too


@pytest.mark.parametrize("world, local", [(1, 8), (2, 4), (8, 1), (16, 1)])
def test_the_global_batchs_bn_groups_are_shared_by_the_processes(world, local):
    assert moco.local_splits(8, world) == local


def test_bn_groups_that_the_processes_cannot_share_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="bn_splits=8 .* 3 processes: make one a multiple of the other"):
        moco.local_splits(8, 3)


def test_one_device_shuffle_returns_the_keys_in_the_batch_order():
    torch.manual_seed(0)
    seen = []
    encoder = Recorder(seen)
    x = torch.arange(16).float()[:, None]
    assert torch.equal(shuffled_forward(encoder, x), 2 * x)
    assert not torch.equal(seen[0], x) and torch.equal(seen[0].sort(dim=0).values, x)


class Recorder(nn.Module):
    """A row-wise stand-in for the key encoder that keeps the batch its BatchNorm would have seen."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def forward(self, x):
        self.seen.append(x.clone())
        return 2 * x


def _shuffle_on_rank(rank, port, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(10 + rank)  # different draws per rank: only the broadcast makes them agree
        x = torch.arange(8 * rank, 8 * rank + 8).float()[:, None]  # rank r holds rows 8r .. 8r + 7
        seen = []
        results[rank] = dict(out=shuffled_forward(Recorder(seen), x), x=x, seen=seen[0])
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_shuffle_the_global_batch_and_get_their_own_keys_back_in_order():
    results = two_processes(_shuffle_on_rank)
    seen = torch.cat([results[0]["seen"], results[1]["seen"]])[:, 0]
    assert sorted(seen.tolist()) == list(range(16))  # the ranks' BatchNorms together saw each row once
    mixed = [set(results[r]["seen"][:, 0].tolist()) != set(results[r]["x"][:, 0].tolist()) for r in range(2)]
    assert all(mixed)  # each rank's sub-batch is not its own
    for r in range(2):
        assert torch.equal(results[r]["out"], 2 * results[r]["x"])
