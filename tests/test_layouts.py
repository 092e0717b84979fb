"""The authors' PyTorch release layouts (zoo/layouts/): each file, built here in its authors' layout (same keys,
nesting and non-tensor entries), converts to timm weights that give the features of the network in the authors'
own naming and computation; a file that differs is refused, naming what differs.

Files are written with tiny networks (the registry entry's ``model_args`` narrowed by monkeypatching), so the
whole module runs in seconds. The full-size architectures are checked once, without weights (meta tensors):
every entry's authors' key set and shapes map exactly onto its timm architecture, and once with weights that
torchvision's ResNet-50, the network of the MoCo, SimSiam, SwAV, MoCo v3 and DINO releases, is timm's.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
from collections import OrderedDict

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn
from torchvision.models import resnet50 as torchvision_resnet50
from torchvision.models.resnet import Bottleneck

import zoo
import zoo.layouts  # noqa: F401  (registers every layout's converter)
from zoo.checkpoint import check_state_dict
from zoo.convert import CONVERTERS, convert
from zoo.registry import ENTRIES
from zoo.streams import lab_views

TINY_RESNET = dict(layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=8)
TINY_CMC = dict(layers=(1, 1, 1, 1), channels=(8, 16, 32, 64))  # the authors' 64-channel stem kept
TINY_VIT = dict(embed_dim=48, depth=2)
# the heads of the authors' ViTs, as their code builds them (moco-v3 vits.py, dino vision_transformer.py)
AUTHORS_VIT = {"mocov3-vit-s16": (384, 12), "mocov3-vit-b16": (768, 12),
               "dino-vit-s16": (384, 6), "dino-vit-b16": (768, 12)}  # name -> (width, heads)
FOREIGN_FORMATS = {"simclr", "simclrv2", "byol"}  # TensorFlow / Haiku releases, converted in their own modules
PYTORCH_ENTRIES = sorted(n for n, e in ENTRIES.items()
                         if e.source == "authors" and e.method not in FOREIGN_FORMATS | {"instdisc"})


# ---- the networks in the authors' naming --------------------------------------------------------------------

def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorm affine parameters and running statistics away from 1/0 (and timm's zeroed last BN), so a
    mislaid key changes the features."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                for tensor, low, high in ((module.weight, 0.5, 1.5), (module.bias, -0.2, 0.2),
                                          (module.running_mean, -0.2, 0.2), (module.running_var, 0.5, 1.5)):
                    tensor.copy_(torch.empty(tensor.shape).uniform_(low, high, generator=generator))
    return model.eval()


def tiny_resnet(seed: int = 0) -> nn.Module:
    """A ResNet-50 of torchvision's names at tiny width (timm and torchvision name ResNets alike: see
    test_torchvision_resnet50_is_timm_resnet50), without classifier."""
    torch.manual_seed(seed)
    return randomize_norms(timm.create_model("resnet50", num_classes=0, **TINY_RESNET), seed)


class CMCResNet(nn.Module):
    """One stream of CMC's models/resnet.py ``ResNet(Bottleneck, layers, in_channel, width)``: a 64-channel
    7x7 stem, stages of ``int(64 * width)`` x 1, 2, 4, 8 planes (torchvision's Bottleneck, the same block),
    ``AvgPool2d(7)`` and the ``fc`` embedding; ``features`` is what its ``forward(x, layer=6)`` returns."""

    def __init__(self, layers, in_channel: int, width: float, low_dim: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        base, inplanes = int(64 * width), 64
        for stage, (blocks, stride) in enumerate(zip(layers, (1, 2, 2, 2))):
            planes = base * 2 ** stage
            downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
            stack = [Bottleneck(inplanes, planes, stride, downsample)]
            stack += [Bottleneck(planes * 4, planes) for _ in range(1, blocks)]
            setattr(self, f"layer{stage + 1}", nn.Sequential(*stack))
            inplanes = planes * 4
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.fc = nn.Linear(inplanes, low_dim)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def authors_vit_state(width: int, depth: int, device="cpu", seed: int = 0) -> dict:
    """The parameters of the authors' ViT/16 at 224 px (DINO's vision_transformer.VisionTransformer, MoCo v3's
    timm-0.4.9 VisionTransformer: the same names) with their head made an Identity, filled at random."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.05, offset=0.0):
        if device == "meta":
            return torch.empty(shape, device="meta")
        return torch.randn(shape, generator=generator) * scale + offset

    state = {"cls_token": rand(1, 1, width), "pos_embed": rand(1, 197, width),
             "patch_embed.proj.weight": rand(width, 3, 16, 16), "patch_embed.proj.bias": rand(width)}
    for i in range(depth):
        block = f"blocks.{i}."
        for norm in ("norm1", "norm2"):
            state[f"{block}{norm}.weight"], state[f"{block}{norm}.bias"] = rand(width, offset=1.0), rand(width)
        state[f"{block}attn.qkv.weight"], state[f"{block}attn.qkv.bias"] = rand(3 * width, width), rand(3 * width)
        state[f"{block}attn.proj.weight"], state[f"{block}attn.proj.bias"] = rand(width, width), rand(width)
        state[f"{block}mlp.fc1.weight"], state[f"{block}mlp.fc1.bias"] = rand(4 * width, width), rand(4 * width)
        state[f"{block}mlp.fc2.weight"], state[f"{block}mlp.fc2.bias"] = rand(width, 4 * width), rand(width)
    state["norm.weight"], state["norm.bias"] = rand(width, offset=1.0), rand(width)
    return state


def authors_vit_features(state: dict, images: torch.Tensor, heads: int) -> torch.Tensor:
    """The authors' ViT forward (DINO's prepare_tokens, Block and Attention; timm 0.4.9's for MoCo v3): patch
    tokens after the class token, the position table added, pre-norm blocks (LayerNorm eps 1e-6, exact GELU),
    the final norm, and the class token out."""
    tokens = F.conv2d(images, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=16)
    tokens = tokens.flatten(2).transpose(1, 2)
    batch, width = images.shape[0], tokens.shape[-1]
    x = torch.cat([state["cls_token"].expand(batch, -1, -1), tokens], dim=1) + state["pos_embed"]
    depth = len({key.split(".")[1] for key in state if key.startswith("blocks.")})

    def norm(x, name):
        return F.layer_norm(x, (width,), state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-6)

    for i in range(depth):
        p = f"blocks.{i}."
        qkv = F.linear(norm(x, p + "norm1"), state[p + "attn.qkv.weight"], state[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(batch, x.shape[1], 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        attention = (q @ k.transpose(-2, -1) * (width // heads) ** -0.5).softmax(dim=-1)
        mixed = (attention @ v).transpose(1, 2).reshape(batch, x.shape[1], width)
        x = x + F.linear(mixed, state[p + "attn.proj.weight"], state[p + "attn.proj.bias"])
        hidden = F.gelu(F.linear(norm(x, p + "norm2"), state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"]))
        x = x + F.linear(hidden, state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"])
    return norm(x, "norm")[:, 0]


# ---- the files, as the authors' scripts save them --------------------------------------------------------------

def rand_like_head(shapes: dict, device="cpu") -> dict:
    """Head parameters of these shapes: random, or without values on the meta device."""
    return {key: torch.empty(shape, device=device) if device == "meta" else torch.randn(shape)
            for key, shape in shapes.items()}


def other_copy(state: dict) -> dict:
    """A network of the same layout and other values: a key encoder, momentum encoder or DINO student, which a
    converter taking the wrong network would give the features of."""
    return {k: v + 1.0 if v.is_floating_point() and v.device.type != "meta" else v for k, v in state.items()}


def sgd_state(n: int) -> dict:
    return {"state": {}, "param_groups": [{"lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4,
                                           "params": list(range(n))}]}


def moco_release(backbone: dict, dim: int, mlp: bool, device="cpu") -> dict:
    """main_moco.py's checkpoint: encoder_q and encoder_k (a torchvision ResNet with the fc head, v2 the MLP
    fc.0 / fc.2), the queue and its pointer, under DistributedDataParallel's module."""
    head = ({"fc.0.weight": (dim, dim), "fc.0.bias": (dim,), "fc.2.weight": (128, dim), "fc.2.bias": (128,)}
            if mlp else {"fc.weight": (128, dim), "fc.bias": (128,)})
    state = OrderedDict()
    for encoder, network in (("encoder_q", backbone), ("encoder_k", other_copy(backbone))):
        for key, value in {**network, **rand_like_head(head, device)}.items():
            state[f"module.{encoder}.{key}"] = value
    state["module.queue"] = rand_like_head({"queue": (128, 16)}, device)["queue"]
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long, device=device)
    return {"epoch": 200, "arch": "resnet50", "state_dict": state, "optimizer": sgd_state(len(state))}


def simsiam_release(backbone: dict, dim: int, device="cpu") -> dict:
    """main_simsiam.py's checkpoint: the encoder with its 3-layer projector as fc, and the predictor."""
    head = {"fc.0.weight": (dim, dim), "fc.1.weight": (dim,), "fc.1.running_mean": (dim,), "fc.3.weight": (dim, dim),
            "fc.6.weight": (2048, dim), "fc.6.bias": (2048,), "fc.7.running_mean": (2048,)}
    state = OrderedDict((f"module.encoder.{k}", v) for k, v in {**backbone, **rand_like_head(head, device)}.items())
    predictor = {"0.weight": (512, 2048), "1.weight": (512,), "3.weight": (2048, 512), "3.bias": (2048,)}
    state.update((f"module.predictor.{k}", v) for k, v in rand_like_head(predictor, device).items())
    return {"epoch": 100, "arch": "resnet50", "state_dict": state, "optimizer": sgd_state(len(state))}


def swav_release(backbone: dict, dim: int, device="cpu") -> dict:
    """The released bare state dict: module. + the ResNet, the projection head and the prototypes."""
    head = {"projection_head.0.weight": (2048, dim), "projection_head.0.bias": (2048,),
            "projection_head.1.weight": (2048,), "projection_head.1.running_var": (2048,),
            "projection_head.3.weight": (128, 2048), "projection_head.3.bias": (128,), "prototypes.weight": (3000, 128)}
    return OrderedDict((f"module.{k}", v) for k, v in {**backbone, **rand_like_head(head, device)}.items())


def mocov3_release(backbone: dict, dim: int, vit: bool, device="cpu") -> dict:
    """main_moco.py's checkpoint: base and momentum encoders with their projector (fc for the ResNet, head for
    the ViT), the predictor, the optimizer and the AMP scaler."""
    name = "head" if vit else "fc"
    head = {f"{name}.0.weight": (4096, dim), f"{name}.1.weight": (4096,), f"{name}.1.running_mean": (4096,),
            f"{name}.3.weight": (256, 4096), f"{name}.4.running_var": (256,)}
    state = OrderedDict()
    for encoder, network in (("base_encoder", backbone), ("momentum_encoder", other_copy(backbone))):
        state.update((f"module.{encoder}.{k}", v) for k, v in {**network, **rand_like_head(head, device)}.items())
    state.update((f"module.predictor.{k}", v)
                 for k, v in rand_like_head({"0.weight": (4096, 256), "3.weight": (256, 4096)}, device).items())
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
              "_growth_tracker": 0}
    return {"epoch": 300, "arch": "vit_small" if vit else "resnet50", "state_dict": state,
            "optimizer": sgd_state(len(state)), "scaler": scaler}


def dino_full_release(teacher: dict, dim: int, ddp: bool, device="cpu") -> dict:
    """main_dino.py's checkpoint: student and teacher MultiCropWrappers (backbone. and the DINO head.), under
    module. where DistributedDataParallel wrapped them (the ResNet, for its BatchNorms), and the run's args."""
    head = {"head.mlp.0.weight": (2048, dim), "head.mlp.0.bias": (2048,), "head.last_layer.weight_g": (1024, 1),
            "head.last_layer.weight_v": (1024, 256)}  # out_dim 65536 in the release; smaller here
    wrap = "module." if ddp else ""

    def network(backbone):
        keys = {**{f"backbone.{k}": v for k, v in backbone.items()}, **rand_like_head(head, device)}
        return OrderedDict((wrap + k, v) for k, v in keys.items())

    return {"student": network(other_copy(teacher)), "teacher": network(teacher), "optimizer": sgd_state(4),
            "epoch": 100,
            "args": argparse.Namespace(arch="vit_small", patch_size=16, out_dim=1024, norm_last_layer=True),
            "dino_loss": {"center": torch.zeros(1, 1024, device=device)}}


def cmc_release(l_stream: dict, ab_stream: dict) -> dict:
    """train_CMC.py's checkpoint of MyResNetsCMC('resnet50v1') under apex amp O2: convolutions and the fc in
    float16, BatchNorm in float32, the run's opt, the NCE memory banks and the loss scale."""
    model = OrderedDict()
    for stream, state in (("l_to_ab", l_stream), ("ab_to_l", ab_stream)):
        for key, value in state.items():
            half = value.is_floating_point() and (key.startswith("fc.") or "conv" in key or "downsample.0" in key)
            model[f"encoder.module.{stream}.{key}"] = value.half() if half else value
    contrast = {"params": torch.tensor([4096.0, 0.07, -1.0, -1.0, 0.5]), "memory_l": torch.randn(10, 128),
                "memory_ab": torch.randn(10, 128)}
    return {"opt": argparse.Namespace(model="resnet50v1", amp=True, opt_level="O2", nce_k=4096), "model": model,
            "contrast": contrast, "optimizer": sgd_state(len(model)), "epoch": 240,
            "amp": {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 0}}}


def save(obj, path, fmt="zip"):
    torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip")
    return path


def tiny_entry(monkeypatch, name: str, tiny: dict):
    entry = ENTRIES[name]
    monkeypatch.setitem(ENTRIES, name, dataclasses.replace(entry, model_args={**entry.model_args, **tiny}))


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-4, rtol=1e-4)


# ---- one network per layout, its release file and its features -----------------------------------------------

IMAGES = torch.Generator().manual_seed(1)


def images(size: int = 64) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=IMAGES)


def resnet_case(name, release, monkeypatch, tmp_path, fmt, swav_stem=False):
    """A tiny torchvision-named ResNet saved by ``release``; its features against the converted model's."""
    tiny_entry(monkeypatch, name, TINY_RESNET)
    source = tiny_resnet()
    path = save(release({k: v.clone() for k, v in source.state_dict().items()}, source.num_features),
                tmp_path / "release.pth", fmt)
    convert(name, path)
    x = images()
    with torch.no_grad():
        if swav_stem:  # src/resnet50.py: ConstantPad2d(1) then the 7x7 conv with padding 2
            stem = F.conv2d(F.pad(x, (1, 1, 1, 1)), source.conv1.weight, stride=2, padding=2)
            y = source.maxpool(source.act1(source.bn1(stem)))
            expected = source.forward_head(source.layer4(source.layer3(source.layer2(source.layer1(y)))))
        else:
            expected = source(x)
        return zoo.load(name)(x), expected


def vit_case(name, release, monkeypatch, tmp_path, fmt):
    """A tiny ViT in the authors' naming saved by ``release``; the authors' forward against the converted model."""
    tiny_entry(monkeypatch, name, TINY_VIT)
    state = authors_vit_state(TINY_VIT["embed_dim"], TINY_VIT["depth"])
    convert(name, save(release(dict(state), TINY_VIT["embed_dim"]), tmp_path / "release.pth", fmt))
    x = images(224)
    with torch.no_grad():
        return zoo.load(name)(x), authors_vit_features(state, x, AUTHORS_VIT[name][1])


CASES = {  # case -> (entry, how to build and compare it)
    "moco-v1": ("moco-v1-r50", lambda mp, tmp, fmt: resnet_case(
        "moco-v1-r50", lambda s, d: moco_release(s, d, mlp=False), mp, tmp, fmt)),
    "moco-v2": ("moco-v2-r50-800ep", lambda mp, tmp, fmt: resnet_case(
        "moco-v2-r50-800ep", lambda s, d: moco_release(s, d, mlp=True), mp, tmp, fmt)),
    "simsiam": ("simsiam-r50", lambda mp, tmp, fmt: resnet_case("simsiam-r50", simsiam_release, mp, tmp, fmt)),
    "swav": ("swav-r50", lambda mp, tmp, fmt: resnet_case("swav-r50", swav_release, mp, tmp, fmt, swav_stem=True)),
    "mocov3-r50": ("mocov3-r50", lambda mp, tmp, fmt: resnet_case(
        "mocov3-r50", lambda s, d: mocov3_release(s, d, vit=False), mp, tmp, fmt)),
    "mocov3-vit": ("mocov3-vit-s16", lambda mp, tmp, fmt: vit_case(
        "mocov3-vit-s16", lambda s, d: mocov3_release(s, d, vit=True), mp, tmp, fmt)),
    "dino-vit": ("dino-vit-s16", lambda mp, tmp, fmt: vit_case("dino-vit-s16", lambda s, d: s, mp, tmp, fmt)),
    "dino-vit-full": ("dino-vit-s16", lambda mp, tmp, fmt: vit_case(
        "dino-vit-s16", lambda s, d: dino_full_release(s, d, ddp=False), mp, tmp, fmt)),
    "dino-r50": ("dino-r50", lambda mp, tmp, fmt: resnet_case("dino-r50", lambda s, d: s, mp, tmp, fmt)),
    "dino-r50-full": ("dino-r50", lambda mp, tmp, fmt: resnet_case(
        "dino-r50", lambda s, d: dino_full_release(s, d, ddp=True), mp, tmp, fmt)),
}
# the torch.save format of each release: PyTorch 1.4 (legacy) for MoCo v1/v2 and SwAV, 1.7+ (zip) for the rest
LEGACY = {"moco-v1", "moco-v2", "swav"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_converted_release_gives_the_authors_features(zoo_home, tmp_path, monkeypatch, case):
    _, run = CASES[case]
    converted, expected = run(monkeypatch, tmp_path, "legacy" if case in LEGACY else "zip")
    assert close(converted, expected), (converted - expected).abs().max()


def cmc_streams(layers, width, device="cpu", seed=0):
    torch.manual_seed(seed)
    with torch.device(device):
        first, second = CMCResNet(layers, 1, width), CMCResNet(layers, 2, width)
    if device != "meta":
        randomize_norms(first, seed), randomize_norms(second, seed + 1)
    return first, second


@pytest.mark.parametrize("fmt", ["legacy"])  # train_CMC.py ran on PyTorch 0.4-1.x: torch.save's legacy format
def test_converted_cmc_release_gives_both_streams_features_in_float32(zoo_home, tmp_path, monkeypatch, fmt):
    tiny_entry(monkeypatch, "cmc-r50", TINY_CMC)
    first, second = cmc_streams((1, 1, 1, 1), width=0.125)
    release = cmc_release(first.state_dict(), second.state_dict())
    assert not any(v.dtype == torch.float16 for v in CONVERTERS["cmc"].to_timm(release).values())
    # the reference streams compute with the float16-rounded weights the file holds
    for stream, name in ((first, "l_to_ab"), (second, "ab_to_l")):
        prefix = f"encoder.module.{name}."
        stream.load_state_dict({k[len(prefix):]: v.float() if v.is_floating_point() else v
                                for k, v in release["model"].items() if k.startswith(prefix)})
    convert("cmc-r50", save(release, tmp_path / "CMC_resnet50v1.pth", fmt))
    model = zoo.load("cmc-r50")
    assert all(v.dtype == torch.float32 for v in model.state_dict().values() if v.is_floating_point())
    rgb = torch.rand(2, 3, 224, 224, generator=IMAGES)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD))
    light, colour = lab_views(rgb)
    with torch.no_grad():
        expected = torch.cat([first.features(light), second.features(colour)], dim=1)
        assert close(model((rgb - mean) / std), expected)


# ---- refusals -----------------------------------------------------------------------------------------------

BACKBONE_KEY = {"resnet": "layer2.0.conv2.weight", "vit": "blocks.1.attn.qkv.weight"}
EXTRA_KEY = {"resnet": "layer2.0.conv9.weight", "vit": "blocks.1.attn.gate.weight"}


def edited(state: dict, kind: str) -> dict:
    """``state`` without a backbone key and with one the architecture lacks (same prefix as its neighbours)."""
    out = OrderedDict()
    for key, value in state.items():
        if key.endswith(BACKBONE_KEY[kind]):
            out[key[:-len(BACKBONE_KEY[kind])] + EXTRA_KEY[kind]] = value
        else:
            out[key] = value
    assert len(out) == len(state)
    return out


REFUSAL_CASES = {  # entry -> (kind, the authors' file from a backbone state dict and its width)
    "moco-v1-r50": ("resnet", lambda s, d: moco_release(s, d, mlp=False)),
    "simsiam-r50": ("resnet", simsiam_release),
    "swav-r50": ("resnet", swav_release),
    "mocov3-r50": ("resnet", lambda s, d: mocov3_release(s, d, vit=False)),
    "mocov3-vit-s16": ("vit", lambda s, d: mocov3_release(s, d, vit=True)),
    "dino-vit-s16": ("vit", lambda s, d: s),
    "dino-r50": ("resnet", lambda s, d: dino_full_release(s, d, ddp=True)),
}


@pytest.mark.parametrize("name", sorted(REFUSAL_CASES))
def test_a_missing_or_extra_key_is_refused_naming_it(zoo_home, tmp_path, monkeypatch, name):
    kind, release = REFUSAL_CASES[name]
    if kind == "vit":
        tiny_entry(monkeypatch, name, TINY_VIT)
        state, width = authors_vit_state(TINY_VIT["embed_dim"], TINY_VIT["depth"]), TINY_VIT["embed_dim"]
    else:
        tiny_entry(monkeypatch, name, TINY_RESNET)
        source = tiny_resnet()
        state, width = source.state_dict(), source.num_features
    path = save(release(edited(state, kind), width), tmp_path / "release.pth")
    with pytest.raises(zoo.ZooError) as error:
        convert(name, path)
    message = str(error.value)
    assert f"missing from the file: {BACKBONE_KEY[kind]}" in message
    assert f"not in the model: {EXTRA_KEY[kind]}" in message
    assert not (zoo_home / name).exists()


def test_a_cmc_file_missing_a_stream_key_is_refused_naming_it(zoo_home, tmp_path, monkeypatch):
    tiny_entry(monkeypatch, "cmc-r50", TINY_CMC)
    release = cmc_release(*(s.state_dict() for s in cmc_streams((1, 1, 1, 1), width=0.125)))
    del release["model"]["encoder.module.ab_to_l.layer3.0.bn2.running_var"]
    with pytest.raises(zoo.ZooError, match=r"missing from the file: ab\.layer3\.0\.bn2\.running_var"):
        convert("cmc-r50", save(release, tmp_path / "CMC_resnet50v1.pth"))


OTHER_LAYOUT = {  # entry -> a file in another layout, and what the refusal must say it expected and found
    "moco-v1-r50": (lambda s: s, "MoCo v1/v2 layout", "'conv1.weight'"),  # a bare (DINO-like) state dict
    "simsiam-r50": (lambda s: moco_release(s, 256, mlp=False), "SimSiam layout",
                    "'module.encoder_q.conv1.weight'"),
    "swav-r50": (lambda s: {"model": s, "epoch": 1}, "SwAV layout", "'model', 'epoch'"),
    "mocov3-r50": (lambda s: moco_release(s, 256, mlp=True), "MoCo v3 layout", "'module.encoder_q.conv1.weight'"),
    "dino-r50": (lambda s: moco_release(s, 256, mlp=False), "DINO release",
                 "'epoch', 'arch', 'state_dict', 'optimizer'"),
    "cmc-r50": (lambda s: {"model": {f"module.{k}": v for k, v in s.items()}, "epoch": 1}, "CMC layout",
                "'module.conv1.weight'"),
}


@pytest.mark.parametrize("name", sorted(OTHER_LAYOUT))
def test_a_file_in_another_layout_is_refused_saying_what_it_holds(zoo_home, tmp_path, name):
    make, expected, found = OTHER_LAYOUT[name]
    path = save(make(tiny_resnet().state_dict()), tmp_path / "release.pth")
    with pytest.raises(zoo.ZooError, match="expected") as error:
        convert(name, path)
    assert expected in str(error.value) and found in str(error.value), str(error.value)


# ---- the full-size architectures and the registry ---------------------------------------------------------------

def authors_release_meta(name: str) -> object:
    """``name``'s release at full size, without weights: its authors' network (torchvision ResNet-50, CMC's
    half-width streams, the authors' ViT) in their file layout, on the meta device."""
    entry = ENTRIES[name]
    if entry.method == "cmc":
        first, second = cmc_streams((3, 4, 6, 3), width=0.5, device="meta")
        model = OrderedDict()
        for stream, net in (("l_to_ab", first), ("ab_to_l", second)):
            model.update((f"encoder.module.{stream}.{k}", v) for k, v in net.state_dict().items())
        return {"opt": argparse.Namespace(), "model": model, "epoch": 240}
    if name in AUTHORS_VIT:
        width, vit = AUTHORS_VIT[name][0], True
        backbone = authors_vit_state(width, 12, device="meta")
    else:
        width, vit, backbone = 2048, False, torchvision_resnet50_meta()
    release = {"moco": lambda: moco_release(backbone, width, mlp=False, device="meta"),
               "mocov2": lambda: moco_release(backbone, width, mlp=True, device="meta"),
               "simsiam": lambda: simsiam_release(backbone, width, device="meta"),
               "swav": lambda: swav_release(backbone, width, device="meta"),
               "mocov3": lambda: mocov3_release(backbone, width, vit=vit, device="meta"),
               "dino": lambda: dict(backbone)}
    return release[entry.method]()


@functools.cache
def torchvision_resnet50_meta() -> dict:
    """torchvision's ResNet-50 keys and shapes, its fc made an Identity (as the authors' evaluation scripts and
    DINO's MultiCropWrapper make it)."""
    with torch.device("meta"):
        network = torchvision_resnet50()
    network.fc = nn.Identity()
    return network.state_dict()


@functools.cache
def timm_meta(arch: str, model_args: tuple) -> nn.Module:
    with torch.device("meta"):
        return timm.create_model(arch, num_classes=0, **dict(model_args))


@pytest.mark.parametrize("name", PYTORCH_ENTRIES)
def test_every_release_maps_onto_its_entrys_full_size_architecture(name):
    entry = ENTRIES[name]
    mapped = CONVERTERS[entry.method].to_timm(authors_release_meta(name))
    model = timm_meta(entry.arch, tuple(sorted(entry.model_args.items())))
    check_state_dict(model.state_dict(), mapped, f"{name}'s release")
    if name in AUTHORS_VIT:  # heads change no shape: the entry must say how many the authors' ViT has
        assert all(block.attn.num_heads == AUTHORS_VIT[name][1] for block in model.blocks)
        assert model.blocks[0].norm1.eps == 1e-6 and model.blocks[0].attn.qkv.bias is not None
        assert model.cls_token is not None and model.pos_embed.shape[1] == 197  # the class token's row included


def test_torchvision_resnet50_is_timm_resnet50():
    """The MoCo, SimSiam, SwAV, MoCo v3 and DINO releases are torchvision ResNet-50s: timm's resnet50 has the
    same keys and shapes (fc aside) and, with the same weights, the same features."""
    torch.manual_seed(0)
    reference = randomize_norms(torchvision_resnet50())
    reference.fc = nn.Identity()
    with torch.device("meta"):  # timm's own initialisation is replaced at once
        model = timm.create_model("resnet50", num_classes=0)
    check_state_dict(model.state_dict(), reference.state_dict(), "torchvision resnet50")
    model = model.to_empty(device="cpu").eval()
    model.load_state_dict(reference.state_dict())
    x = images()
    with torch.no_grad():
        assert close(model(x), reference(x))


def test_every_release_entry_has_its_converter():
    """PyTorch layouts here, TensorFlow (SimCLR) and Haiku (BYOL) in their own modules: each authors' entry."""
    authors = [n for n, e in ENTRIES.items() if e.source == "authors"]
    assert {ENTRIES[n].method for n in authors} >= FOREIGN_FORMATS | {"instdisc"}
    missing = [name for name in authors if ENTRIES[name].method not in CONVERTERS]
    assert not missing, f"authors' entries without a converter: {missing}"
