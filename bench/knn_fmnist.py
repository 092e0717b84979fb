"""The lineage on Fashion-MNIST: every method's `fmnist` preset, measured by one kNN monitor
(k=200, T=0.07, the 60k training images voting for the 10k test images) against raw pixels and a
randomly initialised backbone, with its cost in bare epochs.

A bare epoch is the time of one epoch of the bare backbone (ResNet-18 at 32 px, batch 256, forward +
backward + SGD through the engine's step) on the machine at hand, so that a budget in bare epochs means
the same on a laptop and on a server. It is extrapolated from a few timed steps and measured again at the end
of every epoch: each epoch is divided by the bare epochs taken just before and just after it, under the same
load as itself.

Each run leaves ``bench.json`` in its folder (``runs/bench-METHOD-fmnist``): its timings, its bare epochs, its
kNN and its curve, a copy of which is committed in ``bench/records/`` so that the table rebuilds on a machine
that never held the run. A run interrupted half-way (a session that ends, a machine handed back) resumes from
its last epoch's checkpoint the next time, and counts each epoch in the bare epochs measured around it.
``--skip-trained`` reuses a run whose record is complete for the current preset, so that a new method joins the
table without retraining the others.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import timm
import torch
from torch import nn

import zoo
import zoo.checkpoint
from train import data as datasets
from train.augment import Preprocess
from train.config import Config
from train.engine import CHECKPOINT, export_name, fit
from train.knn import knn_monitor
from train.methods import METHODS
from zoo.card import KNN_METRIC

from .report import REPORT, remove_section, write_section
from .bare import BARE, bare_step
from .presets import methods_with_preset, parse_methods
from .throughput import step_seconds, synced

ROOT = Path(__file__).resolve().parents[1]
FIGURES = Path(__file__).resolve().parent / "figures"
TITLE = "The lineage on Fashion-MNIST (kNN)"
RECORD = "bench.json"
SESSIONS = "bench.sessions.json"  # the training sessions of a run not yet finished, to resume it
CPU = torch.device("cpu")
GOAL_BARE_EPOCHS = 9  # the budget within which a method should beat raw pixels
TRAIN_IMAGES = 60000
PIXELS = "raw pixels (784-d)"


@dataclass(frozen=True)
class Scale:
    """How much of everything to do: the full benchmark, or ``--quick``'s proof that it runs end to end."""

    tag: str = ""  # in the run folders and exported names, so a quick run never touches a full one
    subset: int = 0  # training images (0: all), and a quarter as many test images
    epochs: int | None = None  # None: the preset's
    knn_subset: int | None = None
    warmup_steps: int = 2
    timed_steps: int = 10  # at every epoch's end: about 40 s on a CPU core
    kept: bool = True  # its runs' records are committed under bench/records

    def apply(self, cfg: Config) -> Config:
        return cfg.override(subset=self.subset or None, epochs=self.epochs, knn_subset=self.knn_subset)


FULL = Scale()
QUICK = Scale(tag="quick", subset=2048, epochs=1, knn_subset=512, warmup_steps=1, timed_steps=3, kept=False)


def longer(epochs: int) -> Scale:
    """``--epochs N``: every preset trained N epochs, in folders, exports and a section of their own."""
    return Scale(tag=f"e{epochs}", epochs=epochs)


@dataclass(frozen=True)
class Run:
    """One training of the benchmark: which method, with which config, where it goes."""

    method: str
    label: str
    cfg: Config
    folder: Path
    name: str  # of the exported model in $ZOO_HOME
    kept: bool = True  # its record is committed under bench/records (a --quick run's is not)


def display(method: str) -> str:
    """The method's name as its paper writes it: its module's docstring up to the colon ("MoCo v2")."""
    head = (METHODS[method].__doc__ or "").split(":")[0]
    return head if head and len(head.split()) <= 2 else method


def lineage_run(method: str, scale: Scale, *changes: tuple[str, str, object]) -> Run:
    """The method's fmnist run, or with ``changes``, each (key of its method config, the paper's symbol, value),
    a variant of it (``bench.claims``: InstDisc with m = 256 noise samples is ("negatives", "m", 256)), named
    after each change in turn."""
    cfg = scale.apply(METHODS[method].PRESETS["fmnist"])
    stem, label, name = f"bench-{method}", display(method), export_name(method, "fmnist", cfg)
    for key, symbol, value in changes:
        cfg = cfg.override(method={**cfg.method, key: value})
        stem, label, name = f"{stem}-{symbol}{value}", f"{label}, {symbol} = {value}", f"{name}-{symbol}{value}"
    if scale.tag:
        stem, name = f"{stem}-{scale.tag}", f"{name}-{scale.tag}"
    return Run(method, label, cfg, ROOT / "runs" / f"{stem}-fmnist", name, kept=scale.kept)


# --- the yardstick: bare epochs -------------------------------------------------------------------------


def bare_epoch_seconds(step_seconds: list[float], images: int = TRAIN_IMAGES, batch: int = BARE.batch_size) -> float:
    """The median step times the steps of one epoch (full batches only, as the engine's loader drops the rest)."""
    return statistics.median(step_seconds) * (images // batch)


class BareClock:
    """Times the bare step on the device the trainings use, and keeps every bare epoch measured in this run."""

    def __init__(self, data: datasets.Data, scale: Scale):
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # as the engine chooses
        self.step, self.device = bare_step(data, device), device
        self.scale, self.measured = scale, []

    def measure(self) -> float:
        """One bare epoch, in seconds, from ``timed_steps`` steps after ``warmup_steps`` untimed ones."""
        seconds = step_seconds(synced(self.step, self.device), self.scale.timed_steps, self.scale.warmup_steps)
        self.measured.append(bare_epoch_seconds(seconds))
        print(f"bare epoch: {self.measured[-1]:.1f} s", flush=True)
        return self.measured[-1]


def spread(values: list[float]) -> str:
    """The median and the range: with a handful of measurements the extremes say most about the load."""
    return (f"median {statistics.median(values):.1f} s, from {min(values):.1f} to {max(values):.1f} s over "
            f"{len(values)} measurement{'s' if len(values) > 1 else ''}")


# --- baselines ------------------------------------------------------------------------------------------


class Pixels(nn.Module):
    def forward(self, x):
        return x.flatten(1)


def pixels_knn(data: datasets.Data, limit: int = 0, seed: int = 0) -> float:
    """The raw 784 pixels as features: what a method must beat."""
    return knn_monitor(Pixels(), data, lambda x: x.float(), CPU, limit, seed)


def baselines(data: datasets.Data) -> dict[str, float]:
    """kNN top-1 of raw pixels and of the random-init backbone under both inits (the authors' init alone
    is already close to raw pixels at 32 px; timm's zeroed last BN is not)."""
    out = {PIXELS: pixels_knn(data)}
    preprocess = Preprocess(BARE.image_size, data.mean, data.std)
    for label, args in (("timm's default init (last BN of each block zeroed)", {}),
                        ("the authors' init (zero_init_last=False)", BARE.model_args)):
        torch.manual_seed(0)
        backbone = timm.create_model(BARE.arch, num_classes=0, **args)
        out[f"{BARE.arch}, random, {label}"] = knn_monitor(backbone, data, preprocess, CPU)
    return out


# --- training and its record ----------------------------------------------------------------------------


def as_json(cfg: Config) -> dict:
    """The config as a record holds it (tuples become lists), to compare with a stored one."""
    return json.loads(json.dumps(asdict(cfg)))


def is_config(stored: dict | None, cfg: Config) -> bool:
    """Whether a stored config is ``cfg``. A field the store lacks was added to ``Config`` after it was
    written, with a default that keeps the behaviour from before: the store holds that default."""
    return stored is not None and {**as_json(Config()), **stored} == as_json(cfg)


def monitor_rows(run: Run) -> list[dict]:
    path = run.folder / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as log:
        return list(csv.DictReader(log))


def finished(run: Run) -> dict | None:
    """The run's record if its folder holds a finished run of the current config and its exported model."""
    path = run.folder / RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    complete = (is_config(record.get("config"), run.cfg) and len(monitor_rows(run)) == run.cfg.epochs
                and zoo.checkpoint.is_checkpoint(Path(record["export"])))
    return record if complete else None


def kept_record(run: Run) -> Path:
    """Where a finished run's record is committed: the tables rebuild from it on a machine without the run."""
    return ROOT / "bench" / "records" / f"{run.folder.name}.json"


def committed(run: Run) -> dict | None:
    """The committed record of a finished run of the current config, if any."""
    path = kept_record(run)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if is_config(record.get("config"), run.cfg) else None


def interval_bare_epochs(interval: dict) -> float:
    """One stretch of training between two yardstick measurements, in the mean of the bare epochs measured at its
    two ends (the first alone where the second was cut short)."""
    after = interval["bare_epoch_after"] or interval["bare_epoch_before"]
    return interval["seconds"] / ((interval["bare_epoch_before"] + after) / 2)


def closed(session: dict) -> dict:
    """A session as the record keeps it: its training seconds and bare epochs, summed over its stretches."""
    stretches = session["intervals"]
    return dict(seconds=sum(i["seconds"] for i in stretches),
                bare_epochs=sum(interval_bare_epochs(i) for i in stretches), intervals=stretches)


def earlier_sessions(run: Run) -> list[dict]:
    """The sessions an interrupted run of the current config already trained, each up to its last checkpoint
    (the stretches its epochs' ends recorded); empty when there is nothing to resume. A session killed before its
    first checkpoint counts nothing: the resumed run does that work again."""
    path, checkpoint = run.folder / SESSIONS, run.folder / CHECKPOINT
    if not (path.is_file() and checkpoint.is_file()):
        return []
    state = json.loads(path.read_text())
    if not is_config(state.get("config"), run.cfg):
        return []
    return [session if "bare_epochs" in session else dict(closed(session), killed=True)
            for session in state["sessions"]]


class Stretches:
    """The yardstick at every epoch's end: each stretch of training (an epoch with its monitor and checkpoint;
    the first also loads the data and prefills) is divided by the bare epochs measured just before and just after
    it, so that a machine whose load drifts during a run of an hour and a half is measured under that load.
    Written to the run's sessions file at each epoch, so a killed session still counts what it checkpointed."""

    def __init__(self, run: Run, clock: BareClock, sessions: list[dict]):
        self.run, self.clock, self.sessions = run, clock, sessions
        self.bare_epoch = clock.measured[-1] if clock.measured else clock.measure()
        self.intervals: list[dict] = []
        self.mark = time.time()  # the end of the last measurement: the next stretch starts here
        self.save()

    def save(self) -> None:
        pending = dict(intervals=self.intervals)
        (self.run.folder / SESSIONS).write_text(json.dumps(dict(config=as_json(self.run.cfg),
                                                                sessions=self.sessions + [pending])))

    def __call__(self, epoch: int) -> None:
        stretch = dict(epoch=epoch, seconds=time.time() - self.mark, bare_epoch_before=self.bare_epoch,
                       bare_epoch_after=None)
        self.intervals.append(stretch)
        self.save()  # before measuring: a kill during the measurement keeps the epoch
        stretch["bare_epoch_after"] = self.bare_epoch = self.clock.measure()
        self.save()
        self.mark = time.time()


def train(run: Run, clock: BareClock) -> dict:
    """Train and export ``run``, timing the bare step before it and after every epoch, resuming an interrupted run
    of the same config from its last checkpoint; write its record. A run that spans sessions (machines are lent
    for hours) is the sum of its sessions, each stretch of each in the bare epochs measured around it."""
    (run.folder / RECORD).unlink(missing_ok=True)  # a run killed half-way must not pass for finished
    sessions = earlier_sessions(run)
    run.folder.mkdir(parents=True, exist_ok=True)
    stretches = Stretches(run, clock, sessions)
    folder = fit(run.method, "fmnist", run.cfg, run.folder, resume=bool(sessions), name=run.name,
                 after_epoch=stretches)
    export_seconds = time.time() - stretches.mark  # the full-set kNN and the export, after the last measurement
    sessions.append(closed(dict(intervals=stretches.intervals)))
    train_seconds = sum(session["seconds"] for session in sessions)
    bare_epochs = sum(session["bare_epochs"] for session in sessions)
    record = dict(method=run.method, config=as_json(run.cfg), export=str(folder),
                  fit_seconds=train_seconds + export_seconds, train_seconds=train_seconds, bare_epochs=bare_epochs,
                  sessions=sessions, date=time.strftime("%Y-%m-%d %H:%M"))
    record = keep(run, with_results(run, record))
    (run.folder / SESSIONS).unlink()
    return record


def with_results(run: Run, record: dict) -> dict:
    """The record with what the tables report of the run: the exported model's kNN and the monitor's curve."""
    spent = spent_by_epoch(record)
    curve = [[int(r["epoch"]), spent[int(r["epoch"])], float(r["knn_top1"])] for r in monitor_rows(run)
             if int(r["epoch"]) in spent]
    return dict(record, knn=card_knn(record["export"]), curve=curve)


def keep(run: Run, record: dict) -> dict:
    """Write the record into the run's folder and, for a full run, where it is committed."""
    text = json.dumps(record, indent=1) + "\n"
    (run.folder / RECORD).write_text(text)
    if run.kept:
        kept_record(run).parent.mkdir(parents=True, exist_ok=True)
        kept_record(run).write_text(text)
    return record


# --- results --------------------------------------------------------------------------------------------


@dataclass
class Result:
    run: Run
    knn: float  # the exported model's, full test set
    minutes: float  # the whole fit: training, per-epoch monitor, full-set kNN, export
    bare_epochs: float  # training only (up to the last epoch's checkpoint), in bare epochs
    curve: list[tuple[int, float, float]]  # (epoch, bare epochs so far, monitor kNN)
    date: str = ""
    per_epoch: bool = True  # the yardstick measured at every epoch's end, not only before and after the run
    yardstick: list[float] = field(default_factory=list)  # the bare epoch's seconds as measured during the run


def card_knn(folder: str) -> float:
    """The kNN top-1 the engine measured on the full splits at export, as the model card holds it."""
    metrics = zoo.info(folder).get("metrics", {})
    values = [value for metric, value in metrics.items() if metric.startswith(KNN_METRIC)]
    if not values:
        raise ValueError(f"the model card in {folder} holds no {KNN_METRIC!r}: re-export it by training again")
    return values[0]


def spent_by_epoch(record: dict) -> dict[int, float]:
    """Bare epochs spent by the end of each epoch: its stretch and every one before it, across sessions, so that
    the last equals the whole training."""
    stretches = sorted((i for session in record["sessions"] for i in session["intervals"]), key=lambda i: i["epoch"])
    spent, out = 0.0, {}
    for stretch in stretches:
        spent += interval_bare_epochs(stretch)
        out[stretch["epoch"]] = spent
    return out


def yardstick_readings(record: dict) -> list[float]:
    """Every bare epoch measured during the recorded run: before each session, then at each epoch's end."""
    readings = []
    for session in record.get("sessions", []):
        stretches = sorted(session["intervals"], key=lambda i: i["epoch"])
        readings += [stretches[0]["bare_epoch_before"]] if stretches else []
        readings += [i["bare_epoch_after"] for i in stretches if i["bare_epoch_after"]]
    return readings


def result(run: Run, record: dict) -> Result:
    curve = [tuple(point) for point in record["curve"]]
    return Result(run, record["knn"], record["fit_seconds"] / 60, record["bare_epochs"], curve, record["date"],
                  per_epoch="sessions" in record, yardstick=yardstick_readings(record))


def meets_goal(knn: float, pixels: float, bare_epochs: float) -> bool:
    return knn > pixels and bare_epochs <= GOAL_BARE_EPOCHS


def shortfall(res: Result, pixels: float) -> str:
    """The facts of a method that misses the goal (its kNN against raw pixels, its budget) and what its monitor
    says of why: over the budget, still rising when the preset stopped, or falling with budget left."""
    line = (f"- {res.run.label}: kNN {res.knn:.2f}% against raw pixels' {pixels:.2f}%, after "
            f"{res.bare_epochs:.1f} bare epochs ({res.run.cfg.epochs} epochs of its preset)")
    left = GOAL_BARE_EPOCHS - res.bare_epochs
    monitor = [(epoch, knn) for epoch, _, knn in res.curve]
    best_epoch, best = max(monitor, key=lambda point: point[1])
    if left < 0:
        return line + f": it needs more than the budget of {GOAL_BARE_EPOCHS} bare epochs."
    if best > monitor[-1][1]:
        return (line + f". Its monitor peaked at {best:.1f}% after epoch {best_epoch} and fell to "
                f"{monitor[-1][1]:.1f}%, with {left:.1f} bare epochs of the budget unused: the budget did not limit "
                "it; training on made its features worse by the monitor.")
    return line + f". Its monitor was still rising, with {left:.1f} bare epochs unused: a longer preset may reach the goal."


# --- report ---------------------------------------------------------------------------------------------


def table(results: list[Result], base: dict[str, float], pixels: float) -> str:
    """The lineage table: the baselines, then one row per method with its cost and the goal."""
    goal = f"beats raw pixels within {GOAL_BARE_EPOCHS} bare epochs"
    rows = [f"| features | kNN top-1 (%) | minutes | bare epochs | {goal} |", "|---|---|---|---|---|"]
    rows += [f"| {label} | {value:.2f} | - | - | - |" for label, value in base.items()]
    for res in results:
        cfg, met = res.run.cfg, meets_goal(res.knn, pixels, res.bare_epochs)
        mark = "" if res.per_epoch else " *"
        rows.append(f"| {res.run.label} (`{cfg.arch}`, {cfg.epochs} epochs, batch {cfg.batch_size}){mark} "
                    f"| {res.knn:.2f} | {res.minutes:.1f} | {res.bare_epochs:.1f} | {'yes' if met else 'no'} |")
    older = sorted({res.date[:10] for res in results if not res.per_epoch})
    note = (f"\n\\* Trained on {', '.join(older)}, when the yardstick was measured only before and after each run (the "
            "mean of the two), not at each epoch; reported from its committed record.\n" if older else "")
    return "\n".join(rows) + "\n" + note


def protocol(clock: BareClock, results: list[Result]) -> str:
    """How the table was measured: the kNN, the bare epoch (as the reported runs measured it, else as this
    invocation did) and the minutes."""
    scale = clock.scale
    flag, trained = "", "trained"
    if scale is QUICK:
        flag = " --quick"
    elif scale.epochs:
        flag, trained = f" --epochs {scale.epochs}", f"trained {scale.epochs} epochs"
    readings = [seconds for res in results for seconds in res.yardstick]
    measured = (f"Bare epochs measured during the reported runs: {spread(readings)}" if readings else
                f"Bare epochs measured in this run: {spread(clock.measured)}")
    return f"""
`python -m bench.knn_fmnist{flag}`: each method's `fmnist` preset, {trained} and exported, then its kNN top-1 (k=200,
T=0.07, cosine on L2-normalised features) of the 60k training images voting for the 10k test images, the
monitor the baselines are measured by. **Bare epochs**: the training time (data, prefill, the epochs with
their monitor, up to the last checkpoint) over one epoch of bare `{BARE.arch}` (32 px, batch {BARE.batch_size},
forward + backward + SGD through the engine's step: {TRAIN_IMAGES // BARE.batch_size} steps at the median of
{scale.timed_steps} timed after {scale.warmup_steps} warm-up), measured before each training and after each of its
epochs: each epoch counts in the mean of the bare epochs measured just before and just after it, so that the
machine's load, which drifts over a run, is the same in the numerator and the denominator (the yardstick's own
time is left out). {measured}. **Minutes**: the whole run,
including the full-set kNN and the export. Each finished run's record (its config, timings, kNN and curve) is
committed in `bench/records/`, so `--skip-trained` reports a run of the current preset without its folder.
"""


def shortfalls(results: list[Result], pixels: float) -> str:
    short = [shortfall(res, pixels) for res in results if not meets_goal(res.knn, pixels, res.bare_epochs)]
    if not short:
        return ""
    return (f"\nShort of the goal (kNN above raw pixels within {GOAL_BARE_EPOCHS} bare epochs):\n\n"
            + "\n".join(short) + "\n")


def curves(results: list[Result], figures: dict) -> str:
    """Each method's monitor after each epoch, with the bare epochs spent by then, and the figure."""
    subsets = ", ".join(str(n) for n in sorted({res.run.cfg.knn_subset for res in results}))
    lines = "".join(f"- {res.run.label}: " + ", ".join(f"{knn:.1f} @ {bare:.1f}" for _, bare, knn in res.curve)
                    + "\n" for res in results)
    return f"""
The monitor after each epoch (kNN top-1 % @ bare epochs spent; {subsets} training images voting for a quarter
as many test images, a seeded subset; raw pixels on the same subset: {figures['pixels']:.2f}):

{lines}
![kNN monitor per epoch]({link(figures['curves'])})
"""


def link(path: Path) -> str:
    """``path`` as BENCHMARKS.md links it: relative to the repository when inside it."""
    return path.relative_to(REPORT.parent).as_posix() if path.is_relative_to(REPORT.parent) else str(path)


def section(results, base, clock: BareClock, figures: dict) -> str:
    pixels = base[PIXELS]
    return (protocol(clock, results) + "\n" + table(results, base, pixels) + shortfalls(results, pixels)
            + curves(results, figures) + "\nThe papers' claims at this scale: `python -m bench.claims`.\n")


# --- figures --------------------------------------------------------------------------------------------


def plot_monitor(results: list[Result], path: Path, title: str, pixels: float) -> Path:
    """The monitor per epoch of each run, against epochs (left) and bare epochs (right)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for res in results:
        epochs, bare, knn = zip(*res.curve)
        axes[0].plot(epochs, knn, marker="o", label=res.run.label)
        axes[1].plot(bare, knn, marker="o", label=res.run.label)
    for ax, xlabel in zip(axes, ("epoch", "bare epochs (training time / one bare ResNet-18 epoch)")):
        ax.axhline(pixels, color="grey", linestyle="--", label="raw pixels")
        ax.set(xlabel=xlabel)
    axes[0].set(ylabel="kNN top-1 (%), monitor subset", xticks=sorted({e for res in results for e, _, _ in res.curve}))
    axes[1].axvline(GOAL_BARE_EPOCHS, color="tab:red", linestyle=":", label=f"{GOAL_BARE_EPOCHS} bare epochs")
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}", flush=True)
    return path


def monitor_pixels(results: list[Result], data: datasets.Data) -> float:
    """Raw pixels' kNN on the monitor's subset, the line the curves are drawn against."""
    first = results[0].run.cfg
    return pixels_knn(data, first.knn_subset, first.seed)


def draw(results: list[Result], data: datasets.Data, folder: Path, tag: str = "") -> dict:
    """The curves of every method, and the raw pixels' kNN on the monitor's subset they are drawn against."""
    pixels = monitor_pixels(results, data)
    path = folder / f"lineage_fmnist{'_' + tag if tag else ''}_knn.png"
    return {"pixels": pixels, "curves": plot_monitor(results, path, "The lineage on Fashion-MNIST: kNN monitor per epoch",
                                                     pixels)}


# --- the benchmark --------------------------------------------------------------------------------------


def outcome(run: Run, skip_trained: bool, clock: BareClock | None) -> dict | None:
    """The run's record: reused when allowed and finished (in its folder, or committed), else trained (``clock``
    None: never trained)."""
    record = (finished(run) or committed(run)) if skip_trained or clock is None else None
    if record:
        print(f"{run.label}: reusing the record of {record['date']}", flush=True)
        return record
    return train(run, clock) if clock else None


def arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.knn_fmnist", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", type=parse_methods, default=None,
                        help="comma-separated, e.g. instdisc,invaspread (default: every method with an fmnist preset)")
    parser.add_argument("--skip-trained", action="store_true",
                        help="reuse each run of the current preset whose folder holds it finished, or whose record "
                             "is committed in bench/records")
    parser.add_argument("--curves-only", action="store_true",
                        help="only redraw the figures from the finished runs; train and measure nothing")
    parser.add_argument("--no-write", action="store_true",
                        help="print the section; leave BENCHMARKS.md and bench/figures alone")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train every preset this many epochs instead of its own: a longer run, reported in a "
                             "section of its own")
    parser.add_argument("--quick", action="store_true",
                        help="prove it runs: 1 epoch on 2048 images, kNN on a subset, nothing written to BENCHMARKS.md")
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = arguments(argv)
    scale = QUICK if args.quick else longer(args.epochs) if args.epochs else FULL
    title = f"The lineage on Fashion-MNIST, {args.epochs} epochs (kNN)" if args.epochs else TITLE
    write = not (args.no_write or args.quick)
    figures_folder = FIGURES if write else ROOT / "runs" / f"bench-figures{'-' + scale.tag if scale.tag else ''}"
    runs = [lineage_run(method, scale) for method in args.methods or methods_with_preset()]
    data = datasets.load("fashion-mnist", BARE.image_size, scale.subset)
    clock = None if args.curves_only else BareClock(data, scale)
    if clock:
        clock.measure()
    results = [result(run, record) for run in runs if (record := outcome(run, args.skip_trained, clock))]
    if not results:
        raise SystemExit("no finished run to report: train them first (leave out --curves-only)")
    figures = draw(results, data, figures_folder, scale.tag)
    if args.curves_only:
        return ""
    base = baselines(data)
    body = section(results, base, clock, figures)
    print(body)
    if write:
        write_section(title, body)
        for old in ("InstDisc on Fashion-MNIST (kNN)", "Stage 1 on Fashion-MNIST (kNN)"):  # what this table replaced
            remove_section(old)
    return body


if __name__ == "__main__":
    main()
