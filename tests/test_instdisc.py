"""InstDisc's mechanisms: the memory bank, the NCE loss, the Z estimate and the kNN monitor."""
import math

import torch
import torch.nn.functional as F

import pytest

from train.augment import InstanceAugment, Preprocess
from train.blocks.losses import estimate_log_z, nce_loss
from train.blocks.memory_bank import MemoryBank
from train.knn import knn_predict
from train.methods.base import Progress
from train.methods.instdisc import PRESETS, InstDisc

START = Progress(epoch=0, step=0, total_steps=10)


def test_bank_row_moves_toward_its_new_feature_and_stays_unit_length():
    torch.manual_seed(0)
    bank = MemoryBank(10, 8, momentum=0.5)
    before = bank.memory.clone()
    f = F.normalize(torch.randn(2, 8), dim=1)
    bank.update(torch.tensor([3, 7]), f)
    for row, feature in zip([3, 7], f):
        assert (bank.memory[row] @ feature) > (before[row] @ feature)
        expected = F.normalize(0.5 * before[row] + 0.5 * feature, dim=0)
        assert torch.allclose(bank.memory[row], expected, atol=1e-6)
    assert torch.allclose(bank.memory.norm(dim=1), torch.ones(10), atol=1e-6)
    untouched = [i for i in range(10) if i not in (3, 7)]
    assert torch.equal(bank.memory[untouched], before[untouched])


def test_nce_loss_equals_the_papers_formula_computed_directly():
    torch.manual_seed(0)
    n, m = 50, 6
    positive, noise, log_z = torch.randn(4) * 3, torch.randn(4, m) * 3, torch.tensor(2.5)
    p_n = 1 / n
    p_pos = positive.exp() / log_z.exp()
    p_noise = noise.exp() / log_z.exp()
    h_pos = p_pos / (p_pos + m * p_n)
    h_noise = p_noise / (p_noise + m * p_n)
    direct = -(h_pos.log() + (1 - h_noise).log().sum(dim=1)).mean()
    assert torch.allclose(nce_loss(positive, noise, log_z, n), direct, atol=1e-5)


def test_log_z_is_the_monte_carlo_estimate():
    logits = torch.randn(3, 5)
    assert torch.allclose(estimate_log_z(logits, 1000), torch.log(1000 * logits.exp().mean()), atol=1e-5)


def test_knn_vote_matches_a_brute_force_count():
    torch.manual_seed(0)
    train = F.normalize(torch.randn(40, 5), dim=1)
    labels = torch.randint(0, 3, (40,))
    test = F.normalize(torch.randn(9, 5), dim=1)
    k, t = 7, 0.1
    expected = []
    for q in test:
        sims = [(float(q @ x), int(y)) for x, y in zip(train, labels)]
        votes = [0.0] * 3
        for s, y in sorted(sims, reverse=True)[:k]:
            votes[y] += math.exp(s / t)
        expected.append(max(range(3), key=votes.__getitem__))
    assert knn_predict(train, labels, test, 3, k=k, temperature=t, chunk=4).tolist() == expected


def tiny_instdisc(num_images=20, augment=None):
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 12))
    backbone.num_features = 12
    augment = augment or InstanceAugment(16, (0.5,) * 3, (0.25,) * 3)
    return InstDisc(backbone, augment, num_images, dim=8, negatives=5)


def test_step_updates_the_batch_rows_only_and_no_gradient_reaches_the_bank():
    model = tiny_instdisc()
    before = model.memory_bank.memory.clone()
    index = torch.tensor([0, 4, 9])
    loss = model(torch.randint(0, 255, (3, 1, 16, 16), dtype=torch.uint8), index, START).loss
    loss.backward()
    changed = (model.memory_bank.memory != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [0, 4, 9]
    assert model.backbone[1].weight.grad.abs().sum() > 0 and not model.memory_bank.memory.requires_grad
    assert torch.isfinite(model.log_z) and math.isfinite(loss.item())


def test_z_is_estimated_once_then_held():
    model = tiny_instdisc()
    images = torch.randint(0, 255, (4, 1, 16, 16), dtype=torch.uint8)
    model(images, torch.arange(4), START)
    first = model.log_z.clone()
    model(images, torch.arange(4, 8), START)
    assert torch.equal(model.log_z, first)
    model.load_state_dict(tiny_instdisc().state_dict())  # a checkpoint from before step 1: Z still unknown
    model(images, torch.arange(4), START)
    assert torch.isfinite(model.log_z)


def prefilled_bank(rank: int = 0, world: int = 1, port: int = 0) -> torch.Tensor:
    """(bank, expected): a tiny InstDisc's bank (bank_init="features") over 20 images after the engine's
    prefill, as rank ``rank`` of ``world`` processes holds it, and each image's feature computed directly."""
    import os

    from torch.utils.data import TensorDataset

    from train.config import Config
    from train.data import Data
    from train.engine import prefill

    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    model = tiny_instdisc(num_images=20)
    model.bank_init = "features"
    images = torch.randint(0, 255, (20, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(20, dtype=torch.long)
    data = Data(TensorDataset(images, labels), TensorDataset(images[:4], labels[:4]), labels, labels[:4],
                (0.5,) * 3, (0.25,) * 3, 1.0)
    preprocess = Preprocess(16, data.mean, data.std)
    prefill(model, data, preprocess, Config(batch_size=8), torch.device("cpu"), rank=rank, world=world)
    with torch.no_grad():
        expected = model.embed(preprocess(images))
    if world > 1:
        torch.distributed.destroy_process_group()
    return model.memory_bank.memory, expected


def test_prefill_fills_every_bank_row_with_its_images_feature():
    """bank_init="features": v_i = f_i(theta_0) of the clean image i, for all N rows, before any step."""
    bank, expected = prefilled_bank()
    assert torch.allclose(bank, expected, atol=1e-6)  # all 20 rows, over 3 batches


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefill_on_rank(rank, world, port, results):
    results[rank] = prefilled_bank(rank, world, port)[0]


def test_prefill_gives_every_rank_the_whole_bank():
    """Two processes (gloo) each embed half of the images; both must end with all 20 rows."""
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_prefill_on_rank, args=(2, free_port(), results), nprocs=2)
        banks = [results[0], results[1]]
    _, expected = prefilled_bank()
    for bank in banks:
        assert torch.allclose(bank, expected, atol=1e-6)


def test_paper_bank_start_is_random_and_unknown_starts_are_refused():
    model = tiny_instdisc()
    before = model.memory_bank.memory.clone()
    assert not model.wants_prefill  # the engine spends no pass over the data on it
    model.prefill([(torch.zeros(2, 3, 16, 16), torch.tensor([0, 1]))])
    assert torch.equal(model.memory_bank.memory, before)
    model.bank_init = "features"
    assert model.wants_prefill
    with pytest.raises(ValueError, match="bank_init"):
        InstDisc(torch.nn.Identity(), torch.nn.Identity(), 4, bank_init="zeros")


STEP_IMAGES = torch.randint(0, 255, (8, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
STEP_INDEX = torch.tensor([3, 17, 5, 11, 0, 8, 19, 14])  # rank 0 holds the first four, rank 1 the rest


def deterministic_instdisc():
    """A tiny InstDisc whose view is the evaluation transform: each image's feature is known in advance."""
    return tiny_instdisc(augment=Preprocess(16, (0.5,) * 3, (0.25,) * 3))


def _step_on_rank(rank, port, results):
    import os
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = deterministic_instdisc()
        mine = slice(4 * rank, 4 * rank + 4)
        model(STEP_IMAGES[mine], STEP_INDEX[mine], START)
        results[rank] = model.memory_bank.memory
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_keep_one_memory_bank():
    """Each of 2 processes (gloo) steps on its half of a batch; both banks must then hold, in the row of
    every image of either half, normalise(0.5 v_i + 0.5 f_i) of that very image, and nothing else changed."""
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_step_on_rank, args=(free_port(), results), nprocs=2)
        banks = [results[0], results[1]]
    model = deterministic_instdisc()
    before = model.memory_bank.memory.clone()
    with torch.no_grad():
        features = model.embed(model.augment(STEP_IMAGES))
    expected = before.clone()
    expected[STEP_INDEX] = F.normalize(0.5 * before[STEP_INDEX] + 0.5 * features, dim=1)
    for bank in banks:
        assert torch.allclose(bank, expected, atol=1e-6)


def test_nce_logits_are_fp32_under_autocast(monkeypatch):
    """Under bf16 autocast the loss is the fp32 NCE of the step's own features: a bf16 noise matmul
    (what autocast makes of f @ V.T, however f and V are cast) moves the logits by a few 1e-2 at T = 0.07."""
    model = tiny_instdisc()
    bank, captured = model.memory_bank.memory.clone(), {}
    embed = model.embed
    monkeypatch.setattr(model, "embed", lambda images: captured.setdefault("f", embed(images)))
    monkeypatch.setattr(model.memory_bank, "sample", lambda count: torch.arange(5, 10))
    index = torch.tensor([0, 4, 9])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(torch.randint(0, 255, (3, 1, 16, 16), dtype=torch.uint8), index, START).loss
    f = captured["f"].float()
    positive, noise = (bank[index] * f).sum(dim=1) / 0.07, f @ bank[5:10].T / 0.07
    log_z = estimate_log_z(torch.cat([positive[:, None], noise], 1), 20)
    assert torch.allclose(model.log_z, log_z, atol=1e-6)
    assert torch.allclose(loss, nce_loss(positive, noise, log_z, 20), rtol=1e-6)
    rounded = (f.bfloat16() @ bank[5:10].T.bfloat16()).float() / 0.07
    assert not torch.allclose(nce_loss(positive, rounded, log_z, 20), loss, rtol=1e-6)  # the test can tell, at its rtol


def test_paper_preset_is_lemniscates_imagenet_recipe():
    paper = PRESETS["paper"]
    assert (paper.optimizer, paper.lr, paper.momentum, paper.weight_decay) == ("sgd", 0.03, 0.9, 1e-4)
    assert (paper.batch_size, paper.epochs, paper.milestones, paper.schedule) == (256, 200, (120, 160), "step")
