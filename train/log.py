"""Per-epoch metrics: a CSV that survives resumes, and a PNG plot of the loss and kNN curves."""
from __future__ import annotations

import csv
from pathlib import Path

FIELDS = ["epoch", "loss", "knn_top1", "lr", "seconds"]


class EpochLog:
    def __init__(self, folder: Path, start_epoch: int = 0):
        self.csv, self.png = Path(folder) / "metrics.csv", Path(folder) / "metrics.png"
        self.rows = []
        if start_epoch and self.csv.exists():  # keep what the resumed checkpoint had seen, drop the rest
            with self.csv.open() as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= start_epoch]
        self._write()

    def log(self, **row) -> None:
        self.rows.append({k: row[k] for k in FIELDS})
        self._write()
        self.plot()

    def _write(self) -> None:
        with self.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
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
