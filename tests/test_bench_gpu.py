"""The GPU benchmark's own checks, rehearsed on the CPU: a smoke run that trains, resumes, exports and loads
finds nothing wrong with a sound method and names what it finds wrong; the paper step gets batches shaped as
its loader would hand them."""
import pytest
import torch

import zoo.card
from bench import gpu
from train.methods import METHODS


def test_the_card_knn_is_read_from_the_model_index(tmp_path):
    text = zoo.card.render("m", "moco", "resnet18", "fashion-mnist", "d", {zoo.card.KNN_METRIC: 61.237})
    (tmp_path / "README.md").write_text(text)
    assert gpu.card_knn(tmp_path) == 61.24
    (tmp_path / "README.md").write_text(zoo.card.render("m", "moco", "resnet18", "fashion-mnist", "d"))
    with pytest.raises(ValueError, match="reports no kNN"):
        gpu.card_knn(tmp_path)


def test_smoke_resumes_exports_and_flags_a_card_that_disagrees_with_the_loaded_model(fashion_mnist, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo"))
    reported = gpu.card_knn
    monkeypatch.setattr(gpu, "card_knn", lambda folder: reported(folder) + 5)  # a card that lies
    result = gpu.smoke("cmc", "smoke", tmp_path, torch.device("cpu"), epochs=2)
    assert len(result["losses"]) == 2 and result["features"][0] == 64
    assert result["problems"] == [f"kNN of the loaded export {result['knn']:.2f} against the card's "
                                  f"{result['reported']:.2f}"]  # only the planted one
    assert abs(result["reported"] - 5 - result["knn"]) <= gpu.KNN_TOLERANCE


@pytest.mark.parametrize("name", ["moco", "invaspread", "cpc"])
def test_paper_batches_are_shaped_as_the_loader_hands_them(name):
    cfg = METHODS[name].PRESETS["paper"].override(batch_size=8)
    method = METHODS[name].build(cfg, 64, *gpu.IMAGENET_STATS)
    batch = gpu.synthetic_batch(method, cfg, 8, torch.device("cpu"))
    if cfg.dataset == "cifar10":  # in memory: whole images, cropped on the device
        assert batch.shape == (8, 3, 32, 32) and batch.dtype == torch.uint8
    else:  # files: one tensor per crop the method names, at the crop's size
        assert [tuple(crop.shape) for crop in batch] == [(8, 3, c.size, c.size) for c in method.crops]


def test_profile_step_times_only_the_steps_after_warm_up(monkeypatch):
    from bench import profile_step, throughput

    clock, calls = iter([0.0, 1.0, 5.0, 7.0, 10.0, 13.0]), []
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    seconds = profile_step.median_seconds(lambda: calls.append(1), steps=3, warmup=2)
    assert len(calls) == 5 and seconds == 2.0  # steps of 1, 2 and 3 s after two untimed ones


def test_a_failed_part_is_named_by_its_error_and_first_line():
    assert gpu.failure(ValueError("no batch fits\nmore detail")) == "**failed**: ValueError: no batch fits"
    assert gpu.failure(RuntimeError()) == "**failed**: RuntimeError: "


def test_the_long_part_trains_the_best_method_longer_in_its_own_section_and_rehearses_quick():
    from bench import knn_fmnist

    full = knn_fmnist.arguments(gpu.long_arguments(quick=False))
    assert (full.methods, full.epochs, full.quick, full.skip_trained) == (["instdisc"], 40, False, True)
    quick = knn_fmnist.arguments(gpu.long_arguments(quick=True))
    assert quick.quick and quick.epochs is None


def test_an_unknown_part_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit):
        gpu.main(["--quick", "--parts", "lightly,grahped"])
    assert "--parts: unknown part grahped; choose from" in capsys.readouterr().err
