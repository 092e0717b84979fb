"""Stage 4 across processes (two over gloo on this CPU): MoCo v3's queries against every process's keys train as
one process on the whole batch, and DINO's centre moves by the global batch's mean on every process."""
import torch

from conftest import gloo_group, two_processes
from train import distributed
from train.blocks import losses
from train.methods import dino

BATCH, DIM, TEMPERATURE = 4, 6, 0.2


def networks() -> tuple[torch.nn.Linear, torch.nn.Linear]:
    torch.manual_seed(0)  # the same initial weights in every process
    return torch.nn.Linear(5, DIM), torch.nn.Linear(5, DIM)  # the query encoder, the key encoder


def views() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 2, 2 * BATCH, 5)  # [view, rank, image, input]: rank r holds its own images


def single_process_gradient() -> torch.Tensor:
    """ctr(q1, k2) + ctr(q2, k1) over all 2 * BATCH images in one process."""
    query, key = networks()
    x1, x2 = (v.flatten(0, 1) for v in views())
    with torch.no_grad():
        k1, k2 = key(x1), key(x2)
    loss = losses.in_batch_info_nce(query(x1), k2, 0, TEMPERATURE)[0] + \
        losses.in_batch_info_nce(query(x2), k1, 0, TEMPERATURE)[0]
    loss.backward()
    return query.weight.grad


def _mocov3_rank(rank: int, port: int, results) -> None:
    with gloo_group(rank, port):
        query, key = networks()
        x1, x2 = (v[rank] for v in views())
        with torch.no_grad():  # as MoCoV3.forward: every process's keys, without gradient
            k1, k2 = (distributed.gather_no_grad(key(x)) for x in (x1, x2))
        offset = distributed.rank() * len(x1)
        loss = losses.in_batch_info_nce(query(x1), k2, offset, TEMPERATURE)[0] + \
            losses.in_batch_info_nce(query(x2), k1, offset, TEMPERATURE)[0]
        loss.backward()
        grad = query.weight.grad.clone()
        torch.distributed.all_reduce(grad)  # what DDP does with parameter gradients: their mean
        results[rank] = grad / 2


def test_mocov3_over_two_processes_trains_as_one_process_on_the_whole_batch():
    results = two_processes(_mocov3_rank)
    expected = single_process_gradient()
    for rank in (0, 1):
        assert torch.allclose(results[rank], expected, atol=1e-6)


def _dino_rank(rank: int, port: int, results) -> None:
    with gloo_group(rank, port):
        torch.manual_seed(2)
        teacher = torch.randn(2, 6, 256)  # [rank, global crops x batch, K]
        method = dino.DINO.__new__(dino.DINO)  # only the centre's state: no network needed
        torch.nn.Module.__init__(method)
        method.register_buffer("center", torch.ones(1, 256))
        method.center_momentum = 0.9
        method.update_center(teacher[rank])
        results[rank] = method.center.clone()


def test_dino_centre_is_the_same_on_every_process_and_follows_the_global_mean():
    results = two_processes(_dino_rank)
    torch.manual_seed(2)
    teacher = torch.randn(2, 6, 256)
    expected = 0.9 * torch.ones(1, 256) + 0.1 * teacher.flatten(0, 1).mean(dim=0, keepdim=True)
    for rank in (0, 1):
        assert torch.allclose(results[rank], expected, atol=1e-6)
