"""BYOL's release (deepmind/deepmind-research, byol/): ``pretrain_res50x1.pkl``, a pickle of JAX/Haiku
trees, read by :mod:`zoo.haiku_pickle` without JAX, Haiku or dill.

byol/utils/checkpointing.py saves ``dill.dump(dict(experiment_state=..., step=..., rng=...), protocol=2)``,
``experiment_state`` being byol_experiment.py's ``_ByolExperimentState`` NamedTuple (online_params,
target_params, online_state, target_state, opt_state) with every array fetched to numpy. dill writes a
NamedTuple class as a call of ``dill._dill._create_namedtuple(name, fields, module)``; Haiku's parameter and
state mappings (``FlatMapping``, before August 2020 ``frozendict``) pickle as a call of their class with a
plain dict; a JAX DeviceArray pickles as a numpy array. Each of those globals is bound to an inert stand-in
below: a record of the fields, or the dict itself. Nothing of dill, Haiku, JAX or BYOL is imported.

The encoder is the *online* network's: the BYOL paper keeps only the online encoder f_theta at the end of
training and evaluates it (section 3.1), and the authors' eval_experiment.py loads
``checkpoint_data['experiment_state'].online_params`` and ``.online_state`` (lines 215-216).

Names (byol/utils/networks.py ``ResNetTorso``, Haiku's ``hk.nets.ResNet.BlockGroup`` / ``BlockV1``): the
encoder is the module ``res_net50`` (its class name in snake case), with ``initial_conv`` and
``initial_batchnorm``, then ``block_group_G/~/block_B/~/`` holding ``shortcut_conv`` / ``shortcut_batchnorm``
(first block of each group) and ``conv_I`` / ``batchnorm_I`` for I = 0, 1, 2, the stride on ``conv_1`` as in
timm. A Conv2D's ``w`` is HWIO and becomes OIHW; a BatchNorm's ``scale`` / ``offset`` (shape 1x1x1xC) become
weight / bias, and its moving statistics are the ``average`` of the state modules ``.../~/mean_ema`` and
``.../~/var_ema``. The projector, predictor and classifier, the target network and the optimizer state are dropped.

Haiku pads convolutions and the max pool the 'SAME' way (on even sizes, one more pixel after the input than
before), timm symmetrically: the release converts to ``resnet50_same`` (:mod:`zoo.architectures`), timm's
ResNet-50 with its strided layers padded as Haiku does, which gives JAX's features.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..convert import converter
from ..haiku_pickle import read as read_pickle
from ..registry import ENTRIES, ZooError

BLOCKS = (3, 4, 6, 3)  # ResNet-50
FIX = ("Fix: pass BYOL's pre-training checkpoint of the ResNet-50 (1x), pretrain_res50x1.pkl "
       "(`python -m zoo info byol-r50`).")


class Record(tuple):
    """Stands in for a NamedTuple of the authors' code (or of optax): its values, by position and, when the
    class is known here, by field name."""

    _fields: tuple[str, ...] = ()

    def __new__(cls, *values):
        return super().__new__(cls, values)

    def __getattr__(self, name):
        if name in type(self)._fields:
            return self[type(self)._fields.index(name)]
        raise AttributeError(name)


class ExperimentState(Record):
    """byol_experiment.py's ``_ByolExperimentState`` (lines 45-51)."""

    _fields = ("online_params", "target_params", "online_state", "target_state", "opt_state")


def create_namedtuple(name, fields, module=None, *rest) -> type:
    """Stands in for ``dill._dill._create_namedtuple``: the record class a pickled NamedTuple class becomes."""
    return ExperimentState if name == "_ByolExperimentState" else Record


def as_dict(mapping) -> dict:
    """Stands in for Haiku's immutable mappings, which pickle as a call of their class with a dict."""
    if not isinstance(mapping, dict):
        raise TypeError(f"a Haiku mapping pickled with a {type(mapping).__name__}, not a dict")
    return dict(mapping)


BYOL_ALLOWED = {
    "dill._dill._create_namedtuple": create_namedtuple,  # dill 0.3
    "dill.dill._create_namedtuple": create_namedtuple,  # dill 0.2
    "byol.byol_experiment._ByolExperimentState": ExperimentState,  # were NamedTuples pickled by reference
    "byol.utils.optimizers.ScaleByLarsState": Record,
    "byol.utils.optimizers.AddWeightDecayState": Record,
    "haiku._src.data_structures.FlatMapping": as_dict,
    "haiku._src.data_structures.frozendict": as_dict,
    "haiku._src.data_structures.FrozenDict": as_dict,
}


def read_release(path: Path) -> object:
    return read_pickle(path, BYOL_ALLOWED, ENTRIES["byol-r50"].release if "byol-r50" in ENTRIES else "")


def haiku_names() -> list[tuple[str, str, str]]:
    """(kind, Haiku module under the encoder, timm module) of a ResNet-50, kind "conv" or "bn"."""
    names = [("conv", "initial_conv", "conv1"), ("bn", "initial_batchnorm", "bn1")]
    for group, blocks in enumerate(BLOCKS):
        for block in range(blocks):
            haiku, timm_name = f"block_group_{group}/~/block_{block}/~/", f"layer{group + 1}.{block}."
            if block == 0:
                names += [("conv", haiku + "shortcut_conv", timm_name + "downsample.0"),
                          ("bn", haiku + "shortcut_batchnorm", timm_name + "downsample.1")]
            for i in range(3):
                names += [("conv", f"{haiku}conv_{i}", f"{timm_name}conv{i + 1}"),
                          ("bn", f"{haiku}batchnorm_{i}", f"{timm_name}bn{i + 1}")]
    return names


def online(raw: object) -> tuple[dict, dict]:
    """The online network's parameters and state in a loaded release (or in a dict holding them directly)."""
    state = raw.get("experiment_state", raw) if isinstance(raw, dict) else raw
    if isinstance(state, ExperimentState):
        params, bn_state = state.online_params, state.online_state
    elif isinstance(state, dict):
        params, bn_state = state.get("online_params"), state.get("online_state")
    else:
        params = bn_state = None
    if not (isinstance(params, dict) and isinstance(bn_state, dict)):
        found = f"keys {sorted(map(str, raw))[:8]}" if isinstance(raw, dict) else f"a {type(raw).__name__}"
        raise ZooError(f"expected BYOL's checkpoint, a dict whose experiment_state holds online_params and "
                       f"online_state; found {found}. {FIX}")
    return params, bn_state


def _array(tree: dict, module: str, leaf: str) -> np.ndarray:
    try:
        return np.asarray(tree[module][leaf])
    except (KeyError, TypeError):
        raise ZooError(f"the checkpoint lacks {module} / {leaf}, which BYOL's ResNet-50 has. {FIX}") from None


@converter("byol", load=read_release)
def byol(raw: object) -> dict:
    """BYOL's online encoder -> timm resnet50 keys."""
    params, bn_state = online(raw)
    stems = [key[:-len("initial_conv")] for key in params if key.endswith("/~/initial_conv")]
    if len(stems) != 1:
        raise ZooError(f"expected one ResNet encoder (a module .../~/initial_conv) in online_params; found "
                       f"{len(stems)} among {sorted(params)[:6]}. {FIX}")
    encoder = stems[0]
    convs = sorted(k for k in params if k.startswith(encoder) and "conv" in k.rsplit("/~/", 1)[-1])
    stem = _array(params, encoder + "initial_conv", "w")
    if stem.shape[-1] != 64 or len(convs) != 53:
        raise ZooError(f"the encoder {encoder.rstrip('/~')} has {len(convs)} convolutions and a stem of "
                       f"{stem.shape[-1]} channels, not a ResNet-50 (1x)'s 53 and 64. {FIX}")
    state = {}
    for kind, module, name in haiku_names():
        module = encoder + module
        if kind == "conv":
            kernel = _array(params, module, "w")
            state[f"{name}.weight"] = torch.from_numpy(np.array(kernel.transpose(3, 2, 0, 1), np.float32, order="C"))
            continue
        for leaf, value in (("weight", _array(params, module, "scale")), ("bias", _array(params, module, "offset")),
                            ("running_mean", _array(bn_state, module + "/~/mean_ema", "average")),
                            ("running_var", _array(bn_state, module + "/~/var_ema", "average"))):
            state[f"{name}.{leaf}"] = torch.from_numpy(np.array(value, dtype=np.float32).reshape(-1))
        state[f"{name}.num_batches_tracked"] = torch.tensor(0)
    return state
