"""The optimisers a preset can choose (SGD, LARS, AdamW) over a method's parameter groups.

A method declares its groups with flags (``train.methods.base.group``); here they become
optimiser groups whose lr and weight decay the engine sets before every step from the
precomputed schedules: ``fixed_lr`` groups keep the base lr, ``decay`` False groups get 0.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from .config import CHOICES, Config
from .methods.base import Method, split_norm_bias


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose step is rescaled per parameter by a trust ratio (LARS: You, Gitman &
    Ginsburg 2017, arXiv 1708.03888, the local lr of Algorithm 1), with the trust ratio SimCLR and BYOL use,
    eta ||w|| / ||g + wd w|| (``trust="update"``), or apex's LARC that SwAV uses, eta ||w|| / (||g|| + wd ||w||)
    (``trust="larc"``, clip off, as SwAV's code):

        d = g + wd * w,   d <- eta * ||w|| / ||d|| * d  (if the group has ``lars`` True and both norms > 0),
        classic momentum:  buf <- momentum * buf + lr * d,   w <- w - buf    (SimCLR's TensorFlow LARS),
        otherwise:         buf <- momentum * buf + d,        w <- w - lr * buf (BYOL's optax chain, SwAV's LARC).

    The two agree while the lr is constant; under warm-up and cosine, classic momentum keeps each past step
    at the lr it was taken with. Groups with ``lars`` False (biases and norms, by ``split_norm_bias``) skip
    the trust ratio and are plain momentum SGD; the engine gives them no weight decay when their
    ``weight_decay`` flag is False. Every norm stays on the device: no host sync per parameter.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001,
                 classic_momentum: bool = False, trust: str = "update"):
        if trust not in CHOICES["lars_trust"]:
            raise ValueError(f"LARS trust is 'update' (SimCLR, BYOL) or 'larc' (SwAV), not {trust!r}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True,
                                      classic_momentum=classic_momentum, trust=trust))

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:  # a checkpoint from before the options resumes as it was trained
            group.setdefault("classic_momentum", False)
            group.setdefault("trust", "update")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            # multi-tensor ops: a handful of kernel launches per group, not several per parameter
            d = torch._foreach_add([p.grad for p in params], params, alpha=group["weight_decay"])
            if group["lars"]:
                w_norm = torch.stack(torch._foreach_norm(params))
                if group["trust"] == "larc":  # apex LARC: the norms of the gradient and of the decay, added
                    g_norm = torch.stack(torch._foreach_norm([p.grad for p in params]))
                    d_norm = torch.where(g_norm > 0, g_norm + group["weight_decay"] * w_norm, 0.0)
                else:
                    d_norm = torch.stack(torch._foreach_norm(d))
                trust = torch.where((w_norm > 0) & (d_norm > 0), group["eta"] * w_norm / d_norm, 1.0)
                torch._foreach_mul_(d, list(trust.unbind()))
            states = [self.state[p] for p in params]
            for state, step in zip(states, d):
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(step)
            buffers = [state["momentum_buffer"] for state in states]
            lr_in, lr_out = (group["lr"], 1.0) if group["classic_momentum"] else (1.0, group["lr"])
            torch._foreach_mul_(buffers, group["momentum"])
            torch._foreach_add_(buffers, d, alpha=lr_in)
            torch._foreach_add_(params, buffers, alpha=-lr_out)
        return loss


def param_groups(method: Method, cfg: Config) -> list[dict]:
    """The method's groups (split by ``cfg.exclude_norm_bias``) as optimiser groups: the method's
    ``weight_decay`` flag becomes ``decay`` (the optimiser's ``weight_decay`` is the scheduled number)."""
    groups = [{"weight_decay": True, "lars": True, "fixed_lr": False, **g} for g in method.param_groups()]
    for g in groups:
        if not isinstance(g["weight_decay"], bool):
            raise ValueError(f"{type(method).__name__}.param_groups(): a group's weight_decay is a flag (True or "
                             f"False), not {g['weight_decay']!r}; the amount is Config.weight_decay")
    if cfg.exclude_norm_bias:
        groups = split_norm_bias(groups)
    check_covers(method, groups)
    return [{**g, "decay": g["weight_decay"], "weight_decay": 0.0} for g in groups]


def check_covers(method: nn.Module, groups: list[dict]) -> None:
    """Every trainable parameter in exactly one group: a forgotten one would silently never train."""
    seen = Counter(id(p) for g in groups for p in g["params"])
    names = {id(p): n for n, p in method.named_parameters()}
    twice = sorted(names.get(i, "?") for i, count in seen.items() if count > 1)
    missing = [n for n, p in method.named_parameters() if p.requires_grad and id(p) not in seen]
    if twice or missing:
        raise ValueError(f"{type(method).__name__}.param_groups() must hold every trainable parameter once; "
                         + (f"in two groups: {', '.join(twice[:5])}; " if twice else "")
                         + (f"in none: {', '.join(missing[:5])}; " if missing else "")
                         + "fix the groups, or set requires_grad=False on parameters that must not train")


def build(method: Method, cfg: Config, lr: float) -> torch.optim.Optimizer:
    """The preset's optimiser over the method's groups, starting at ``lr`` and no weight decay."""
    groups = param_groups(method, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, weight_decay=0.0)
    if cfg.optimizer == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, eta=cfg.lars_eta, classic_momentum=cfg.lars_classic_momentum,
                    trust=cfg.lars_trust)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), weight_decay=0.0)


def set_lr_and_weight_decay(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float, base_lr: float) -> None:
    """This step's values for every group: ``fixed_lr`` groups keep ``base_lr`` (SimSiam's predictor),
    groups whose ``decay`` is False get no weight decay."""
    for group in optimizer.param_groups:
        group["lr"] = base_lr if group["fixed_lr"] else lr
        group["weight_decay"] = weight_decay if group["decay"] else 0.0
