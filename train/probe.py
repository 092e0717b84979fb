"""The linear protocol on frozen features: a multinomial logistic regression on features extracted once.

The papers train a linear classifier on the frozen backbone for many epochs of augmented images (MoCo's
main_lincls.py: SGD lr 30, 100 epochs, random crops and flips, a centre crop to test); on features cached
once from unaugmented images (as solo-learn's offline protocol and CLIP's linear probes do), a full-batch
L-BFGS fit finds its optimum in seconds. Its numbers are therefore not a re-measurement of a paper's
linear top-1. Features are standardised with the training
split's statistics; the L2 penalty is chosen on a held-out tenth of the training split, then the
classifier is refitted on all of it and measured once on the test split.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

PENALTIES = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)  # L2 on the weights, per example


def fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, penalty: float, steps: int = 200) -> torch.nn.Linear:
    """Minimise mean cross-entropy + penalty * ||W||^2 over a linear layer, full batch, by L-BFGS."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(x.shape[1], num_classes).to(x.device)
    optimizer = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=steps, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(layer(x), y) + penalty * layer.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return layer


@torch.no_grad()
def accuracy(layer: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    return (layer(x).argmax(dim=1) == y).float().mean().item() * 100


def linear_probe(train_x, train_y, test_x, test_y, penalties=PENALTIES, steps: int = 200, seed: int = 0) -> dict:
    """Top-1 (%) on the test split of the linear classifier fitted on the training split, with the penalty
    that did best on a seeded held-out tenth of it."""
    train_x, test_x = train_x.float(), test_x.float()
    mean, std = train_x.mean(dim=0), train_x.std(dim=0).clamp(min=1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
    held, kept = order[:max(1, len(order) // 10)], order[max(1, len(order) // 10):]
    scores = {p: accuracy(fit(train_x[kept], train_y[kept], num_classes, p, steps), train_x[held], train_y[held])
              for p in penalties}
    best = max(scores, key=lambda p: (scores[p], p))  # ties: the stronger penalty
    layer = fit(train_x, train_y, num_classes, best, steps)
    return dict(top1=accuracy(layer, test_x, test_y), penalty=best, held_out_top1=scores)
