import contextlib
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


def step_with_target_apart(method, cfg, progress, online, images, lr: float = 100.0):
    """One engine step of ``method`` at ``lr`` (LARS at 100 moves each weight by about a tenth: a visible move),
    after moving its momentum encoder away from the ``online`` modules it copies, as after some training.
    Returns the momentum encoder's and the online modules' parameters before the step."""
    from train import optim
    from train.engine import Schedules, train_step

    cfg = cfg.override(lr=lr, lr_scaling="none")
    plan = Schedules.of(cfg, steps_per_epoch=4)
    optimizer = optim.build(method, cfg, plan.base_lr)
    with torch.no_grad():
        for p in method.momentum_encoder.parameters():
            p.add_(torch.randn_like(p))
    target = [p.detach().clone() for p in method.momentum_encoder.parameters()]
    before = [p.detach().clone() for m in online for p in m.parameters()]
    train_step(method, method, optimizer, plan, images, torch.arange(len(images)), progress, cfg, torch.device("cpu"))
    return target, before


@contextlib.contextmanager
def gloo_group(rank: int, port: int, world: int = 2):
    """Inside a process of :func:`two_processes`: its gloo process group, destroyed on the way out."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()
