"""A training recipe: every number a preset sets, in one dataclass."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

CHOICES = dict(optimizer=("sgd", "lars", "adamw"), schedule=("step", "cosine", "cosine-epoch"), lr_scaling=("none", "linear", "sqrt"),
               lars_trust=("update", "larc"))


@dataclass(frozen=True)
class Config:
    arch: str = "resnet18"  # any timm architecture
    model_args: dict = field(default_factory=dict)  # keyword arguments of timm.create_model, kept in config.json
    dataset: str = "fashion-mnist"  # "cifar10", or a folder with train/ and val/ ImageFolders
    image_size: int = 32
    subset: int = 0  # train on a seeded random N images only (0: all)
    epochs: int = 10
    batch_size: int = 256  # global: split across torchrun processes
    optimizer: str = "sgd"  # "sgd" (momentum), "lars" (SimCLR, BYOL, SwAV), "adamw" (MoCo v3 and DINO ViTs)
    lr: float = 0.03  # the base lr, before lr_scaling
    lr_scaling: str = "none"  # "linear": lr x batch_size / 256; "sqrt": lr x sqrt(batch_size) (SimCLR v2)
    lr_end: float = 0.0  # where the cosine schedule ends (DINO: 1e-6)
    momentum: float = 0.9  # SGD and LARS
    betas: tuple = (0.9, 0.999)  # AdamW
    lars_eta: float = 0.001  # LARS trust coefficient
    lars_classic_momentum: bool = False  # LARS: lr inside the momentum buffer (SimCLR's TensorFlow LARS)
    lars_trust: str = "update"  # LARS's trust ratio: eta ||w|| / ||g + wd w|| ("update": SimCLR, BYOL), or apex's
    # LARC, eta ||w|| / (||g|| + wd ||w||) ("larc": SwAV)
    weight_decay: float = 5e-4
    weight_decay_end: float | None = None  # cosine from weight_decay to this over the run (DINO: 0.04 -> 0.4)
    exclude_norm_bias: bool = False  # biases and norm layers: no weight decay, no LARS trust ratio
    schedule: str = "step"  # "step": x0.1 at each milestone epoch; "cosine": to lr_end after warm-up, per step;
    # "cosine-epoch": the same cosine read at each epoch's start and held through the epoch (MoCo v2's code)
    milestones: tuple = ()
    lr_factors: tuple = ()  # lr = base x lr_factors[i] from milestone i on (default x0.1 at each milestone)
    warmup_epochs: float = 0  # may be a fraction: a short CPU run warms up over part of an epoch
    warmup_start: float = 0.0  # the lr the warm-up rises from, linearly to the base lr (SwAV: 0.3); 0: from 0
    clip_grad: float = 0.0  # max gradient norm (0: no clipping)
    method: dict = field(default_factory=dict)  # the method's own hyper-parameters
    normalize: bool = True  # False: views and export take RGB in [0, 1], unnormalised (SimCLR's TensorFlow code)
    knn_subset: int = 0  # kNN monitor on a seeded random N train / N // 4 test images each epoch (0: all)
    log_every: int = 50  # steps between bringing the loss and the method's logs to the host
    seed: int = 0
    workers: int = 0  # DataLoader processes (in-memory data needs none)

    def __post_init__(self):
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"Config.{name} is {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"Config.{name} must be at least 1, not {getattr(self, name)}")

    def override(self, **changes) -> "Config":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
