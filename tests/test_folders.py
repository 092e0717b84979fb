"""Output folders: a user's folder is never replaced, writers take turns, and a kill leaves a whole folder."""
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch

import zoo
from app import bank as banks
from conftest import save_backbone
from zoo import checkpoint

ARCH = "test_resnet"  # a few hundred kB: the processes below stay fast


def tiny_bank(seed=0):
    torch.manual_seed(seed)
    items = [{"source": "folder", "ref": f"{i}.png", "label": None} for i in range(3)]
    meta = {"model": "m", "weights_sha256": "0" * 64, "format": banks.FORMAT, "index": {"kind": "exact"}}
    return banks.Bank(banks.normalise(torch.randn(3, 4)), items, meta)


def processes():
    """A multiprocessing context whose processes fork from one server that imported torch, timm and the zoo
    once: spawn would import them again for every process, and fork would copy this one's threads mid-state."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["timm", "zoo.checkpoint", "app.bank"])
    return context


def users_folder(path):
    """A folder of someone's own: images and a document."""
    (path / "holiday").mkdir(parents=True)
    (path / "holiday" / "beach.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (path / "thesis.docx").write_bytes(b"chapter one")
    return contents(path)


def contents(path):
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def features(folder, x):
    with torch.no_grad():
        return zoo.load(str(folder))(x)


def model(seed):
    torch.manual_seed(seed)
    return timm.create_model(ARCH, num_classes=0).eval()


@pytest.mark.parametrize("write", ["checkpoint", "bank"])
def test_a_users_folder_is_refused_and_left_untouched(tmp_path, write):
    folder = tmp_path / "out"
    before = users_folder(folder)
    with pytest.raises(zoo.ZooError, match=f"{folder} already exists and is not a .*thesis.docx.*choose another"):
        if write == "checkpoint":
            save_backbone(folder, arch=ARCH)
        else:
            banks.save(tiny_bank(), folder)
    assert contents(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_an_existing_checkpoint_is_replaced_and_an_empty_folder_written_into(tmp_path):
    (tmp_path / "empty").mkdir()
    save_backbone(tmp_path / "empty", arch=ARCH, seed=1)
    save_backbone(tmp_path / "empty", arch=ARCH, seed=2)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(features(tmp_path / "empty", x), model(2)(x), atol=1e-5)


def test_an_existing_bank_is_replaced_and_an_empty_folder_written_into(tmp_path):
    (tmp_path / "empty").mkdir()
    banks.save(tiny_bank(1), tmp_path / "empty")
    second = tiny_bank(2)
    banks.save(second, tmp_path / "empty")
    assert torch.equal(safetensors.torch.load_file(tmp_path / "empty" / banks.FEATURES)["features"], second.features)


def save_seeded(folder, seed, start):
    rename = os.rename

    def slow_rename(a, b):  # widens the moments between the steps of a swap, where two writers could meet
        rename(a, b)
        time.sleep(0.05)

    os.rename = slow_rename
    for _ in range(3):
        start.wait(60)  # both writers begin each save together (a writer that died breaks it for the other)
        save_backbone(Path(folder), arch=ARCH, seed=seed)


def test_concurrent_writers_take_turns_and_leave_one_whole_checkpoint(tmp_path):
    context = processes()
    start = context.Barrier(2)
    writers = [context.Process(target=save_seeded, args=(str(tmp_path / "m"), seed, start)) for seed in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert [writer.exitcode for writer in writers] == [0, 0]
    x = torch.randn(2, 3, 32, 32)
    found = features(tmp_path / "m", x)
    assert any(torch.allclose(found, model(seed)(x), atol=1e-5) for seed in (1, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock", "m"]


def killed_while_saving(folder, step):
    """Save seed 2 over ``folder`` and die (SIGKILL: no cleanup runs) at ``step`` of the swap."""
    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if step == "after the exchange":
        exchange = checkpoint._exchange
        checkpoint._exchange = lambda a, b: exchange(a, b) and die()
    else:  # between the two renames of the fallback
        rename = os.rename
        checkpoint._exchange = lambda a, b: False
        os.rename = lambda a, b: die() if Path(b) == Path(folder) else rename(a, b)
    save_backbone(Path(folder), arch=ARCH, seed=2)


@pytest.mark.parametrize("step, survivor", [("after the exchange", 2), ("between the renames", 1)])
def test_a_writer_killed_mid_swap_leaves_a_whole_folder(tmp_path, step, survivor):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    if step == "after the exchange" and not checkpoint._exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this system or filesystem has no atomic exchange of folders")
    folder = tmp_path / "zoo" / "m"
    save_backbone(folder, arch=ARCH, seed=1)
    writer = processes().Process(target=killed_while_saving, args=(str(folder), step))
    writer.start()
    writer.join(120)
    assert writer.exitcode == -signal.SIGKILL
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(features(folder, x), model(survivor)(x), atol=1e-5)  # a reader restores it if need be
    save_backbone(folder, arch=ARCH, seed=3)  # and the next writer clears what the killed one left
    assert sorted(p.name for p in folder.parent.iterdir()) == [".m.lock", "m"]
