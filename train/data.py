"""Training data as uint8 image tensors with their indices (InstDisc needs to know which image is which).

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` where it is installed, else
from torchvision's download, and stays in memory as whole images (the method's views crop
them on the device). Any other folder of images is read with ImageFolder, scanned once: the
training loader decodes each file on a CPU worker and cuts every crop the method asks for
from the full-resolution image; evaluation (kNN, prefill) sees the resized centre square.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

import zoo.data

from .augment import CropOnCPU, Crop

FMNIST_STATS = dict(mean=(0.2860,) * 3, std=(0.3530,) * 3)  # training set, grey replicated to RGB


class Indexed(Dataset):
    """(image, index) pairs of an (image, label) dataset: the index names the image's memory-bank row."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        """One (image, index); given a list of indices (in-memory images), the batch (images [B, ...], indices [B])."""
        return self.dataset[index][0], (torch.as_tensor(index) if isinstance(index, list) else index)


def in_memory(dataset: Dataset) -> bool:
    """Images held as one tensor (a TensorDataset, or a Subset of one): a whole batch is one indexing op."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return isinstance(dataset, TensorDataset)


class Mapped(Dataset):
    """(transform(image), label) of a dataset of (PIL image, label): one folder scan, several transforms."""

    def __init__(self, dataset: Dataset, transform):
        self.dataset, self.transform = dataset, transform

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        image, label = self.dataset[index]
        return self.transform(image), label


@dataclass
class Data:
    """A training split and a test split of (uint8 image [C, H, W], label), and their statistics."""

    train: Dataset
    test: Dataset
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple
    std: tuple
    crop_pct: float  # of the evaluation transform: small images are used whole
    train_files: Dataset | None = None  # image folders: the training split as decoded PIL images

    def training_crops(self, crops: list[Crop]) -> Dataset:
        """The training image files, each decoded by a CPU worker and cut into ``crops`` from the full
        image: a list of uint8 tensors per image, one per crop."""
        if self.train_files is None:
            raise ValueError("in-memory images are cropped on the device by the method's views, not here")
        return Mapped(self.train_files, CropOnCPU(crops))


def random_subset(size: int, count: int, seed: int = 0) -> list[int]:
    """``count`` of ``range(size)``, drawn by ``seed``, in order: the same images on every call and rank.
    Folders are sorted by class, so the first N would hold only a few classes."""
    if not count or count >= size:
        return list(range(size))
    return sorted(torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:count].tolist())


def fashion_mnist(train: bool) -> TensorDataset:
    split = zoo.data.fashion_mnist(train)
    return TensorDataset(split.data.unsqueeze(1), split.targets)


def cifar10(train: bool) -> TensorDataset:
    """CIFAR-10 through torchvision, held in memory as uint8 [N, 3, 32, 32] like Fashion-MNIST. It is
    downloaded to $CIFAR10_ROOT (default ~/.cache/contrastive-zoo-data/cifar10) where the network allows."""
    import os

    from torchvision import datasets

    root = Path(os.environ.get("CIFAR10_ROOT", Path.home() / ".cache" / "contrastive-zoo-data" / "cifar10"))
    try:
        split = datasets.CIFAR10(root, train=train, download=True)
    except Exception as error:  # offline and absent
        raise FileNotFoundError(f"CIFAR-10 is not in {root} and could not be downloaded ({error}). Fix: connect "
                                "to the network once, or set CIFAR10_ROOT to a folder holding cifar-10-batches-py.")
    return TensorDataset(torch.from_numpy(split.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(split.targets))


def image_folder(path: Path):
    from torchvision import datasets

    return datasets.ImageFolder(path)


def evaluation_transform(size: int):
    """The ``size`` x ``size`` centre square as a uint8 tensor; Preprocess takes the final crop on device."""
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.PILToTensor()])


def labels(dataset: Dataset) -> torch.Tensor:
    """The labels of a (image, label) dataset, through subsets and transforms, without reading an image."""
    if isinstance(dataset, Subset):
        return labels(dataset.dataset)[dataset.indices]
    if isinstance(dataset, Mapped):
        return labels(dataset.dataset)
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1]
    return torch.as_tensor(dataset.targets)


def load(name: str, size: int, subset: int = 0, seed: int = 0) -> Data:
    """``fashion-mnist``, ``cifar10`` or a folder with ``train/`` and ``val/`` ImageFolders (e.g. ImageNet).

    ``subset`` keeps a seeded random N training and N // 4 test images, for quick runs.
    """
    files = None
    if name == "fashion-mnist":
        train, test, stats, crop_pct = fashion_mnist(True), fashion_mnist(False), FMNIST_STATS, 1.0
    elif name == "cifar10":
        train, test, stats, crop_pct = cifar10(True), cifar10(False), zoo.architectures.CIFAR10_STATS, 1.0
    else:
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
        root = Path(name).expanduser()
        if not (root / "train").is_dir() or not (root / "val").is_dir():
            raise FileNotFoundError(f"{root} needs train/ and val/ folders of class sub-folders (ImageFolder layout)")
        crop_pct = 0.875
        evaluation = evaluation_transform(round(size / crop_pct))
        files, test = image_folder(root / "train"), Mapped(image_folder(root / "val"), evaluation)
        train = Mapped(files, evaluation)
        stats = dict(mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
    if subset:
        kept = random_subset(len(train), subset, seed)
        train, test = Subset(train, kept), Subset(test, random_subset(len(test), max(subset // 4, 1), seed))
        files = Subset(files, kept) if files is not None else None
    return Data(train, test, labels(train), labels(test), tuple(stats["mean"]), tuple(stats["std"]), crop_pct,
                files)


RAW = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def fed_stats(stats: dict, normalize: bool) -> dict:
    """The mean and std a recipe feeds its network (``Config.normalize``): the data's own, or those of RGB in
    [0, 1] (mean 0, std 1) as SimCLR's TensorFlow code feeds it."""
    return stats if normalize else RAW


def as_fed(data: Data, normalize: bool) -> Data:
    """The data with the statistics its recipe feeds (:func:`fed_stats`): the views, the kNN monitor and the
    export's preprocessing all read them from here."""
    return replace(data, **fed_stats(dict(mean=data.mean, std=data.std), normalize))
