"""bench.step_ops: what counts as a kernel launch and a host sync, and our training steps have no host sync."""
import torch

from bench import step_ops as bench
from bench import vs_lightly


def test_views_and_allocations_are_not_kernels_and_a_read_back_is_a_sync():
    x = torch.ones(4, 3)
    counted = bench.dispatched(lambda: x.view(12).add(1).t().mul(2).sum().item())
    assert counted.kernels == 4 and counted.total == 6  # add, mul, sum, the read back; view and t launch nothing
    assert counted.syncs == 1 and counted.ops["_local_scalar_dense"] == 1


def test_the_backward_pass_and_the_optimiser_are_counted():
    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, foreach=True)
    x = torch.ones(4, 3)

    def step():
        layer(x).sum().backward()
        optimizer.step()

    counted = bench.dispatched(step)
    assert counted.ops["addmm"] == 1 and counted.ops["mm"] >= 1  # forward, then the weight's gradient
    assert counted.ops["_foreach_add_"] == 1


def test_a_copy_to_the_host_from_a_device_is_a_sync_and_one_on_the_host_is_not():
    meta = torch.ones(2, device="meta")
    assert bench.to_host("_to_copy", (meta,), {"device": torch.device("cpu")})
    assert bench.to_host("copy_", (torch.ones(2), meta), {})
    assert not bench.to_host("_to_copy", (torch.ones(2),), {"device": torch.device("cpu")})
    assert not bench.to_host("copy_", (meta, torch.ones(2)), {})


def test_every_method_is_counted_and_our_steps_never_wait_for_the_device(fashion_mnist, monkeypatch):
    preset = vs_lightly.preset
    monkeypatch.setattr(vs_lightly, "preset", lambda name: preset(name).override(batch_size=32))
    body = bench.main(["--no-write"])
    rows = [line.split(" | ") for line in body.splitlines() if line.startswith("| ") and "method" not in line]
    assert [row[0][2:] for row in rows] == list(vs_lightly.METHOD_NAMES.values())
    for row in rows:
        (total, views_total), (kernels, views_kernels) = (cell.rstrip(")").split(" (") for cell in row[1:3])
        assert int(total) > 2 * int(views_total) > 0 and int(kernels) > 2 * int(views_kernels) > 0  # encoders first
        assert int(kernels) < int(total)
        assert row[3] == "0"  # our step never waits for the device
