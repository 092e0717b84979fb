"""The checkpoint contract and zoo.load: what train writes is exactly what timm and zoo read."""
import dataclasses
import json

import pytest
import timm
import torch
from PIL import Image

import zoo
import zoo.__main__
from conftest import save_backbone
from zoo.registry import ENTRIES

x = torch.randn(4, 3, 32, 32)


def test_saved_checkpoint_gives_same_features_through_zoo_and_plain_timm(zoo_home):
    model = save_backbone(zoo_home / "instdisc-resnet18-test")
    expected = model(x)
    assert torch.allclose(zoo.load("instdisc-resnet18-test")(x), expected, atol=1e-5)
    plain = timm.create_model(f"local-dir:{zoo_home / 'instdisc-resnet18-test'}", pretrained=True).eval()
    assert torch.allclose(plain(x), expected, atol=1e-5)


def test_config_holds_this_models_preprocessing_not_a_stock_tag(zoo_home):
    save_backbone(zoo_home / "m")
    config = json.loads((zoo_home / "m" / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["num_classes"] == 0
    cfg = config["pretrained_cfg"]
    assert cfg["mean"] == [0.286] * 3 and cfg["input_size"] == [3, 32, 32] and cfg["crop_pct"] == 1.0
    assert not {"tag", "license", "origin_url", "paper_ids", "hf_hub_id"} & cfg.keys()


def test_save_refuses_a_model_with_a_classifier(tmp_path):
    with pytest.raises(ValueError, match="reset_classifier"):
        zoo.checkpoint.save(timm.create_model("resnet18", num_classes=5), tmp_path / "m",
                            data_config={}, card="")


def test_fresh_head_fine_tunes(zoo_home):
    save_backbone(zoo_home / "m")
    model = zoo.load("m", num_classes=10).train()
    assert model.num_classes == 10 and model(x).shape == (4, 10)
    torch.manual_seed(0)
    images, labels = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_list_and_info_show_local_and_registered_models(zoo_home):
    save_backbone(zoo_home / "my-model")
    assert {"my-model", "instdisc-r50"} <= set(zoo.list_models())
    info = zoo.info("my-model")
    assert info["weights"] == str(zoo_home / "my-model") and info["input_size"] == (3, 32, 32)
    assert "not on this machine" in zoo.info("instdisc-r50")["weights"]


def test_unknown_name_suggests_close_ones(zoo_home):
    with pytest.raises(zoo.ZooError, match="Did you mean 'instdisc-r50'"):
        zoo.load("instdisc-r05")


def test_registered_model_offline_says_what_was_tried_and_how_to_get_it(zoo_home):
    with pytest.raises(zoo.ZooError) as error:
        zoo.load("instdisc-r50")
    message = str(error.value)
    assert str(zoo_home / "instdisc-r50") in message and "HF_HUB_OFFLINE" in message
    assert "python -m zoo convert instdisc-r50 --src" in message


@pytest.mark.parametrize("revision", ["0123abc", ""])
def test_hub_downloads_are_pinned_to_the_revision_and_the_checkpoint_files(zoo_home, monkeypatch, revision):
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("not in the cache")
        return str(zoo_home / "downloaded")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setitem(ENTRIES, "instdisc-r50", dataclasses.replace(ENTRIES["instdisc-r50"], revision=revision))
    assert zoo.resolve("instdisc-r50") == zoo_home / "downloaded"
    pinned = dict(revision=revision or None, allow_patterns=["config.json", "model.safetensors", "README.md"])
    assert calls == [("contrastive-zoo/instdisc-r50", dict(local_files_only=True, **pinned)),
                     ("contrastive-zoo/instdisc-r50", pinned)]


def test_weights_that_do_not_match_the_config_name_the_differing_keys(zoo_home):
    save_backbone(zoo_home / "m")
    config_path = zoo_home / "m" / "config.json"
    config = json.loads(config_path.read_text())
    config["architecture"] = "resnet34"
    config_path.write_text(json.dumps(config))
    with pytest.raises(zoo.ZooError, match=r"missing from the file: layer1\.2\."):
        zoo.load("m")


def test_transforms_take_any_image_mode(zoo_home):
    save_backbone(zoo_home / "m")
    transform = zoo.transforms("m")
    for image in [Image.new("L", (28, 28)), Image.new("RGBA", (300, 120)), Image.new("P", (5, 9)),
                  Image.new("RGB", (64, 64))]:
        assert transform(image).shape == (3, 32, 32)


def test_cli_list_and_info(zoo_home, capsys):
    save_backbone(zoo_home / "my-model")
    assert zoo.__main__.main(["list"]) == 0
    assert "my-model" in capsys.readouterr().out
    assert zoo.__main__.main(["info", "nope-model"]) == 2
    assert "Unknown model" in capsys.readouterr().err
