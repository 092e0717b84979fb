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
    "swav": Paper(
        "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
        "Mathilde Caron, Ishan Misra, Julien Mairal, Priya Goyal, Piotr Bojanowski, Armand Joulin", 2020, "2006.09882"),
    "byol": Paper(
        "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
        "Jean-Bastien Grill, Florian Strub, Florent Altché, Corentin Tallec, Pierre H. Richemond, Elena Buchatskaya, "
        "Carl Doersch, Bernardo Avila Pires, Zhaohan Daniel Guo, Mohammad Gheshlaghi Azar, Bilal Piot, "
        "Koray Kavukcuoglu, Rémi Munos, Michal Valko", 2020, "2006.07733"),
    "simsiam": Paper(
        "Exploring Simple Siamese Representation Learning", "Xinlei Chen, Kaiming He", 2020, "2011.10566"),
    "mocov3": Paper(
        "An Empirical Study of Training Self-Supervised Vision Transformers",
        "Xinlei Chen, Saining Xie, Kaiming He", 2021, "2104.02057"),
    "dino": Paper(
        "Emerging Properties in Self-Supervised Vision Transformers",
        "Mathilde Caron, Hugo Touvron, Ishan Misra, Hervé Jégou, Julien Mairal, Piotr Bojanowski, Armand Joulin",
        2021, "2104.14294"),
}


# the lineage of the paper-reading series: 1 many ideas, 2 the champions, 3 no negatives, 4 Transformers
STAGES = {"instdisc": 1, "invaspread": 1, "cpc": 1, "cmc": 1, "moco": 2, "mocov2": 2, "simclr": 2, "simclrv2": 2,
          "swav": 3, "byol": 3, "simsiam": 3, "mocov3": 4, "dino": 4}
STAGE_NAMES = {1: "many ideas", 2: "the champions", 3: "no negatives", 4: "Transformers"}


# SimCLR's networks take RGB in [0, 1], unnormalised (data_util.py), centre-cropped at 87.5% with bicubic resizing
SIMCLR_INPUT = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bicubic")


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
    md5: str = ""  # the prefix of the release file's MD5 that the authors publish (MoCo's README), checked as well
    size: int = 0  # of the release file in bytes, when known
    model_args: dict = field(default_factory=dict)  # timm.create_model keyword arguments of the architecture
    preprocessing: dict = field(default_factory=dict)  # where the release differs from the ImageNet recipe

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
          release="https://github.com/zhirongw/lemniscate.pytorch (lemniscate_resnet50.pth.tar)",
          epochs=200, linear_top1=54.0,  # main.py's default epochs; the README's 46.8% is the file's kNN top-1
          top1_source="InstDisc paper, Table 2: linear SVM on ResNet-50 conv5 features (the lemniscate README "
                      "gives 46.8% kNN top-1 for the released file)"),
    Entry("instdisc-resnet18-fmnist", "instdisc", "resnet18", "fashion-mnist", "zoo",
          "InstDisc ResNet-18 trained by this zoo on Fashion-MNIST with the `fmnist` preset.",
          preset="fmnist"),
    # Stage 1: CMC's L/ab ResNet-50 ("resnet50v1": two ResNet-50s at half width, NCE, 4096 negatives, amp).
    # The README states neither its epochs nor its own top-1 (train_CMC.py's default is 240 epochs).
    Entry("cmc-r50", "cmc", "cmc_resnet50", "imagenet-1k", "authors",
          "CMC's L/ab two-stream ResNet-50 released by the authors (resnet50v1: each stream a ResNet-50 at half "
          "width, 64-channel stem), backbones only; features are the two streams' pooled features side by side.",
          release="https://www.dropbox.com/sh/5k4t77mt4011gyr/AABkBvKm2bGNNut0m6bLMK84a?dl=0 (CMC_resnet50v1.pth)",
          licence="BSD-2-Clause", model_args={"channels": (32, 64, 128, 256)}),
    # Stage 2: MoCo's README "Models" table (top-1 of the released file; MD5 prefixes, checked; no SHA-256).
    # The repository was relicensed from CC-BY-NC 4.0 to MIT on 2023-01-18 (LICENSE, commit 7397dfe);
    # its README's licence line was not updated.
    Entry("moco-v1-r50", "moco", "resnet50", "imagenet-1k", "authors",
          "MoCo v1 ResNet-50 released by the authors (200 epochs), the query encoder without its fc.",
          release="https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v1_200ep/moco_v1_200ep_pretrain.pth.tar",
          md5="b251726a", epochs=200, linear_top1=60.6,
          top1_source="MoCo README, Models table (https://github.com/facebookresearch/moco)",
          licence="MIT"),
    Entry("moco-v2-r50", "mocov2", "resnet50", "imagenet-1k", "authors",
          "MoCo v2 ResNet-50 released by the authors (200 epochs, MLP head, aug+, cosine), the query encoder "
          "without its MLP head.",
          release="https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_200ep/moco_v2_200ep_pretrain.pth.tar",
          md5="59fd9945", epochs=200, linear_top1=67.7,
          top1_source="MoCo README, Models table (https://github.com/facebookresearch/moco)",
          licence="MIT"),
    Entry("moco-v2-r50-800ep", "mocov2", "resnet50", "imagenet-1k", "authors",
          "MoCo v2 ResNet-50 released by the authors (800 epochs, MLP head, aug+, cosine), the query encoder "
          "without its MLP head.",
          release="https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",
          md5="a04e12f8", epochs=800, linear_top1=71.1,
          top1_source="MoCo README, Models table (https://github.com/facebookresearch/moco)",
          licence="MIT"),
    # SimCLR v1 and v2 (TensorFlow checkpoints, read by zoo/layouts/simclr_tf.py). The README gives no epochs for
    # the releases; the papers train these models for 1000 (v1, section 6) and 800 (v2) epochs.
    Entry("simclr-v1-r50", "simclr", "resnet50_samepool", "imagenet-1k", "authors",
          "SimCLR v1 ResNet-50 (1x) released by the authors (TensorFlow), the base network without the "
          "supervised linear head (the v1 release has no projection head).",
          release="https://storage.cloud.google.com/simclr-gcs/checkpoints/ResNet50_1x.zip",
          epochs=1000, linear_top1=69.1,
          top1_source="SimCLR README, pre-trained models for SimCLRv1 (https://github.com/google-research/simclr)",
          licence="Apache-2.0", preprocessing=SIMCLR_INPUT),
    Entry("simclr-v2-r50", "simclrv2", "resnet50_samepool", "imagenet-1k", "authors",
          "SimCLR v2 ResNet-50 (1x, no selective kernels) released by the authors (TensorFlow, r50_1x_sk0), the "
          "base network without projection or linear heads.",
          release="gs://simclr-checkpoints/simclrv2/pretrained/r50_1x_sk0",
          epochs=800, linear_top1=71.7,
          top1_source="SimCLR README, SimCLRv2 table: depth 50, width 1X, SK False, linear eval "
                      "(https://github.com/google-research/simclr)",
          licence="Apache-2.0", preprocessing=SIMCLR_INPUT),
    # Stage 3.
    Entry("swav-r50", "swav", "resnet50", "imagenet-1k", "authors",
          "SwAV ResNet-50 released by the authors (800 epochs, batch 4096, 2x224 + 6x96 multi-crop), without "
          "the projection head and prototypes.",
          release="https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar",
          epochs=800, linear_top1=75.3,
          top1_source="SwAV README, Model Zoo table (https://github.com/facebookresearch/swav)",
          licence="CC-BY-NC-4.0"),
    Entry("byol-r50", "byol", "resnet50_same", "imagenet-1k", "authors",
          "BYOL ResNet-50 (1x) released by the authors (JAX/Haiku), the online encoder without projector and "
          "predictor.",
          release="https://storage.googleapis.com/deepmind-byol/checkpoints/pretrain_res50x1.pkl",
          epochs=1000, linear_top1=74.3,
          top1_source="BYOL paper, Table 1 (the README says the released checkpoint evaluates to ~74.4%; "
                      "https://github.com/deepmind/deepmind-research/tree/master/byol)",
          licence="CC-BY-NC-4.0"),
    Entry("simsiam-r50", "simsiam", "resnet50", "imagenet-1k", "authors",
          "SimSiam ResNet-50 released by the authors (100 epochs, batch 512), the encoder without its "
          "projector.",
          release="https://dl.fbaipublicfiles.com/simsiam/models/100ep/pretrain/checkpoint_0099.pth.tar",
          epochs=100, linear_top1=68.1,
          top1_source="SimSiam README, Models and Logs table, batch 512 (https://github.com/facebookresearch/simsiam)",
          licence="CC-BY-NC-4.0"),
    # Stage 4. MoCo v3's ViTs are timm 0.4.9 VisionTransformers; its ViT-Small has 12 heads (README note 2).
    Entry("mocov3-r50", "mocov3", "resnet50", "imagenet-1k", "authors",
          "MoCo v3 ResNet-50 released by the authors (1000 epochs), the base encoder without its projector.",
          release="https://dl.fbaipublicfiles.com/moco-v3/r-50-1000ep/r-50-1000ep.pth.tar",
          epochs=1000, linear_top1=74.6,
          top1_source="MoCo v3 CONFIG.md, ResNet-50 models table (https://github.com/facebookresearch/moco-v3)",
          licence="CC-BY-NC-4.0"),
    Entry("mocov3-vit-s16", "mocov3", "vit_small_patch16_224", "imagenet-1k", "authors",
          "MoCo v3 ViT-Small/16 released by the authors (300 epochs; 12 heads, fixed 2-D sin-cos position "
          "embedding), the base encoder without its projector; features are the class token.",
          release="https://dl.fbaipublicfiles.com/moco-v3/vit-s-300ep/vit-s-300ep.pth.tar",
          epochs=300, linear_top1=73.2,
          top1_source="MoCo v3 CONFIG.md, ViT models table (https://github.com/facebookresearch/moco-v3)",
          licence="CC-BY-NC-4.0", model_args={"num_heads": 12}),
    Entry("mocov3-vit-b16", "mocov3", "vit_base_patch16_224", "imagenet-1k", "authors",
          "MoCo v3 ViT-Base/16 released by the authors (300 epochs; fixed 2-D sin-cos position embedding), the "
          "base encoder without its projector; features are the class token.",
          release="https://dl.fbaipublicfiles.com/moco-v3/vit-b-300ep/vit-b-300ep.pth.tar",
          epochs=300, linear_top1=76.7,
          top1_source="MoCo v3 CONFIG.md, ViT models table (https://github.com/facebookresearch/moco-v3)",
          licence="CC-BY-NC-4.0"),
    # DINO's README gives no epochs for its releases (they are in each model's args.txt, not read here).
    Entry("dino-vit-s16", "dino", "vit_small_patch16_224", "imagenet-1k", "authors",
          "DINO ViT-S/16 released by the authors, the teacher backbone; features are the class token.",
          release="https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
          linear_top1=77.0,
          top1_source="DINO README, Pretrained models table (https://github.com/facebookresearch/dino)",
          licence="Apache-2.0"),
    Entry("dino-vit-b16", "dino", "vit_base_patch16_224", "imagenet-1k", "authors",
          "DINO ViT-B/16 released by the authors, the teacher backbone; features are the class token (the "
          "authors' linear probe of ViT-B also averages the patch tokens).",
          release="https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
          linear_top1=78.2,
          top1_source="DINO README, Pretrained models table (https://github.com/facebookresearch/dino)",
          licence="Apache-2.0"),
    Entry("dino-r50", "dino", "resnet50", "imagenet-1k", "authors",
          "DINO ResNet-50 released by the authors, the teacher backbone.",
          release="https://dl.fbaipublicfiles.com/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth",
          linear_top1=75.3,
          top1_source="DINO README, Pretrained models table (https://github.com/facebookresearch/dino)",
          licence="Apache-2.0"),
]}


def suggest(name: str, candidates) -> str:
    """A sentence naming the candidates closest to ``name``, or listing what exists."""
    candidates = sorted(set(candidates))
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    if close:
        return "Did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "Known models: " + ", ".join(candidates) + " (see `python -m zoo list`)."
