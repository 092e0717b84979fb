"""Metrics: step values summed on the device and read every N steps, and the per-epoch CSV and plot.

Reading a CUDA tensor (``.item()``) waits for every queued kernel; doing it each step would stall
the GPU once per step. ``Meter`` keeps the sums where they are and reads them in one transfer
every ``every`` steps.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

FIRST, LAST = ["epoch", "loss"], ["knn_top1", "lr", "seconds"]  # a method's logs go in between


class Meter:
    """Sums of the loss and a method's logs over steps, left on the device until ``every`` steps have
    passed; ``last`` holds the means of the latest window, ``means()`` those of everything added."""

    def __init__(self, every: int):
        self.every = every
        self.window: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.totals: dict[str, float] = {}
        self.steps: dict[str, int] = {}
        self.last: dict[str, float] = {}
        self.added = 0

    def add(self, loss: torch.Tensor, logs: dict[str, torch.Tensor]) -> bool:
        """Add one step's values (no sync); returns True when this step brought a window to the host."""
        for name, value in {"loss": loss, **logs}.items():
            value = value.detach().float().reshape(())
            self.window[name] = self.window[name] + value if name in self.window else value
            self.counts[name] = self.counts.get(name, 0) + 1
        self.added += 1
        if self.added % self.every:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """Bring the window's sums to the host in one transfer; a non-finite loss stops the run here."""
        if not self.window:
            return
        sums = dict(zip(self.window, torch.stack(list(self.window.values())).tolist()))
        self.last = {name: total / self.counts[name] for name, total in sums.items()}
        for name, total in sums.items():
            self.totals[name] = self.totals.get(name, 0.0) + total
            self.steps[name] = self.steps.get(name, 0) + self.counts[name]
        self.window, self.counts = {}, {}
        if not math.isfinite(self.last["loss"]):
            raise FloatingPointError(f"the loss is {self.last['loss']} in the steps up to step {self.added} of this "
                                     "epoch: lower the lr, add warm-up epochs or set clip_grad in the preset")

    def means(self) -> dict[str, float]:
        self.flush()
        return {name: total / self.steps[name] for name, total in self.totals.items()}


class EpochLog:
    """``metrics.csv`` (one row per epoch: loss, the method's logs, kNN top-1, lr, seconds) that survives
    resumes, and ``metrics.png`` of the loss and kNN curves."""

    def __init__(self, folder: Path, start_epoch: int = 0):
        self.csv, self.png = Path(folder) / "metrics.csv", Path(folder) / "metrics.png"
        self.rows = []
        if start_epoch and self.csv.exists():  # keep what the resumed checkpoint had seen, drop the rest
            with self.csv.open() as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= start_epoch]
        self._write()

    def log(self, **row) -> None:
        self.rows.append(row)
        self._write()
        self.plot()

    def fields(self) -> list[str]:
        extra = [k for row in self.rows for k in row if k not in FIRST + LAST]
        return FIRST + list(dict.fromkeys(extra)) + LAST

    def _write(self) -> None:
        with self.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.fields())
            writer.writeheader()
            writer.writerows(self.rows)

    def plot(self) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [int(r["epoch"]) for r in self.rows]
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
        left.plot(epochs, [float(r["loss"]) for r in self.rows], marker="o")
        left.set(xlabel="epoch", ylabel="training loss")
        right.plot(epochs, [float(r["knn_top1"]) for r in self.rows], marker="o", color="tab:green")
        right.set(xlabel="epoch", ylabel="kNN top-1 (%)")
        fig.tight_layout()
        fig.savefig(self.png, dpi=100)
        plt.close(fig)
