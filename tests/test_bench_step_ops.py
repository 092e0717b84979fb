"""bench.step_ops: every method is counted, and our training steps have no host sync."""
from bench import step_ops as bench
from bench import vs_lightly


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
