"""bench.views: kornia's twin of our views carries our numbers, and the table has a row per method."""
import pytest
import torch

from bench import views as bench
from train.methods import METHODS


@pytest.mark.parametrize("name", ["instdisc", "mocov2"])
def test_kornias_twin_has_our_numbers_and_simclr_has_none(name):
    K = pytest.importorskip("kornia.augmentation")
    cfg = METHODS[name].PRESETS["fmnist"]
    views = METHODS[name].build(cfg, 16, (0.5,) * 3, (0.25,) * 3).augment
    twin = bench.kornia_twin(views)
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    copies = 1 if name == "instdisc" else 2  # InstDisc contrasts one view with its memory bank entry
    assert twin(images).shape == views(images).shape == (4 * copies, 3, 32, 32)
    ours = {type(op).__name__: op for op in getattr(views, "augment", views).ops}
    theirs = {type(op).__name__: op for op in twin.ops}
    assert set(ours) == set(theirs)
    jitter = theirs["ColorJitter"]
    assert isinstance(jitter, K.ColorJitter) and jitter.p == ours["ColorJitter"].p
    for simclr in ("simclr", "simclrv2"):  # the authors' TensorFlow jitter: kornia has no twin
        method = METHODS[simclr].build(METHODS[simclr].PRESETS["fmnist"], 16, (0.5,) * 3, (0.25,) * 3)
        assert bench.kornia_twin(method.augment) is None


def test_the_table_has_a_row_per_method(fashion_mnist, monkeypatch):
    monkeypatch.setattr(bench, "BATCH", 16)
    body = bench.main(["--repeats", "1", "--no-write"])
    rows = [line for line in body.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [row.split(" | ")[0][2:] for row in rows] == list(bench.METHODS_MEASURED)
    assert all(row.split(" | ")[8] == "0" for row in rows)  # our views: no host sync
    cells = rows[0].split(" | ")
    assert 0 < int(cells[6]) < int(cells[4])  # our kernels, fewer than our operators
