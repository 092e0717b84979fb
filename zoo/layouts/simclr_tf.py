"""SimCLR v1 and v2's releases (google-research/simclr): TensorFlow checkpoints of a ResNet-50, read by
:mod:`zoo.tf_checkpoint` without TensorFlow.

Mapped release files (the registry's ``simclr-v1-r50`` and ``simclr-v2-r50``):

- v1: ``ResNet50_1x.zip`` (README, "Pre-trained models for SimCLRv1"), holding a TF1 checkpoint
  ``ResNet50_1x/model.ckpt-NNNN.{index,data-00000-of-00001}`` beside its hub module; pass the zip or the .index.
- v2: ``gs://simclr-checkpoints/simclrv2/pretrained/r50_1x_sk0/model.ckpt-250228.{index,data-00000-of-00001}``
  (README, "Pre-trained models for SimCLRv2"); pass the .index file.
- TF2 object-based checkpoints of tf2/ (``ckpt-N``: ``tf.train.Checkpoint(model=...)`` in tf2/run.py). The TF2
  release folders hold SavedModels, whose ``variables/variables.index`` names trainable variables by list position
  (``trainable_variables_list/N``): refused, naming the TF1 release to use.

TF1 (resnet.py): the base network is built under ``tf.variable_scope('base_model')`` (model.py) with
``tf.layers.conv2d`` and ``tf.layers.batch_normalization``, whose variables are numbered in creation order:
``base_model/conv2d[_K]/kernel`` and ``base_model/batch_normalization[_K]/{gamma,beta,moving_mean,
moving_variance}``. Every convolution is followed by its batch norm, so conv K and batch norm K pair up.
The order: the stem (conv 0); then in each bottleneck block, the projection shortcut first when the block
has one (the first of each group, ``bottleneck_block``), then its 1x1, 3x3 and 1x1 convolutions. A
plain ResNet-50 has 53 of each.

TF2 (tf2/resnet.py): object paths under ``model/resnet_model/``: ``initial_conv_relu_max_pool/0/conv2d``
and ``/2/bn`` (the stem), ``block_groups/G/layers/B/projection_layers/{0/conv2d,1/bn}`` (the shortcut) and
``.../conv_relu_dropblock_layers/{0,3,6}/conv2d`` with ``{1,4,7}/bn`` (DropBlock layers in between).

Kernels are HWIO (TensorFlow) and become OIHW; gamma, beta, moving_mean, moving_variance become a batch
norm's weight, bias, running_mean, running_var. Everything else is dropped: the heads (``head_supervised``,
``head_contrastive`` / ``_projection_head``, ``supervised_head``), optimizer slots (``.../Momentum``,
``.OPTIMIZER_SLOT``), ``global_step``, the EMA copy ``ema_model/`` and the v2 memory. Selective-kernel
(``r50_*_sk1``), wider (2x, 4x) and deeper checkpoints are refused with what was found.

SimCLR's max pool pads TensorFlow's 'SAME' way (on even sizes only after the input), timm's on both sides:
the releases convert to ``resnet50_samepool`` (:mod:`zoo.architectures`), timm's ResNet-50 with that max
pool, which gives TensorFlow's features. SimCLR's images are
RGB in [0, 1] with no mean/std normalization (data_util.py, ``convert_image_dtype`` then clipping); the model
expects the same.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..convert import converter
from ..registry import ZooError
from ..tf_checkpoint import list_variables, read_checkpoint

BLOCKS = (3, 4, 6, 3)  # ResNet-50
TF2_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
TF2_STEM = "initial_conv_relu_max_pool/0/conv2d/kernel"
BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
FIX = ("Fix: pass the release of the plain ResNet-50 (1x) the registry names (`python -m zoo info NAME`): "
       "SimCLR v1's ResNet50_1x.zip, or v2's r50_1x_sk0 model.ckpt-250228.index.")


def timm_pairs() -> list[tuple[str, str]]:
    """(convolution, batch norm) module names of timm's resnet50, in the order SimCLR creates them."""
    pairs = [("conv1", "bn1")]
    for group, blocks in enumerate(BLOCKS, start=1):
        for block in range(blocks):
            name = f"layer{group}.{block}"
            if block == 0:
                pairs.append((f"{name}.downsample.0", f"{name}.downsample.1"))
            pairs += [(f"{name}.conv{i}", f"{name}.bn{i}") for i in (1, 2, 3)]
    return pairs


def tf1_names() -> list[tuple[str, str]]:
    """(convolution, batch norm) variable scopes of resnet.py's base network, in creation order."""
    def numbered(layer: str, k: int) -> str:
        return f"base_model/{layer}" + (f"_{k}" if k else "")
    return [(numbered("conv2d", k), numbered("batch_normalization", k)) for k in range(len(timm_pairs()))]


def tf2_names(prefix: str) -> list[tuple[str, str]]:
    """(convolution, batch norm) object paths of tf2/resnet.py's Resnet under ``prefix``, in creation order."""
    names = [(f"{prefix}initial_conv_relu_max_pool/0/conv2d", f"{prefix}initial_conv_relu_max_pool/2/bn")]
    for group, blocks in enumerate(BLOCKS):
        for block in range(blocks):
            path = f"{prefix}block_groups/{group}/layers/{block}/"
            if block == 0:
                names.append((path + "projection_layers/0/conv2d", path + "projection_layers/1/bn"))
            names += [(f"{path}conv_relu_dropblock_layers/{i}/conv2d", f"{path}conv_relu_dropblock_layers/{i + 1}/bn")
                      for i in (0, 3, 6)]
    return names


def _wanted(name: str) -> bool:
    """Base-network variables (TF1 or TF2), without optimizer slots, EMA copies or heads."""
    if name.startswith("base_model/"):
        return not name.endswith("/Momentum") and "/ExponentialMovingAverage" not in name
    return name.endswith(TF2_SUFFIX) and "resnet_model/" in name and ".OPTIMIZER_SLOT" not in name


def read_release(path: Path) -> dict[str, np.ndarray]:
    """The base network's variables of a SimCLR checkpoint (TF2 paths without their attribute suffix)."""
    names = sorted(list_variables(path))
    if any(name.startswith("trainable_variables_list/") for name in names):
        raise ZooError(f"{path} is the variables file of a TF2 SavedModel (saved_model/variables/), which names its "
                       "trainable variables by their position in a list (trainable_variables_list/N), not by layer; "
                       f"this converter reads training checkpoints (model.ckpt-N or ckpt-N). {FIX}")
    variables = read_checkpoint(path, keep=_wanted)
    if not variables:
        raise ZooError(f"{path} holds no SimCLR base network (no base_model/ or resnet_model/ variables; it has "
                       f"{len(names)}: {', '.join(names[:6])}{', ...' if len(names) > 6 else ''}). {FIX}")
    return {k[:-len(TF2_SUFFIX)] if k.endswith(TF2_SUFFIX) else k: v for k, v in variables.items()}


def _layout(raw: dict) -> list[tuple[str, str]]:
    """The variable names of the 53 (convolution, batch norm) pairs in ``raw``, TF1 or TF2, or a ZooError
    saying which other network (selective kernels, another width or depth) the file holds."""
    if not isinstance(raw, dict) or not any(k.startswith("base_model/") or "resnet_model/" in k for k in raw):
        shown = ", ".join(sorted(map(str, raw))[:6]) if isinstance(raw, dict) else f"a {type(raw).__name__}"
        raise ZooError(f"expected SimCLR's base network (base_model/ or resnet_model/ variables); found "
                       f"{shown or 'nothing'}. {FIX}")
    stems = [k[:-len(TF2_STEM)] for k in raw if k.endswith(TF2_STEM)]
    if stems:
        if len(stems) > 1:
            raise ZooError(f"the checkpoint holds {len(stems)} ResNets ({', '.join(stems)}); expected one. {FIX}")
        prefix = stems[0]
        sk = sorted(k for k in raw if k.startswith(prefix) and re.search(r"/(conv2d_fixed_padding|conv2d_[01])/", k))
        if sk:
            raise ZooError(f"this is a selective-kernel (SK) SimCLR v2 checkpoint ({', '.join(sk[:3])}, ...), "
                           f"whose blocks this zoo's plain ResNet-50 does not have. {FIX}")
        names, convs = tf2_names(prefix), {k for k in raw if k.startswith(prefix) and k.endswith("conv2d/kernel")}
    else:
        names = tf1_names()
        convs = {k for k in raw if re.fullmatch(r"base_model/conv2d(_\d+)?/kernel", k)}
    stem = raw.get(names[0][0] + "/kernel")
    if stem is not None and stem.shape[:2] == (3, 3):
        raise ZooError(f"this is a selective-kernel (SK) SimCLR v2 checkpoint: {names[0][0]}/kernel is "
                       f"{list(stem.shape)}, the first of the three 3x3 stem convolutions of its ResNet-D stem, "
                       f"and its blocks have sk_conv2d's extra convolutions ({len(convs)} in all). {FIX}")
    if stem is not None and stem.shape[-1] != 64:
        raise ZooError(f"{names[0][0]}/kernel has {stem.shape[-1]} output channels: a {stem.shape[-1] // 64}x "
                       f"wide ResNet, not the 1x ResNet-50. {FIX}")
    if len(convs) != len(names):
        raise ZooError(f"the checkpoint has {len(convs)} base-network convolutions, not a ResNet-50's "
                       f"{len(names)} (another depth, or squeeze-and-excitation layers). {FIX}")
    return names


@converter("simclr", load=read_release)
@converter("simclrv2", load=read_release)
def simclr(raw: dict) -> dict:
    """SimCLR's base network -> timm resnet50 keys: HWIO kernels to OIHW, batch norms renamed."""
    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(array, dtype=np.float32, order="C"))

    state = {}
    for (tf_conv, tf_bn), (conv, bn) in zip(_layout(raw), timm_pairs()):
        try:
            state[f"{conv}.weight"] = tensor(raw[f"{tf_conv}/kernel"].transpose(3, 2, 0, 1))
            for tf_name, name in BN.items():
                state[f"{bn}.{name}"] = tensor(raw[f"{tf_bn}/{tf_name}"])
        except KeyError as missing:
            raise ZooError(f"the checkpoint lacks {missing.args[0]}, which SimCLR's ResNet-50 has. {FIX}") from None
        state[f"{bn}.num_batches_tracked"] = torch.tensor(0)
    return state
