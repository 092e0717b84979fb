"""Feature banks: exact top-k, round trip, stale banks refused, corrupt gallery images skipped."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
import zoo.checkpoint
from app import bank as banks
from app import gallery
from app.search import Searcher

DATA_CONFIG = dict(input_size=(3, 32, 32), mean=(0.286,) * 3, std=(0.353,) * 3, crop_pct=1.0, interpolation="bilinear")


def make_model(name: str, seed: int = 0, **data_config):
    """A tiny random timm backbone exported to $ZOO_HOME/name (a few hundred kB: tests stay fast)."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("test_resnet", num_classes=0)
    return zoo.checkpoint.save(model, zoo.zoo_home() / name, data_config={**DATA_CONFIG, **data_config},
                               card="# test")


def make_folder(root, per_label: int = 4, labels=("bag", "shoe")):
    """A gallery folder of distinct random images in label sub-folders, in several modes and sizes."""
    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "RGBA", "P"]
    for label in labels:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            size = (int(rng.integers(8, 80)), int(rng.integers(8, 80)))
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).convert(modes[i % len(modes)]).save(root / label / f"{i}.png")
    return root


def test_top_k_equals_brute_force():
    torch.manual_seed(0)
    features = banks.normalise(torch.randn(500, 32))
    queries = banks.normalise(torch.randn(7, 32))
    scores, indices = banks.top_k(features, queries, 10)
    brute = torch.tensor([[float(q @ f) for f in features] for q in queries])  # one dot product at a time
    expected = brute.argsort(dim=1, descending=True)[:, :10]
    assert torch.equal(indices, expected)
    assert torch.allclose(scores, brute.gather(1, expected), atol=1e-5)
    assert banks.top_k(features, queries[0], 9999)[1].shape == (1, 500)  # k beyond the gallery: all of it


def clustered(count: int, dim: int = 32, clusters: int = 50, seed: int = 0) -> torch.Tensor:
    """Unit vectors around a few centres, like real image features (uniform noise is no ANN's use case)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=generator)
    labels = torch.randint(clusters, (count,), generator=generator)
    return banks.normalise(centres[labels] + 0.3 * torch.randn(count, dim, generator=generator))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_finds_the_exact_neighbours_and_round_trips(home, kind):
    features = clustered(4000)
    queries = clustered(50, seed=1)
    bank = banks.Bank(features, [{"source": "x", "ref": str(i), "label": None} for i in range(4000)],
                      {"format": banks.FORMAT, "model": "m", "weights_sha256": "0", "dim": 32}).with_index(kind)
    assert bank.index_kind == kind and bank.index is not None
    _, exact = banks.top_k(features, queries, 10)
    found = [[hit["index"] for hit in row] for row in bank.search(queries, 10)]
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact.tolist())])
    assert recall > 0.9, recall  # an index that ignored the data would score ~10 / 4000
    scores = [[hit["score"] for hit in row] for row in bank.search(queries, 10)]
    assert all(row == sorted(row, reverse=True) for row in scores)
    loaded = banks.load(banks.save(bank, home / "bank"))
    assert loaded.meta["index"] == bank.meta["index"]
    assert [[hit["index"] for hit in row] for row in loaded.search(queries, 10)] == found
    (home / "bank" / "index.faiss").unlink()
    with pytest.raises(banks.BankError, match="index.faiss"):
        banks.load(home / "bank")


def test_auto_index_is_exact_for_small_banks_and_hnsw_for_large():
    from app import index

    assert index.choose(10_000) == "exact"
    assert index.choose(index.APPROXIMATE_FROM) == "hnsw"
    with pytest.raises(ValueError, match="choose from"):
        index.choose(10, "annoy")


def test_bank_round_trips_and_finds_its_own_images(home):
    make_model("tiny")
    folder = make_folder(home / "gallery")
    built = banks.build("tiny", str(folder), batch_size=3, progress=False)
    path = banks.save(built, home / "bank")
    loaded = banks.load(path, model="tiny")
    assert torch.equal(loaded.features, built.features)
    assert loaded.items == built.items and loaded.meta == built.meta
    assert loaded.meta["weights_sha256"] == banks.weights_sha256(zoo.resolve("tiny"))
    assert torch.allclose(loaded.features.norm(dim=1), torch.ones(8))
    assert {item["label"] for item in loaded.items} == {"bag", "shoe"}
    searcher = Searcher(loaded)
    for row, item in enumerate(loaded.items):
        hits = searcher.search(Image.open(item["ref"]), k=3)
        assert len(hits) == 3 and hits[0]["score"] > 0.999
        assert row in [h["index"] for h in hits if h["score"] > 0.999]
        assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_stale_bank_is_refused(home):
    make_model("tiny", seed=0)
    path = banks.save(banks.build("tiny", str(make_folder(home / "gallery")), progress=False), home / "bank")
    make_model("tiny", seed=1)  # retrained: same name, other weights
    with pytest.raises(banks.StaleBankError, match="Stale bank.*rebuild it with `python -m app.bank build"):
        banks.load(path, model="tiny")
    bank = banks.load(path)  # reading it is fine; searching it with this model is not
    with pytest.raises(banks.StaleBankError):
        Searcher(bank)


def test_changed_preprocessing_makes_a_bank_stale(home):
    make_model("tiny", seed=0)
    path = banks.save(banks.build("tiny", str(make_folder(home / "gallery")), progress=False), home / "bank")
    config = zoo.checkpoint.read_config(zoo.resolve("tiny"))
    config["pretrained_cfg"]["mean"] = [0.5] * 3
    (zoo.resolve("tiny") / "config.json").write_text(json.dumps(config))
    with pytest.raises(banks.StaleBankError, match="preprocessing"):
        banks.load(path, model="tiny")


def test_corrupt_images_are_skipped_and_reported(home, capsys):
    make_model("tiny")
    folder = make_folder(home / "gallery", per_label=2)
    (folder / "bag" / "junk.png").write_text("not an image")
    good = (folder / "shoe" / "0.png").read_bytes()
    (folder / "shoe" / "cut.png").write_bytes(good[: len(good) // 2])
    bank = banks.build("tiny", str(folder), progress=False)
    assert len(bank.items) == 4 and bank.features.shape[0] == 4
    skipped = {entry["path"] for entry in bank.meta["skipped"]}
    assert skipped == {str(folder / "bag" / "junk.png"), str(folder / "shoe" / "cut.png")}
    assert "junk.png" in capsys.readouterr().err
    assert banks.load(banks.save(bank, home / "bank")).meta["skipped"] == bank.meta["skipped"]


def test_unreadable_or_missing_bank_says_how_to_fix(home):
    with pytest.raises(banks.BankError, match="not a feature bank.*python -m app.bank build"):
        banks.load(home / "nothing")
    make_model("tiny")
    path = banks.save(banks.build("tiny", str(make_folder(home / "gallery")), progress=False), home / "bank")
    (path / banks.ITEMS).write_text("[1, 2")
    with pytest.raises(banks.BankError, match="unreadable"):
        banks.load(path)


def test_fashion_mnist_bank_refers_to_the_dataset_by_index(home, fashion_mnist):
    dataset = fashion_mnist
    make_model("tiny")
    bank = banks.build("tiny", gallery.FASHION_MNIST, limit=40, progress=False)
    assert [item["ref"] for item in bank.items] == list(range(40))
    assert [item["label"] for item in bank.items] == [dataset.classes[int(t)] for t in dataset.targets[:40]]
    thumb = gallery.thumbnail(bank.items[3])
    assert thumb.mode == "RGB" and thumb.size == (gallery.THUMB, gallery.THUMB)
    assert np.asarray(thumb.resize((28, 28), Image.NEAREST))[..., 0].tolist() == dataset.data[3].tolist()


def test_cli_builds_to_the_default_folder_and_searches(home, capsys):
    make_model("tiny")
    folder = make_folder(home / "gallery")
    assert banks.main(["build", "--model", "tiny", "--data", str(folder)]) == 0
    path = zoo.zoo_home() / "banks" / "tiny-gallery"
    assert banks.discover() == [path]
    assert banks.main(["search", "--bank", str(path), "--image", str(folder / "bag" / "1.png"), "-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[-2:]
    assert lines[0].split()[1] == "bag" and lines[0].endswith("1.png")
    assert banks.main(["build", "--model", "missing-model", "--data", str(folder)]) == 1
    assert "Unknown model 'missing-model'" in capsys.readouterr().err
