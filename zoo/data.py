"""Fashion-MNIST, the offline benchmark and demo gallery, shared by `train` and `app`.

Read with torchvision; on Debian the package ``dataset-fashion-mnist`` seeds torchvision's
raw folder so nothing is downloaded, elsewhere torchvision downloads it on first use.
"""
from __future__ import annotations

import functools
import gzip
import os
import shutil
import tempfile
from pathlib import Path

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


def data_home() -> Path:
    return Path(os.environ.get("ZOO_DATA", Path.home() / ".cache" / "contrastive-zoo-data")).expanduser()


def _seed_from_debian(raw: Path) -> None:
    """Unpack Debian's gzipped IDX files where torchvision looks for them.

    Each file is unpacked into a partial file of this call's own and renamed over the target, so that
    processes seeding at once (torchrun's ranks, two benchmarks) never write into one another's file and
    a reader never sees a half-written one."""
    raw.mkdir(parents=True, exist_ok=True)
    for gz in DEBIAN_FMNIST.glob("*-ubyte.gz"):
        target = raw / gz.stem
        if target.exists():
            continue
        partial = tempfile.NamedTemporaryFile(dir=raw, prefix=f"{target.name}.", suffix=".partial", delete=False)
        try:
            with partial as dst, gzip.open(gz) as src:
                shutil.copyfileobj(src, dst)
                os.fchmod(dst.fileno(), 0o644)  # a public dataset, readable by every user: not the temp file's 0600
            os.replace(partial.name, target)
        except BaseException:
            Path(partial.name).unlink(missing_ok=True)
            raise


@functools.lru_cache(maxsize=2)
def fashion_mnist(train: bool):
    """torchvision's FashionMNIST split (uint8 ``data`` [N, 28, 28], ``targets``, ``classes``)."""
    from torchvision.datasets import FashionMNIST

    root = data_home()
    if DEBIAN_FMNIST.is_dir():
        _seed_from_debian(root / "FashionMNIST" / "raw")
    try:
        return FashionMNIST(root, train=train, download=False)
    except RuntimeError:
        try:
            return FashionMNIST(root, train=train, download=True)
        except Exception as error:
            raise FileNotFoundError(
                f"Fashion-MNIST is not in {root} and could not be downloaded ({error}). Fix: install Debian's "
                "package (`apt-get install dataset-fashion-mnist`, or `make data`) or run once with network access."
            ) from None
