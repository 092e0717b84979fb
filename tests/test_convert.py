"""Converting the authors' released layout gives the same features as their weights; crafted files run nothing."""
import os
import pickle
import pickletools
import re
import sys
import types
from collections import OrderedDict
from pathlib import Path

import pytest
import timm
import torch
from torch.nn.backends import thnn

import zoo
from zoo.convert import convert

# lemniscate.pytorch's lib/ as far as its pickle is concerned: NCEAverage (a Module, the memory bank)
# holding an AliasMethod. Written as real files so that legacy torch.save stores their source, as it did.
FAKE_LIB = {
    "__init__.py": "",
    "alias_multinomial.py": (
        "import torch\n\n\n"
        "class AliasMethod(object):\n"
        "    def __init__(self, probs):\n"
        "        self.prob = probs / probs.sum() * len(probs)\n"
        "        self.alias = torch.zeros(len(probs), dtype=torch.long)\n"),
    "NCEAverage.py": (
        "import torch\nfrom torch import nn\n\nfrom .alias_multinomial import AliasMethod\n\n\n"
        "class NCEAverage(nn.Module):\n"
        "    def __init__(self, inputSize, outputSize, K, T=0.07, momentum=0.5):\n"
        "        super(NCEAverage, self).__init__()\n"
        "        self.nLem = outputSize\n"
        "        self.unigrams = torch.ones(self.nLem)\n"
        "        self.multinomial = AliasMethod(self.unigrams)\n"
        "        self.K = K\n"
        "        self.register_buffer('params', torch.tensor([K, T, -1, momentum]))\n"
        "        self.register_buffer('memory', torch.randn(outputSize, inputSize))\n"),
}
FORMATS = ["zip", "legacy", "python2"]  # python2: legacy, long strings as Python 2 pickled them (BINSTRING)


class OldBackend:
    """Pickles as the ``_backend`` of a PyTorch 0.3/0.4 Module did: a call of the backend getter."""

    def __reduce__(self):
        return thnn._get_thnn_function_backend, ()


def as_python2(path):
    """Rewrite a legacy file's long str pickles (BINUNICODE) as Python 2's BINSTRING: the same bytes."""
    data = bytearray(path.read_bytes())
    with open(path, "rb") as file:
        for _ in range(5):  # magic number, protocol, sys info, the object, storage keys
            for op, arg, pos in pickletools.genops(file):
                if op.name == "BINUNICODE" and len(arg.encode()) >= 256:
                    data[pos] = ord(pickle.BINSTRING)
    path.write_bytes(bytes(data))


def save(obj, path, fmt, **kwargs):
    torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip", **kwargs)
    if fmt == "python2":
        as_python2(path)


def lemniscate_file(path, arch="resnet50", fmt="zip"):
    """A checkpoint laid out like lemniscate.pytorch's release: epoch, arch, the DataParallel state dict
    (fc 2048->128), best_prec1, the optimizer state and the pickled NCEAverage of the authors' own code,
    which cannot be imported when converting."""
    torch.manual_seed(0)
    source = timm.create_model(arch, num_classes=128).eval()
    root = path.parent / "lemniscate-code"
    (root / "lib").mkdir(parents=True, exist_ok=True)
    for name, text in FAKE_LIB.items():
        (root / "lib" / name).write_text(text)
    sys.path.insert(0, str(root))
    try:
        from lib.NCEAverage import NCEAverage
        average = NCEAverage(128, 10, 4)
        average._backend = OldBackend()
        state = OrderedDict((f"module.{k}", v) for k, v in source.state_dict().items())
        state._metadata = OrderedDict({"": {"version": 1}})  # as PyTorch 0.4's state_dict() had
        optimizer = {"state": {}, "param_groups": [{"lr": 0.03, "momentum": 0.9, "params": list(range(len(state)))}]}
        save({"epoch": 200, "arch": arch, "state_dict": state, "lemniscate": average, "best_prec1": 42.0,
              "optimizer": optimizer}, path, fmt)
    finally:
        sys.path.remove(str(root))
        for name in ("lib", "lib.NCEAverage", "lib.alias_multinomial"):
            sys.modules.pop(name, None)
    source.reset_classifier(0)
    return source


class Dotted:
    """The global (module "torch", name "serialization.os.system"): pickle protocol 4 resolves the dots to os.system."""

    def __call__(self, *args):
        raise AssertionError("only pickled")


def write_dotted(pickler, obj):
    pickler.save("torch")
    pickler.save("serialization.os.system")
    pickler.write(pickle.STACK_GLOBAL)


class CraftingPickler(pickle._Pickler):
    """Writes a :class:`Dotted` as a crafted file would: the two strings, then STACK_GLOBAL."""

    dispatch = {**pickle._Pickler.dispatch, Dotted: write_dotted}


CRAFTING = types.SimpleNamespace(__name__="crafting", Pickler=CraftingPickler,
                                 dump=lambda obj, file, protocol: CraftingPickler(file, protocol).dump(obj))


class RunsCommand:
    """Unpickles as a call of ``function(command)``."""

    def __init__(self, function, command):
        self.function, self.command = function, command

    def __reduce__(self):
        return self.function, (self.command,)


@pytest.mark.parametrize("fmt", FORMATS)
def test_converted_lemniscate_checkpoint_gives_the_source_features(zoo_home, tmp_path, fmt):
    source = lemniscate_file(tmp_path / "lemniscate_resnet50.pth.tar", fmt=fmt)
    folder = convert("instdisc-r50", tmp_path / "lemniscate_resnet50.pth.tar")
    assert folder == zoo_home / "instdisc-r50"
    x = torch.randn(2, 3, 64, 64)  # small images: the features are compared, not the preprocessing
    with torch.no_grad():
        assert torch.allclose(zoo.load("instdisc-r50")(x), source(x), atol=1e-4)
    assert zoo.info("instdisc-r50")["mean"] == pytest.approx((0.485, 0.456, 0.406))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("global_name", ["posix.system", "torch.serialization.os.system"])
def test_a_file_calling_other_globals_is_refused_and_runs_nothing(zoo_home, tmp_path, fmt, global_name):
    marker = tmp_path / "ran"
    src = tmp_path / "crafted.pth.tar"
    if global_name == "posix.system":
        save({"state_dict": RunsCommand(os.system, f"touch {marker}")}, src, fmt)
    else:
        save({"state_dict": RunsCommand(Dotted(), f"touch {marker}")}, src, fmt,
             pickle_module=CRAFTING, pickle_protocol=4)
    with pytest.raises(zoo.ZooError, match="not a known release layout") as error:
        convert("instdisc-r50", src)
    assert global_name in str(error.value) and not marker.exists()
    assert not (zoo_home / "instdisc-r50").exists()


def test_no_unpickling_outside_the_weights_only_loader_anywhere_in_the_project():
    root = Path(__file__).resolve().parents[1]
    unsafe = re.compile(r"weights_only\s*=\s*False|pickle\.loads?\(|Unpickler\(")
    for path in root.glob("[!.]*/**/*.py"):
        assert not unsafe.search(path.read_text()), path


def test_wrong_architecture_names_the_keys(zoo_home, tmp_path):
    lemniscate_file(tmp_path / "r18.pth", arch="resnet18")
    with pytest.raises(zoo.ZooError, match=r"keys differ: .*missing from the file: layer1\.0\.bn3.*with other shapes"):
        convert("instdisc-r50", tmp_path / "r18.pth")


def test_unknown_converter_and_missing_file(zoo_home, tmp_path):
    with pytest.raises(zoo.ZooError, match="Did you mean 'instdisc-r50'"):
        convert("instdisc-r5", tmp_path / "x")
    with pytest.raises(zoo.ZooError, match="does not exist. Download"):
        convert("instdisc-r50", tmp_path / "missing.pth")
