"""The registry: every named model of the zoo, what it is and where its weights live.

An entry is metadata only; weights are found by :mod:`zoo.resolve`. Models that a
user trains and exports land in the local zoo folder and are listed beside these.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

HUB_ORG = "contrastive-zoo"


class ZooError(LookupError):
    """A problem a user can fix; the message says what went wrong and how to fix it."""


@dataclass(frozen=True)
class Paper:
    title: str
    authors: str
    year: int
    arxiv: str

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}"


PAPERS = {
    "instdisc": Paper(
        "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
        "Zhirong Wu, Yuanjun Xiong, Stella X. Yu, Dahua Lin", 2018, "1805.01978"),
    "invaspread": Paper(
        "Unsupervised Embedding Learning via Invariant and Spreading Instance Feature",
        "Mang Ye, Xu Zhang, Pong C. Yuen, Shih-Fu Chang", 2019, "1904.03436"),
    "cpc": Paper(
        "Representation Learning with Contrastive Predictive Coding",
        "Aaron van den Oord, Yazhe Li, Oriol Vinyals", 2018, "1807.03748"),
    "cmc": Paper(
        "Contrastive Multiview Coding", "Yonglong Tian, Dilip Krishnan, Phillip Isola", 2019, "1906.05849"),
    "moco": Paper(
        "Momentum Contrast for Unsupervised Visual Representation Learning",
        "Kaiming He, Haoqi Fan, Yuxin Wu, Saining Xie, Ross Girshick", 2020, "1911.05722"),
    "mocov2": Paper(
        "Improved Baselines with Momentum Contrastive Learning",
        "Xinlei Chen, Haoqi Fan, Ross Girshick, Kaiming He", 2020, "2003.04297"),
    "simclr": Paper(
        "A Simple Framework for Contrastive Learning of Visual Representations",
        "Ting Chen, Simon Kornblith, Mohammad Norouzi, Geoffrey Hinton", 2020, "2002.05709"),
    "simclrv2": Paper(
        "Big Self-Supervised Models are Strong Semi-Supervised Learners",
        "Ting Chen, Simon Kornblith, Kevin Swersky, Mohammad Norouzi, Geoffrey Hinton", 2020, "2006.10029"),
}


# the lineage of the paper-reading series: 1 many ideas, 2 the champions, 3 no negatives, 4 Transformers
STAGES = {"instdisc": 1, "invaspread": 1, "cpc": 1, "cmc": 1, "moco": 2, "mocov2": 2, "simclr": 2, "simclrv2": 2,
          "swav": 3, "byol": 3, "simsiam": 3, "mocov3": 4, "dino": 4}
STAGE_NAMES = {1: "many ideas", 2: "the champions", 3: "no negatives", 4: "Transformers"}


@dataclass(frozen=True)
class Entry:
    """One published model: a timm backbone trained by ``method`` on ``dataset``."""

    name: str
    method: str
    arch: str
    dataset: str
    source: str  # "authors" (converted from their release) or "zoo" (trained by `python -m train`)
    description: str
    release: str = ""  # the URL of the authors' checkpoint, for `zoo convert NAME` (or a page to find it on)
    preset: str = ""  # the `python -m train` preset that makes it, for source "zoo"
    revision: str = ""  # the Hub commit (or tag) its weights are pinned to; "" is the main branch
    metrics: dict = field(default_factory=dict)
    epochs: int | None = None  # of pre-training
    linear_top1: float | None = None  # the paper's reported ImageNet linear-probe top-1 (%)
    top1_source: str = ""  # where that number is reported (paper table, authors' README)
    licence: str = ""  # of the weights, as the authors released them (e.g. "CC-BY-NC-4.0", "Apache-2.0")
    sha256: str = ""  # of the release file, when known: downloads are checked against it
    size: int = 0  # of the release file in bytes, when known
    model_args: dict = field(default_factory=dict)  # timm.create_model keyword arguments of the architecture

    @property
    def stage(self) -> int:
        return STAGES[self.method]

    @property
    def hub_id(self) -> str:
        return f"{HUB_ORG}/{self.name}"

    @property
    def paper(self) -> Paper:
        return PAPERS[self.method]


ENTRIES = {e.name: e for e in [
    Entry("instdisc-r50", "instdisc", "resnet50", "imagenet-1k", "authors",
          "InstDisc ResNet-50 released by the authors (lemniscate), backbone only.",
          release="https://github.com/zhirongw/lemniscate.pytorch (lemniscate_resnet50.pth.tar)"),
    Entry("instdisc-resnet18-fmnist", "instdisc", "resnet18", "fashion-mnist", "zoo",
          "InstDisc ResNet-18 trained by this zoo on Fashion-MNIST with the `fmnist` preset.",
          preset="fmnist"),
]}


def suggest(name: str, candidates) -> str:
    """A sentence naming the candidates closest to ``name``, or listing what exists."""
    candidates = sorted(set(candidates))
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    if close:
        return "Did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "Known models: " + ", ".join(candidates) + " (see `python -m zoo list`)."
