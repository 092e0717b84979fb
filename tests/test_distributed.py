"""The two gathers: `gather_with_grad` trains as one process on the whole batch; `gather_no_grad` never
lets a gradient through. Two processes talk over gloo on this CPU."""
import os

import torch
import torch.nn.functional as F

from conftest import two_processes
from train import distributed
from train.blocks import losses

BATCH, DIM, TEMPERATURE = 4, 6, 0.5


def encoder() -> torch.nn.Linear:
    torch.manual_seed(0)  # the same initial weights in every process
    return torch.nn.Linear(5, DIM)


def views() -> torch.Tensor:
    """Two views of 2 * BATCH images, as one batch per process: rank r holds images r*BATCH..(r+1)*BATCH-1,
    view 1 then view 2 ([2 * BATCH, 5] per rank)."""
    torch.manual_seed(1)
    return torch.randn(2, 2, BATCH, 5)  # [rank, view, image, input]


def nt_xent(anchors: torch.Tensor, keys: torch.Tensor, positives: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """SimCLR's NT-Xent: each anchor against every key but itself, its other view the label."""
    logits = F.normalize(anchors, dim=1) @ F.normalize(keys, dim=1).T / TEMPERATURE
    logits = logits.masked_fill(F.one_hot(own, len(keys)).bool(), float("-inf"))
    return F.cross_entropy(logits, positives)


def layout(batches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """For keys laid out as the ranks' batches one after another (each: view 1 of its images, then view 2):
    each row's own index and its other view's index."""
    own, positive, start = [], [], 0
    for batch in batches:
        half = len(batch) // 2
        rows = torch.arange(len(batch))
        own.append(start + rows)
        positive.append(start + (rows + half) % len(batch))
        start += len(batch)
    return torch.cat(own), torch.cat(positive)


def single_process_gradient() -> torch.Tensor:
    """The gradient of the loss over all 2 * BATCH images' views in one process."""
    model, data = encoder(), views()
    batches = [data[r].flatten(0, 1) for r in range(2)]
    z = model(torch.cat(batches))
    own, positive = layout(batches)
    nt_xent(z, z, positive, own).backward()
    return model.weight.grad


def _rank(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model, data = encoder(), views()
        batches = [data[r].flatten(0, 1) for r in range(2)]
        z = model(batches[rank])
        keys = distributed.gather_with_grad(z)
        # SimCLR's loss as the method computes it: this rank's anchors against every rank's keys
        loss, _ = losses.nt_xent(F.normalize(z, dim=1), F.normalize(keys, dim=1), rank * len(z), TEMPERATURE)
        loss.backward()
        grad = model.weight.grad.clone()
        torch.distributed.all_reduce(grad)  # what DDP does with parameter gradients: their mean
        results[rank] = dict(grad=grad / 2, keys=keys.detach(), all_z=model(torch.cat(batches)).detach(),
                             no_grad=distributed.gather_no_grad(z).requires_grad)
    finally:
        torch.distributed.destroy_process_group()


def test_gather_with_grad_over_two_processes_equals_one_process_on_the_whole_batch():
    results = two_processes(_rank)
    expected = single_process_gradient()
    for rank in (0, 1):
        assert torch.allclose(results[rank]["keys"], results[rank]["all_z"], atol=1e-6)  # rank order
        assert torch.allclose(results[rank]["grad"], expected, atol=1e-6)
        assert not results[rank]["no_grad"]


def test_gather_no_grad_drops_gradients_even_in_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    assert not distributed.gather_no_grad(x).requires_grad
    assert distributed.gather_with_grad(x).requires_grad
