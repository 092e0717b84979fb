"""A training recipe: every number a preset sets, in one dataclass."""
from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Config:
    arch: str = "resnet18"  # any timm architecture
    model_args: dict = field(default_factory=dict)  # keyword arguments of timm.create_model, kept in config.json
    dataset: str = "fashion-mnist"  # or a folder with train/ and val/ ImageFolders
    image_size: int = 32
    subset: int = 0  # train on the first N images only (0: all)
    epochs: int = 10
    batch_size: int = 256  # global: split across torchrun processes
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 5e-4
    exclude_norm_bias: bool = False  # no weight decay on biases and norm layers
    schedule: str = "step"  # "step": x0.1 at each milestone epoch; "cosine": to 0 after warm-up
    milestones: tuple = ()
    warmup_epochs: int = 0
    clip_grad: float = 0.0  # max gradient norm (0: no clipping)
    method: dict = field(default_factory=dict)  # the method's own hyper-parameters
    knn_subset: int = 0  # kNN monitor on the first N train / N // 4 test images each epoch (0: all)
    seed: int = 0
    workers: int = 0  # DataLoader processes (in-memory data needs none)

    def override(self, **changes) -> "Config":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
