"""Damaged or outdated banks and models are refused with the file to blame and the fix, never searched."""
from __future__ import annotations

import json
import os

import pytest
import safetensors.torch
import timm
import torch

import zoo
from app import bank as banks
from app import demo
from app.search import Searcher

from test_bank import make_folder, make_model


@pytest.fixture
def built(home):
    """A model "tiny" and its bank at home/bank."""
    make_model("tiny")
    return banks.save(banks.build("tiny", str(make_folder(home / "gallery")), progress=False), home / "bank")


def edit_config(name, **changes):
    path = zoo.resolve(name) / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_changed_model_args_make_a_bank_stale(built):
    edit_config("tiny", model_args={"global_pool": "max"})  # same weights, other features
    with pytest.raises(banks.StaleBankError, match="config.json"):
        banks.load(built, model="tiny")


def test_another_timm_version_makes_a_bank_stale(built, monkeypatch):
    monkeypatch.setattr(timm, "__version__", "0.0.1")
    with pytest.raises(banks.StaleBankError, match="timm version"):
        banks.load(built, model="tiny")


def test_a_rewrite_keeping_size_and_mtime_is_not_missed(built):
    weights = zoo.resolve("tiny") / "model.safetensors"
    before = weights.stat()
    retrained = make_model("other", seed=1) / "model.safetensors"
    assert retrained.stat().st_size == before.st_size
    weights.write_bytes(retrained.read_bytes())
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(banks.StaleBankError, match="weights"):
        banks.load(built, model="tiny")
    with pytest.raises(banks.StaleBankError):
        Searcher(banks.load(built))


def rewrite_features(folder, features):
    safetensors.torch.save_file({"features": features.contiguous()}, folder / banks.FEATURES)


def test_a_nan_row_is_refused_on_load(built):
    features = banks.load(built).features.clone()
    features[3] = float("nan")
    rewrite_features(built, features)
    with pytest.raises(banks.BankError, match=r"1 rows that are not finite unit vectors \(rows 3\).*rebuild"):
        banks.load(built)


def test_features_of_the_wrong_width_are_refused_on_load_not_at_search_time(built):
    bank = banks.load(built)
    rewrite_features(built, banks.normalise(torch.randn(len(bank.items), bank.features.shape[1] + 1)))
    with pytest.raises(banks.BankError, match="features.safetensors holds .*-d features, its meta.json says"):
        banks.load(built)
    meta = json.loads((built / banks.META).read_text())
    meta["dim"] += 1  # a consistent bank of the wrong width for its model: refused before any query
    (built / banks.META).write_text(json.dumps(meta))
    with pytest.raises(banks.BankError, match="Fix: rebuild the bank"):
        Searcher(banks.load(built))


def test_a_garbage_index_is_named_with_the_fix(home):
    make_model("tiny")
    bank = banks.build("tiny", str(make_folder(home / "gallery", per_label=30)), progress=False, index="hnsw")
    path = banks.save(bank, home / "bank")
    (path / "index.faiss").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(banks.BankError, match="index.faiss is damaged.*rebuild the bank"):
        banks.load(path)


def test_a_truncated_weights_file_or_unknown_architecture_is_a_zoo_error(home):
    folder = make_model("cut")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(zoo.ZooError, match="model.safetensors is damaged.*again"):
        zoo.load("cut")
    make_model("odd")
    edit_config("odd", architecture="resnet_that_does_not_exist")
    with pytest.raises(zoo.ZooError, match="config.json describes a model timm .* cannot build"):
        zoo.load("odd")


def test_banks_in_dot_folders_are_not_discovered(built):
    for name in ("tiny-gallery", ".tiny-gallery.old", ".tiny-gallery.x1y2"):
        banks.save(banks.load(built), zoo.zoo_home() / "banks" / name)
    assert [p.name for p in banks.discover()] == ["tiny-gallery"]


def test_the_demo_serves_every_sound_bank_and_lists_the_others(home, capsys):
    """One bank with a garbage index, one whose model's weights are truncated, one whose config names an
    unknown architecture: the demo still serves the sound bank and names each one it left out."""
    gallery = make_folder(home / "gallery", per_label=30)
    for name in ("good", "badindex", "cut", "odd"):
        make_model(name)
        bank = banks.build(name, str(gallery), progress=False, index="hnsw" if name == "badindex" else "exact")
        banks.save(bank, banks.default_path(name, "gallery"))
    (banks.default_path("badindex", "gallery") / "index.faiss").write_bytes(b"junk")
    weights = zoo.resolve("cut") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    edit_config("odd", architecture="resnet_that_does_not_exist")
    served, left_out = demo.servable([])
    assert [s.bank.model for s in served] == ["good"]
    assert len(left_out) == 3
    assert "index.faiss is damaged" in left_out[0] and "model.safetensors is damaged" in left_out[1] \
        and "cannot build" in left_out[2]
