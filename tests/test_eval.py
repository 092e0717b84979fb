"""Evaluating and fine-tuning any zoo model: the linear probe, the data a user points at, the kNN and linear
protocols end to end on a small folder, and fine-tuning that saves a model zoo.load and timm read back."""
import json

import pytest
import timm
import torch
from PIL import Image

import zoo
import zoo.checkpoint
from train import eval as evaluation
from train import eval_data, probe
from train.finetune import finetune

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def clusters(n, classes=5, dim=32, seed=0):
    """Gaussian clusters around 5 fixed centres: each seed draws other points of the same classes."""
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(100)) * 3
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    return centres[labels] + torch.randn(n, dim, generator=g), labels


def test_the_linear_probe_separates_separable_features():
    (x, y), (xt, yt) = clusters(1000), clusters(300, seed=1)
    assert probe.linear_probe(x, y, xt, yt, penalties=(0.0, 1e-3), steps=50)["top1"] > 95


def test_the_linear_probe_is_at_chance_on_shuffled_labels():
    (x, y), (xt, yt) = clusters(1000), clusters(300, seed=1)
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(2))]
    assert probe.linear_probe(x, shuffled, xt, yt, penalties=(0.0, 1e-3), steps=50)["top1"] < 35  # chance: 20


def image_folder(root, per_class=10, classes=COLOURS):
    """Two classes a network can tell apart at once: noisy red squares and noisy blue ones."""
    g = torch.Generator().manual_seed(0)
    for name, colour in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = (torch.tensor(colour).view(1, 1, 3) + torch.randint(-30, 30, (40, 40, 3), generator=g))
            Image.fromarray(pixels.clamp(0, 255).to(torch.uint8).numpy()).save(root / name / f"{i}.png")
    return root


def tiny_model(folder):
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=0, zero_init_last=False)
    config = dict(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3, crop_pct=1.0, interpolation="bilinear")
    return zoo.checkpoint.save(model, folder, data_config=config, card="# tiny\n",
                               model_args=dict(zero_init_last=False))


@pytest.mark.parametrize("make, problem", [
    (lambda root: root.mkdir(), "has no class sub-folders"),
    (lambda root: (root / "a").mkdir(parents=True) or (root / "b").mkdir(), "holds no images"),
    (lambda root: image_folder(root, classes={"red": COLOURS["red"]}), "holds a single class"),
])
def test_a_folder_that_cannot_be_evaluated_is_refused_with_the_problem_and_the_fix(tmp_path, make, problem):
    make(tmp_path / "data")
    with pytest.raises(eval_data.EvalDataError, match=problem) as error:
        eval_data.splits(str(tmp_path / "data"))
    assert "Fix:" in str(error.value)


def test_a_single_folder_is_split_by_a_seeded_fraction_without_overlap(tmp_path):
    root = image_folder(tmp_path / "data")
    first, again = eval_data.splits(str(root), 0.25, seed=3), eval_data.splits(str(root), 0.25, seed=3)
    assert len(first.test) == 5 and len(first.train) == 15
    assert first.test.indices == again.test.indices and not set(first.test.indices) & set(first.train.indices)
    assert first.classes == ["blue", "red"]


def test_knn_and_linear_on_a_folder_use_the_models_resolution_cache_features_and_write_json(
        tmp_path, zoo_home, monkeypatch):
    root, model = image_folder(tmp_path / "data"), tiny_model(tmp_path / "model")
    knn = evaluation.evaluate("knn", str(model), str(root), val_fraction=0.25)
    assert knn["resolution"] == 32 and knn["train_images"] == 15 and knn["test_images"] == 5
    assert knn["top1"] == 100.0  # red against blue, even for a random network
    assert len(list((zoo_home / ".features").glob("*.pt"))) == 1
    monkeypatch.setattr(eval_data, "extract", lambda *a, **k: pytest.fail("features were extracted twice"))
    linear = evaluation.evaluate("linear", str(model), str(root), val_fraction=0.25)
    assert linear["top1"] == 100.0
    results = json.loads((model / "eval.json").read_text())
    assert {f"knn:{root}", f"linear:{root}"} == set(results)


def test_fine_tuning_lowers_the_loss_and_saves_a_classifier_zoo_and_timm_load(tmp_path, zoo_home):
    root, model = image_folder(tmp_path / "data", per_class=16), tiny_model(tmp_path / "model")
    result = finetune(str(model), str(root), epochs=3, lr=1e-3, batch_size=8, warmup_epochs=0,
                      out=tmp_path / "tuned", val_fraction=0.25)
    assert result["last_loss"] < result["first_loss"]
    tuned = zoo.load(str(tmp_path / "tuned"))
    also = timm.create_model(f"local-dir:{tmp_path / 'tuned'}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert tuned(x).shape == (2, 2) and torch.allclose(tuned(x), also(x), atol=1e-6)
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert config["num_classes"] == 2 and config["label_names"] == ["blue", "red"]
    assert json.loads((tmp_path / "tuned" / "eval.json").read_text())[f"finetune:{root}"]["top1"] >= 0
