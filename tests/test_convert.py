"""Converting the authors' released layout gives the same features as their weights."""
import sys
import types

import pytest
import timm
import torch

import zoo
from zoo.convert import convert


def lemniscate_file(path, arch="resnet50"):
    """A checkpoint laid out like lemniscate.pytorch's release: DataParallel keys, fc 2048->128,
    and a pickled object of the authors' own code (NCEAverage) that we cannot import."""
    torch.manual_seed(0)
    source = timm.create_model(arch, num_classes=128).eval()
    module = types.ModuleType("lib.NCEAverage")
    NCEAverage = type("NCEAverage", (torch.nn.Module,), {"__module__": "lib.NCEAverage"})
    module.NCEAverage = NCEAverage
    package = types.ModuleType("lib")
    package.NCEAverage = module
    sys.modules.update({"lib": package, "lib.NCEAverage": module})
    try:
        average = NCEAverage()
        average.register_buffer("memory", torch.randn(10, 128))
        torch.save({"epoch": 200, "arch": arch, "best_prec1": 42.0, "lemniscate": average,
                    "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    finally:
        del sys.modules["lib"], sys.modules["lib.NCEAverage"]
    source.reset_classifier(0)
    return source


def test_converted_lemniscate_checkpoint_gives_the_source_features(zoo_home, tmp_path):
    source = lemniscate_file(tmp_path / "lemniscate_resnet50.pth.tar")
    folder = convert("instdisc-r50", tmp_path / "lemniscate_resnet50.pth.tar")
    assert folder == zoo_home / "instdisc-r50"
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(zoo.load("instdisc-r50")(x), source(x), atol=1e-4)
    assert zoo.info("instdisc-r50")["mean"] == pytest.approx((0.485, 0.456, 0.406))


def test_wrong_architecture_names_the_keys(zoo_home, tmp_path):
    lemniscate_file(tmp_path / "r18.pth", arch="resnet18")
    with pytest.raises(zoo.ZooError, match=r"keys differ: .*missing from the file: layer1\.0\.bn3.*with other shapes"):
        convert("instdisc-r50", tmp_path / "r18.pth")


def test_unknown_converter_and_missing_file(zoo_home, tmp_path):
    with pytest.raises(zoo.ZooError, match="Did you mean 'instdisc-r50'"):
        convert("instdisc-r5", tmp_path / "x")
    with pytest.raises(zoo.ZooError, match="does not exist. Download"):
        convert("instdisc-r50", tmp_path / "missing.pth")
