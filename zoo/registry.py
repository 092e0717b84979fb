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
}


@dataclass(frozen=True)
class Entry:
    """One published model: a timm backbone trained by ``method`` on ``dataset``."""

    name: str
    method: str
    arch: str
    dataset: str
    source: str  # "authors" (converted from their release) or "zoo" (trained by `python -m train`)
    description: str
    release: str = ""  # where the authors' checkpoint can be downloaded, for `zoo convert`
    preset: str = ""  # the `python -m train` preset that makes it, for source "zoo"
    revision: str = ""  # the Hub commit (or tag) its weights are pinned to; "" is the main branch
    metrics: dict = field(default_factory=dict)

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
