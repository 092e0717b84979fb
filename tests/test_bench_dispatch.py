"""bench.dispatch: what counts as an operator, a kernel launch and a host sync."""
import torch

from bench.dispatch import crosses_to_wait, dispatched, host_syncs


def test_views_and_allocations_are_not_kernels_and_a_read_back_is_a_sync():
    x = torch.ones(4, 3)
    counted = dispatched(lambda: x.view(12).add(1).t().mul(2).sum().item())
    assert counted.kernels == 4 and counted.total == 6  # add, mul, sum, the read back; view and t launch nothing
    assert counted.syncs == 1 and counted.synced == {"_local_scalar_dense": 1}


def test_a_composite_operator_counts_as_what_it_becomes_not_twice():
    x = torch.rand(4, 3, requires_grad=True)
    counted = dispatched(lambda: torch.nn.functional.linear(x, torch.ones(2, 3)).sum().backward())
    assert "linear" not in counted.ops and counted.ops["mm"] >= 1  # linear is composite: its mm is what runs


def test_the_backward_pass_and_the_optimiser_are_counted():
    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, foreach=True)
    x = torch.ones(4, 3)

    def step():
        layer(x).sum().backward()
        optimizer.step()

    counted = dispatched(step)
    assert counted.ops["addmm"] == 1 and counted.ops["mm"] >= 1  # forward, then the weight's gradient
    assert counted.ops["_foreach_add_"] == 1


def test_a_boolean_mask_index_is_a_sync_and_an_integer_index_is_not():
    x, mask = torch.rand(8), torch.rand(8) > 0.5
    assert host_syncs(lambda: x[mask]) == {"index"}
    assert host_syncs(lambda: x.masked_fill(mask, 0)) == set()
    assert host_syncs(lambda: x[torch.arange(4)]) == set()


def test_copies_the_host_waits_for():
    meta, host = torch.ones(2, device="meta"), torch.ones(2)
    assert crosses_to_wait("_to_copy", (meta,), {"device": torch.device("cpu")})  # device to host
    assert crosses_to_wait("copy_", (host, meta), {})
    assert crosses_to_wait("_to_copy", (host,), {"device": torch.device("cuda")})  # from pageable memory
    assert not crosses_to_wait("_to_copy", (host,), {"device": torch.device("cpu")})  # on the host
    assert not crosses_to_wait("copy_", (meta, host), {})  # onto a device that is no GPU
