"""The papers' claims, tested at small scale on Fashion-MNIST: each a method's `fmnist` preset with one
hyper-parameter varied, or (SimCLR) one trained model read two ways.

- InstDisc (Wu et al. 2018, Sec. 4.1): more noise samples m help.
- MoCo (He et al. 2020, Fig. 3): a larger dictionary (queue size K) is better; swept at the preset's
  momentum (0.99) and at the paper's (0.999).
- MoCo (Sec. 4.1, momentum ablation): m = 0 fails to train well; a slow key encoder (0.99 to 0.9999) works.
- SimCLR (Chen et al. 2020, Sec. 4.2 and Fig. 8): the representation before the projection head is much
  better than the head's output.
- SimSiam (Chen & He 2021, Sec. 4.1): without the stop-gradient it collapses.
- BYOL (Grill et al. 2020, Table 5): without the predictor it collapses.
- DINO (Caron et al. 2021, Sec. 5.3): sharpening without centring collapses.

Each variant is a full `fmnist` run, trained, timed in bare epochs and resumed across sessions as the
lineage's runs are (``bench.knn_fmnist``), whose finished runs give each claim its preset's own value.
Runs are trained only with ``--train``; a claim reports the runs finished so far and names, with the command
that trains them, the values still missing (a sweep measured at two values is a trend, not yet the claim).
Each run is read two ways: the lineage's kNN, and the linear protocol (``train.probe``), which is how the
papers measure these claims. A complete sweep gets a verdict by each: whether it shows the ordering the claim
predicts.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from train import data as datasets
from train import probe
from train.augment import Preprocess
from train.config import Config
from train.engine import CHECKPOINT
from train.knn import knn_accuracy
from train.methods import METHODS

from . import knn_fmnist as lineage
from .presets import comma_names
from .report import write_section

TITLE = "The papers' claims on Fashion-MNIST"


ORDERINGS = ("rises", "falls", "fails")  # what a claim's verdict can check


@dataclass(frozen=True)
class Claim:
    """One hyper-parameter of one method's `fmnist` preset, at ``values`` besides the preset's own; with
    ``base``, changes as ``bench.knn_fmnist.lineage_run`` takes them, of that preset changed first."""

    method: str
    key: str  # in the preset's method config
    symbol: str  # as the paper writes it
    values: tuple
    says: str  # the paper's claim, with where it makes it
    log_scale: bool = False
    predicts: str = "rises"  # the ordering the claim predicts: kNN "rises" or "falls" with the value, or the
    # lowest value "fails"
    base: tuple = ()  # e.g. (("momentum", "m", 0.999),): the sweep at the paper's momentum
    default: object = None  # the value of a key the preset leaves to the method's default (SimSiam's stop-gradient)

    def __post_init__(self):
        if self.predicts not in ORDERINGS:
            raise ValueError(f"Claim.predicts is one of {', '.join(ORDERINGS)}, not {self.predicts!r}")

    def variants(self, scale: lineage.Scale) -> list[lineage.Run]:
        """The preset with ``key`` moved to each of ``values``: the ablations."""
        return [lineage.lineage_run(self.method, scale, *self.base, (self.key, self.symbol, v)) for v in self.values]

    def runs(self, scale: lineage.Scale) -> list[lineage.Run]:
        """The variants and the preset's own run (the lineage's), ordered by value."""
        preset = lineage.lineage_run(self.method, scale, *self.base)
        labelled = replace(preset, label=f"{preset.label}, {self.symbol} = {self.value(preset)}")
        return sorted(self.variants(scale) + [labelled], key=self.value)

    def value(self, run: lineage.Run):
        """The run's value of the swept key."""
        return run.cfg.method.get(self.key, self.default)


CLAIMS = {
    "instdisc-negatives": Claim("instdisc", "negatives", "m", (256, 1024),
                                "InstDisc (Sec. 4.1): more noise samples help", log_scale=True),
    "moco-queue": Claim("moco", "queue_size", "K", (256, 16384),
                        "MoCo (Fig. 3): a larger dictionary is better", log_scale=True),
    "moco-queue-m0.999": Claim("moco", "queue_size", "K", (256, 16384),
                               "MoCo (Fig. 3) at the paper's momentum, m = 0.999: a larger dictionary is better",
                               log_scale=True, base=(("momentum", "m", 0.999),)),
    "moco-momentum": Claim("moco", "momentum", "m", (0.0, 0.999),
                           "MoCo (Sec. 4.1): with m = 0 training fails; a slowly moving key encoder works",
                           predicts="fails"),
    "simclr-temperature": Claim("simclr", "temperature", "T", (0.5,),
                                "SimCLR (Table 5): with l2-normalised projections, T = 0.1 beats 0.5",
                                predicts="falls"),
    "simsiam-stop-gradient": Claim("simsiam", "stop_gradient", "stopgrad", (False,),
                                   "SimSiam (Sec. 4.1, Fig. 2): without the stop-gradient the model collapses",
                                   predicts="fails", default=True),
    "byol-predictor": Claim("byol", "predictor", "predictor", (False,),
                            "BYOL (Table 5): without the predictor the representation collapses",
                            predicts="fails", default=True),
    "dino-centring": Claim("dino", "centring", "centring", (False,),
                           "DINO (Sec. 5.3): sharpening the teacher without centring it collapses the outputs",
                           predicts="fails", default=True),
}


def ablations(scale: lineage.Scale = lineage.FULL) -> set[str]:
    """The export names of every claim's variants (not the presets' own runs): ablations, reported here."""
    return {run.name for claim in CLAIMS.values() for run in claim.variants(scale)}


parse_claims = comma_names("claim", CLAIMS)


def claim_results(claim: Claim, scale, train: bool, skip_trained: bool,
                  clock) -> tuple[list[lineage.Result], list[lineage.Run]]:
    """The claim's finished runs (trained first when ``train``) and the runs still missing, each in order of value."""
    done, missing = [], []
    for run in claim.runs(scale):
        record = lineage.outcome(run, skip_trained, clock if train else None)
        if record is None:
            missing.append(run)
        else:
            done.append(lineage.result(run, record))
    return done, missing


# --- SimCLR: before and after the projection head --------------------------------------------------------

BEFORE, AFTER = "h = f(x)", "z = g(h)"
PROTOCOLS = {"knn": "kNN", "linear": "linear"}


def reading_path(run: lineage.Run, kind: str) -> Path:
    """Where a reading of ``run`` ("head", "linear") is committed, beside the run's record."""
    return lineage.kept_record(run).with_name(f"{run.folder.name}-{kind}.json")


def kept_reading(run: lineage.Run, kind: str, keys: tuple, measure: Callable[[], dict | None]) -> dict | None:
    """``measure()`` of the run's record (finished here, or committed): taken from its folder once, then committed
    beside the record under the record's date, so the claim rebuilds on a machine without the run's checkpoint;
    None while the run is unfinished, or its folder is gone and no reading of that run holding ``keys`` is kept
    (or ``measure`` gives None: it reads the kept reading only)."""
    here = lineage.finished(run)  # read once: it opens the run's record, its log and its export
    record = here or lineage.committed(run)
    if record is None:
        return None
    kept = reading_path(run, kind)
    if kept.is_file():  # kept as {"run_date": ..., key: value, ...}
        reading = json.loads(kept.read_text())
        if reading["run_date"] == record["date"] and all(key in reading for key in keys):
            return {key: reading[key] for key in keys}
    if here is None:  # a committed record of another machine's run: its checkpoint is not here
        return None
    out = measure()
    if out is not None and run.kept:
        kept.write_text(json.dumps(dict(run_date=record["date"], **out), indent=1) + "\n")
    return out


def trained_method(run: lineage.Run, data: datasets.Data) -> tuple[nn.Module, Preprocess]:
    """The finished run's method, from its last checkpoint, and its preprocessing."""
    state = torch.load(run.folder / CHECKPOINT, map_location="cpu", weights_only=True)
    cfg = Config(**state["config"])
    data = datasets.as_fed(data, cfg.normalize)
    method = METHODS[run.method].build(cfg, len(data.train), data.mean, data.std)
    method.load_state_dict(state["model"])
    return method.eval(), Preprocess(cfg.image_size, data.mean, data.std)


@torch.no_grad()
def features(model: nn.Module, dataset, preprocess) -> torch.Tensor:
    return torch.cat([model(preprocess(x)).float() for x, _ in DataLoader(dataset, batch_size=512)])


def linear_top1(model: nn.Module, data: datasets.Data, preprocess) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The linear protocol's top-1 (%) of ``model``'s features on the full splits, and those features."""
    x, xt = features(model.eval(), data.train, preprocess), features(model, data.test, preprocess)
    return probe.linear_probe(x, data.train_labels, xt, data.test_labels)["top1"], x, xt


def measure_linear(run: lineage.Run, data: datasets.Data) -> dict[str, float]:
    """The linear protocol's top-1 of the run's exported model: the papers' measure of their claims."""
    method, preprocess = trained_method(run, data)
    return {"linear": linear_top1(method.export(), data, preprocess)[0]}


def linear_reading(run: lineage.Run, data: datasets.Data) -> float | None:
    """The linear top-1 of the run's export, kept as the head readings are. A SimCLR run's is its head
    reading's (h is the export), taken with it."""
    if run.method == "simclr":
        head = before_and_after_head(run, data)
        return head and head["linear"][BEFORE]
    reading = kept_reading(run, "linear", ("linear",), lambda: measure_linear(run, data))
    return reading and reading["linear"]


def measure_head(run: lineage.Run, data: datasets.Data) -> dict[str, dict[str, float]]:
    """Top-1 (%) of h = f(x) (the encoder, what SimCLR exports) and of z = g(h) (the projection head's output),
    from the finished run's last checkpoint, on the full splits: the lineage's kNN (k=200, T=0.07, on the
    l2-normalised features) and the linear protocol (``train.probe``), which is how the paper's Fig. 8
    compares them."""
    method, preprocess = trained_method(run, data)
    out = {protocol: {} for protocol in PROTOCOLS}
    for label, model in {BEFORE: method.export(), AFTER: nn.Sequential(method.export(), method.head)}.items():
        out["linear"][label], x, xt = linear_top1(model, data, preprocess)
        out["knn"][label] = knn_accuracy(F.normalize(x, dim=1), data.train_labels, F.normalize(xt, dim=1),
                                         data.test_labels)
    return out


def before_and_after_head(run: lineage.Run, data: datasets.Data) -> dict[str, dict[str, float]] | None:
    """The top-1 of h and z by each protocol for the run's record, kept (:func:`kept_reading`)."""
    return kept_reading(run, "head", tuple(PROTOCOLS), lambda: measure_head(run, data))


# --- report ---------------------------------------------------------------------------------------------


def plot(claim: Claim, results: list[lineage.Result], path: Path, linear: list[float | None] | None = None) -> Path:
    """Each variant's kNN monitor per epoch (left) and its final full-test-set kNN and linear top-1 (where read)
    against the value (right)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [claim.value(res.run) for res in results]
    fig, (curves, final) = plt.subplots(1, 2, figsize=(10, 3.6))
    for value, res in zip(values, results):
        epochs, _, knn = zip(*res.curve)
        curves.plot(epochs, knn, marker="o", label=f"{claim.symbol} = {value}")
    curves.set(xlabel="epoch", ylabel="kNN top-1 (%), monitor subset",
               xticks=sorted({e for res in results for e, _, _ in res.curve}))
    curves.legend(fontsize=8)
    final.plot(range(len(values)), [res.knn for res in results], marker="o", label="kNN")
    if linear and None not in linear:
        final.plot(range(len(values)), linear, marker="s", label="linear")
        final.legend(fontsize=8)
    final.set_xticks(range(len(values)), [str(v) for v in values])
    final.set(xlabel=claim.symbol, ylabel="top-1 (%), full test set")
    fig.suptitle(claim.says)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def verdict(claim: Claim, results: list[lineage.Result], scores: list[float] | None = None,
            measure: str = "kNN") -> str:
    """Whether the full sweep (in order of value) shows the ordering the claim predicts by ``scores`` (default: each
    run's kNN), named ``measure``, with the numbers: "rises" or "falls", up or down at every step; "fails", the
    lowest value below every other by the gap to the next."""
    value = [f"{claim.symbol} = {claim.value(res.run)}" for res in results]
    scores = scores if scores is not None else [res.knn for res in results]
    if claim.predicts == "fails":
        gap = min(scores[1:]) - scores[0]
        if gap > 0:
            return f"As the paper: {value[0]} trails every other value, by {gap:.2f} points or more."
        return f"Not as the paper here: {value[0]} ({scores[0]:.2f}) is not below every other value."
    up = claim.predicts == "rises"
    wrong = [f"from {value[i]} to {value[i + 1]} ({scores[i]:.2f} to {scores[i + 1]:.2f})"
             for i in range(len(scores) - 1) if (scores[i + 1] <= scores[i] if up else scores[i + 1] >= scores[i])]
    way = "rises" if up else "falls"
    if not wrong:
        order = (" < " if up else " > ").join(f"{k:.2f}" for k in scores)
        return f"As the paper: {measure} {way} with {claim.symbol} at every step ({order})."
    return f"Not as the paper here: {measure} does not {way[:-1]} {'; nor '.join(wrong)}."


def claim_text(name: str, claim: Claim, results: list[lineage.Result], missing: list[lineage.Run],
               figure: Path | None, linear: list[float | None] | None = None) -> str:
    """``linear``: each finished run's linear top-1, None where it is not read (its checkpoint is on another
    machine and no reading is kept)."""
    command = f"`python -m bench.claims --claims {name} --train --skip-trained`"
    if not results:
        return f"\n**{claim.says}.** Not yet measured: {command}.\n"
    linear = linear or [None] * len(results)
    rows = "".join(f"| {claim.value(res.run)} | {res.knn:.2f} | "
                   f"{'-' if top1 is None else f'{top1:.2f}'} | {res.bare_epochs:.1f} |\n"
                   for res, top1 in zip(results, linear, strict=True))
    held = "".join(f", {symbol} = {value}" for _, symbol, value in claim.base)
    text = (f"\n**{claim.says}.** {lineage.display(claim.method)}'s `fmnist` preset{held} with {claim.symbol} varied:\n\n"
            f"| {claim.symbol} | kNN top-1 (%) | linear top-1 (%) | bare epochs |\n|---|---|---|---|\n{rows}")
    if missing:
        values = ", ".join(str(claim.value(run)) for run in missing)
        text += f"\nNot yet measured: {claim.symbol} = {values} ({command}); until then this is a partial sweep.\n"
    else:
        text += f"\n- kNN: {verdict(claim, results)}\n"
        if None not in linear:
            text += f"- Linear, the paper's measure: {verdict(claim, results, linear, 'linear top-1')}\n"
        else:
            text += "- Linear, the paper's measure: not read for every run (their checkpoints are not on this machine).\n"
    return text + (f"\n![{name}]({lineage.link(figure)})\n" if figure else "")


def head_verdict(measured: dict[float, dict[str, dict[str, float]]], protocol: str) -> str:
    """Whether h beats z by ``protocol`` in every run measured, with each run's margin."""
    gaps = {t: read[protocol][BEFORE] - read[protocol][AFTER] for t, read in sorted(measured.items())}
    each = "; ".join(f"T = {t}: {gap:+.2f} points" for t, gap in gaps.items())
    name = PROTOCOLS[protocol]
    if all(gap > 0 for gap in gaps.values()):
        return f"{name}: as the paper, h beats z in every run (h - z: {each})."
    return f"{name}: not as the paper in every run, h - z is {each}."


def head_text(measured: dict[float, dict[str, dict[str, float]]]) -> str:
    """``measured``: each SimCLR run's T and the top-1 of its h and z by each protocol (none yet: not measured)."""
    says = "SimCLR (Sec. 4.2, Fig. 8): the representation before the projection head is much better than after it"
    if not measured:
        return f"\n**{says}.** Not yet measured: it reads the lineage's SimCLR run (`python -m bench.knn_fmnist`).\n"
    rows = "".join(f"| {t} | " + " | ".join(f"{read[p][BEFORE]:.2f} | {read[p][AFTER]:.2f}" for p in PROTOCOLS) + " |\n"
                   for t, read in sorted(measured.items()))
    header = " | ".join(f"{name} h | {name} z" for name in PROTOCOLS.values())
    verdicts = "\n".join(f"- {head_verdict(measured, p)}" for p in PROTOCOLS)
    return (f"\n**{says}.** The lineage's SimCLR `fmnist` run and the temperature claim's, top-1 (%) of h = f(x),\n"
            f"before the head (the export), and z = g(h), after it, on the full splits: kNN as everywhere here, and\n"
            f"the linear protocol (`train.probe`: logistic regression on the frozen features), the paper's measure:\n\n"
            f"| T | {header} |\n|---|---|---|---|---|\n{rows}\n{verdicts}\n")


def simclr_runs(scale: lineage.Scale) -> list[lineage.Run]:
    """The lineage's SimCLR run and the temperature claim's variants: the runs the head claim reads."""
    return [lineage.lineage_run("simclr", scale)] + CLAIMS["simclr-temperature"].variants(scale)


def arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.claims", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=parse_claims, default=list(CLAIMS), help=f"of {', '.join(CLAIMS)}")
    parser.add_argument("--train", action="store_true", help="train the claims' missing runs (each a full fmnist run)")
    parser.add_argument("--skip-trained", action="store_true", help="reuse each finished run of the current config")
    parser.add_argument("--no-write", action="store_true", help="print; leave BENCHMARKS.md and bench/figures alone")
    parser.add_argument("--quick", action="store_true", help="prove it runs: tiny runs, nothing written")
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = arguments(argv)
    scale = lineage.QUICK if args.quick else lineage.FULL
    write = not (args.no_write or args.quick)
    folder = lineage.FIGURES if write else lineage.ROOT / "runs" / f"bench-figures{'-' + scale.tag if scale.tag else ''}"
    data = datasets.load("fashion-mnist", lineage.BARE.image_size, scale.subset)
    clock = lineage.BareClock(data, scale) if args.train else None
    if clock:
        clock.measure()
    body = ""
    for name in args.claims:
        claim = CLAIMS[name]
        results, missing = claim_results(claim, scale, args.train, args.skip_trained or not args.train, clock)
        linear = [linear_reading(res.run, data) for res in results]
        figure = (plot(claim, results, folder / f"claim_{name.replace('-', '_')}.png", linear)
                  if len(results) > 1 else None)
        body += claim_text(name, claim, results, missing, figure, linear)
    measured = {run.cfg.method["temperature"]: read for run in simclr_runs(scale)
                if (read := before_and_after_head(run, data))}
    body += head_text(measured)
    body = ("\n`python -m bench.claims`: each claim's runs are full `fmnist` runs (the lineage's protocol: kNN "
            "k=200, T=0.07 on the full test set; bare epochs as there), each also read by the linear protocol "
            "(`train.probe`: logistic regression on the export's frozen features, the penalty chosen on a held-out "
            "tenth of the training split), which is how the papers measure these claims. Each value is one run of "
            "one seed: the monitor's curves (each figure's left panel, a 10k/2.5k subset) show how much an ordering moves from one "
            "epoch to the next, so a gap of a few tenths is not a result on its own.\n" + body)
    print(body)
    if write:
        write_section(TITLE, body)
    return body


if __name__ == "__main__":
    main()
