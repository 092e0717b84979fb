"""Seeding torchvision's folder from Debian's Fashion-MNIST package: safe when processes seed at once."""
import gzip
import shutil

import pytest

import zoo.data

FILES = {"train-images-idx3-ubyte": b"\x00\x00\x08\x03" + bytes(range(256)) * 40, "t10k-labels-idx1-ubyte": b"labels"}


@pytest.fixture
def debian(tmp_path, monkeypatch):
    package = tmp_path / "debian"
    package.mkdir()
    for name, data in FILES.items():
        with gzip.open(package / f"{name}.gz", "wb") as out:
            out.write(data)
    monkeypatch.setattr(zoo.data, "DEBIAN_FMNIST", package)
    return package


def test_a_process_that_seeds_while_another_is_unpacking_leaves_whole_files_and_no_error(debian, tmp_path,
                                                                                         monkeypatch):
    raw, copy, interrupted = tmp_path / "raw", shutil.copyfileobj, []

    def copy_while_another_process_seeds(src, dst):
        if not interrupted:  # the other process starts and finishes while this one is half-way through a file
            interrupted.append(True)
            dst.write(src.read(100))
            zoo.data._seed_from_debian(raw)
        copy(src, dst)

    monkeypatch.setattr(zoo.data.shutil, "copyfileobj", copy_while_another_process_seeds)
    zoo.data._seed_from_debian(raw)
    assert interrupted
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == FILES  # whole files, no partial left behind
    assert {p.stat().st_mode & 0o777 for p in raw.iterdir()} == {0o644}  # readable by the other users


def test_a_failed_unpack_leaves_no_partial_and_the_next_call_unpacks_it(debian, tmp_path):
    raw = tmp_path / "raw"
    (debian / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(gzip.BadGzipFile):
        zoo.data._seed_from_debian(raw)
    assert all(not p.name.endswith(".partial") for p in raw.iterdir())
    with gzip.open(debian / "t10k-labels-idx1-ubyte.gz", "wb") as out:
        out.write(FILES["t10k-labels-idx1-ubyte"])
    zoo.data._seed_from_debian(raw)
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == FILES
