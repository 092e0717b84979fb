import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach the network

import pytest
import timm
import torch

import zoo.checkpoint

FMNIST_DATA = dict(input_size=(3, 32, 32), mean=(0.286,) * 3, std=(0.353,) * 3, crop_pct=1.0,
                   interpolation="bilinear")


@pytest.fixture
def zoo_home(tmp_path, monkeypatch):
    home = tmp_path / "zoo"
    monkeypatch.setenv("ZOO_HOME", str(home))
    return home


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A test's folder, with $ZOO_HOME inside it."""
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo"))
    return tmp_path


@pytest.fixture
def fashion_mnist():
    """The Fashion-MNIST test split, or a skip where it is not on this machine (`make data` installs it)."""
    from zoo.data import fashion_mnist as split

    try:
        return split(train=False)
    except FileNotFoundError as error:
        pytest.skip(f"Fashion-MNIST is not on this machine: {error}")


def save_backbone(folder, arch="resnet18", seed=0):
    torch.manual_seed(seed)
    model = timm.create_model(arch, num_classes=0).eval()
    zoo.checkpoint.save(model, folder, data_config=FMNIST_DATA, card="# test model\n")
    return model


def two_processes(target) -> dict:
    """Run ``target(rank, port, results)`` in 2 spawned processes (a gloo group on a free loopback port)
    and return what they put in ``results``, a dict shared with this process."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(target, args=(port, results), nprocs=2)
        return dict(results)
