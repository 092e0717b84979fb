"""`python -m zoo convert | card | list`: release downloads (resumed, checked), cards of the authors' entries, the table."""
import dataclasses
import hashlib
import os

import pytest
import torch
from huggingface_hub import ModelCard, constants

import zoo
import zoo.__main__
import zoo.download
from conftest import save_backbone
from hub_server import HubServer
from zoo import card
from zoo.registry import ENTRIES, Entry


def release_bytes(size: int) -> bytes:
    """Random bytes led by a NUL, as a binary release is: the test server serves data that starts with "<" as a
    web page, which random bytes would do once in 256 runs."""
    return b"\0" + os.urandom(size - 1)


DATA = release_bytes(300_000)
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server(monkeypatch):
    """A file server on 127.0.0.1, with downloads allowed (the tests' conftest sets HF_HUB_OFFLINE)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(zoo.download.time, "sleep", lambda seconds: None)
    with HubServer() as hub:
        hub.files["release.pth"] = DATA
        yield hub


def gets(hub):
    return [(path, rng) for origin, method, path, rng in hub.requests if method == "GET"]


# -- downloads --------------------------------------------------------------------------------------------------------

def test_an_interrupted_download_is_resumed_by_the_next_run_not_restarted(server, tmp_path, monkeypatch):
    url, dest = server.url("/files/release.pth"), tmp_path / "cache" / "release.pth"
    server.cut_after = 100_000
    monkeypatch.setattr(zoo.download, "RETRIES", 0)
    with pytest.raises(zoo.ZooError, match="100000 bytes are kept .* run the same command again to resume"):
        zoo.download.fetch(url, dest, sha256=DIGEST, size=len(DATA), progress=False)
    assert not dest.exists() and (tmp_path / "cache" / "release.pth.partial").stat().st_size == 100_000
    assert zoo.download.fetch(url, dest, sha256=DIGEST, size=len(DATA), progress=False) == dest
    assert dest.read_bytes() == DATA and not (tmp_path / "cache" / "release.pth.partial").exists()
    assert gets(server) == [("/files/release.pth", None), ("/files/release.pth", "bytes=100000-")]
    assert zoo.download.fetch(url, dest, sha256=DIGEST, progress=False) == dest  # checked and kept: no request
    assert len(gets(server)) == 2


def test_a_transfer_cut_mid_way_resumes_within_the_same_run(server, tmp_path):
    server.cut_after = 12_345
    dest = zoo.download.fetch(server.url("/files/release.pth"), tmp_path / "r.pth", sha256=DIGEST, progress=False)
    assert dest.read_bytes() == DATA and gets(server)[-1] == ("/files/release.pth", "bytes=12345-")


def test_a_server_that_ignores_range_gets_a_clean_restart(server, tmp_path, monkeypatch):
    url, dest = server.url("/files/release.pth"), tmp_path / "r.pth"
    server.cut_after = 50_000
    monkeypatch.setattr(zoo.download, "RETRIES", 0)
    with pytest.raises(zoo.ZooError):
        zoo.download.fetch(url, dest, progress=False)
    server.honour_range = False
    zoo.download.fetch(url, dest, sha256=DIGEST, size=len(DATA), progress=False)
    assert dest.read_bytes() == DATA  # the partial was rewritten from byte 0, not appended to


def test_a_file_that_changed_on_the_server_is_downloaded_afresh(server, tmp_path, monkeypatch):
    url, dest = server.url("/files/release.pth"), tmp_path / "r.pth"
    server.cut_after = 50_000
    monkeypatch.setattr(zoo.download, "RETRIES", 0)
    with pytest.raises(zoo.ZooError):
        zoo.download.fetch(url, dest, progress=False)
    server.files["release.pth"] = new = release_bytes(200_000)  # another ETag: If-Range gets the whole new file
    zoo.download.fetch(url, dest, progress=False)
    assert dest.read_bytes() == new


def test_a_sha256_mismatch_names_both_digests_and_keeps_no_file(server, tmp_path):
    dest = tmp_path / "r.pth"
    with pytest.raises(zoo.ZooError) as error:
        zoo.download.fetch(server.url("/files/release.pth"), dest, sha256="ab" * 32, progress=False)
    message = str(error.value)
    assert "ab" * 32 in message and DIGEST in message and "Fix:" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.pth.lock"]  # neither the file nor a partial to resume


def test_the_md5_prefix_an_authors_readme_publishes_is_checked(server, tmp_path):
    md5 = hashlib.md5(DATA).hexdigest()
    dest = zoo.download.fetch(server.url("/files/release.pth"), tmp_path / "r.pth", md5=md5[:8].upper(), progress=False)
    assert dest.read_bytes() == DATA
    wrong = format((int(md5[:8], 16) + 1) % 16 ** 8, "08x")  # one digit off
    with pytest.raises(zoo.ZooError, match=f"MD5 mismatch .* records {wrong}, the download is {md5}") as error:
        zoo.download.fetch(server.url("/files/release.pth"), tmp_path / "s.pth", md5=wrong, progress=False)
    assert "Fix:" in str(error.value) and not (tmp_path / "s.pth").exists()
    with pytest.raises(zoo.ZooError, match="SHA-256 mismatch"):  # a SHA-256 is recorded whole, never a prefix
        zoo.download.fetch(server.url("/files/release.pth"), tmp_path / "t.pth", sha256=DIGEST[:8], progress=False)


def test_the_moco_releases_carry_the_md5_prefixes_of_the_authors_readme_into_the_check(server, zoo_home,
                                                                                      monkeypatch):
    assert {n: ENTRIES[n].md5 for n in ("moco-v1-r50", "moco-v2-r50", "moco-v2-r50-800ep")} == {
        "moco-v1-r50": "b251726a", "moco-v2-r50": "59fd9945", "moco-v2-r50-800ep": "a04e12f8"}
    monkeypatch.setitem(ENTRIES, "moco-v1-r50", dataclasses.replace(ENTRIES["moco-v1-r50"],
                                                                   release=server.url("/files/release.pth")))
    with pytest.raises(zoo.ZooError, match="MD5 mismatch .* records b251726a"):  # DATA is not the authors' file
        zoo.download.release("moco-v1-r50", progress=False)
    assert "MD5 prefix `b251726a`" in card.for_entry(ENTRIES["moco-v1-r50"])


def test_a_cached_file_that_fails_its_check_is_not_trusted(server, tmp_path):
    dest = tmp_path / "r.pth"
    dest.write_bytes(b"tampered")
    zoo.download.fetch(server.url("/files/release.pth"), dest, sha256=DIGEST, progress=False)
    assert dest.read_bytes() == DATA


def test_offline_no_download_is_attempted(server, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(zoo.ZooError, match="HF_HUB_OFFLINE is set"):
        zoo.download.fetch(server.url("/files/release.pth"), tmp_path / "r.pth", progress=False)
    assert server.requests == []


def test_a_web_page_in_place_of_the_file_is_refused_and_nothing_is_kept(server, tmp_path):
    """Cloud links answer a script with a sign-in page, and moved files with an HTML error page (status 200)."""
    server.files["ResNet50_1x.zip"] = b"<!DOCTYPE html><html><body>Sign in to continue</body></html>"
    with pytest.raises(zoo.ZooError, match="answered with a web page.*--src FILE"):
        zoo.download.fetch(server.url("/files/ResNet50_1x.zip"), tmp_path / "r.zip", progress=False)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []  # no file, no partial


@pytest.mark.parametrize("release, url", [
    ("https://storage.cloud.google.com/simclr-gcs/checkpoints/ResNet50_1x.zip",
     "https://storage.googleapis.com/simclr-gcs/checkpoints/ResNet50_1x.zip"),
    ("gs://simclr-checkpoints/simclrv2/pretrained/r50_1x_sk0/model.ckpt-250228.index",
     "https://storage.googleapis.com/simclr-checkpoints/simclrv2/pretrained/r50_1x_sk0/model.ckpt-250228.index"),
    ("gs://simclr-checkpoints/simclrv2/pretrained/r50_1x_sk0", "gs://simclr-checkpoints/simclrv2/pretrained/r50_1x_sk0"),
    ("https://dl.fbaipublicfiles.com/moco/moco_v2_200ep_pretrain.pth.tar",
     "https://dl.fbaipublicfiles.com/moco/moco_v2_200ep_pretrain.pth.tar"),
])
def test_cloud_storage_links_are_fetched_from_the_endpoint_that_needs_no_account(release, url):
    """A folder (no file name) stays as it is: `zoo convert` then says to pass the file with --src."""
    assert zoo.download.download_url(release) == url


# -- convert ----------------------------------------------------------------------------------------------------------

def test_convert_downloads_the_registry_release_checks_it_and_converts(server, zoo_home, tmp_path, monkeypatch):
    from test_convert import lemniscate_file

    source = lemniscate_file(tmp_path / "lemniscate_resnet50.pth.tar")
    data = (tmp_path / "lemniscate_resnet50.pth.tar").read_bytes()
    server.files["lemniscate_resnet50.pth.tar"] = data
    url = server.url("/files/lemniscate_resnet50.pth.tar")
    monkeypatch.setitem(ENTRIES, "instdisc-r50", dataclasses.replace(
        ENTRIES["instdisc-r50"], release=url, sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
    assert zoo.__main__.main(["convert", "instdisc-r50"]) == 0
    (downloaded,) = (zoo_home / ".downloads" / "instdisc-r50").glob("*lemniscate_resnet50.pth.tar")
    assert downloaded.read_bytes() == data
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(zoo.load("instdisc-r50")(x), source(x), atol=1e-4)
    assert ".downloads" not in zoo.list_models()


def test_convert_takes_a_url_or_a_file_and_checks_the_recorded_digest_only_for_the_release(server, zoo_home,
                                                                                          tmp_path, monkeypatch):
    import zoo.convert

    converted = []
    monkeypatch.setattr(zoo.convert, "convert", lambda name, src, out=None: converted.append((name, src, out)) or "ok")
    monkeypatch.setitem(ENTRIES, "instdisc-r50", dataclasses.replace(
        ENTRIES["instdisc-r50"], release=server.url("/files/release.pth"), sha256="0" * 64))
    (tmp_path / "mine.pth").write_bytes(b"x")
    assert zoo.__main__.main(["convert", "instdisc-r50", "--src", str(tmp_path / "mine.pth"), "--out", "o"]) == 0
    assert converted[-1] == ("instdisc-r50", tmp_path / "mine.pth", "o")
    server.files["mirror.pth"] = DATA
    assert zoo.__main__.main(["convert", "instdisc-r50", "--src", server.url("/files/mirror.pth")]) == 0
    assert converted[-1][1].read_bytes() == DATA and converted[-1][1].parent == zoo_home / ".downloads" / "instdisc-r50"
    assert zoo.__main__.main(["convert", "instdisc-r50"]) == 2  # the release itself must match its recorded digest
    assert len(converted) == 2


def test_convert_without_a_download_url_says_to_pass_the_file(zoo_home, monkeypatch, capsys):
    monkeypatch.setitem(ENTRIES, "instdisc-r50", dataclasses.replace(
        ENTRIES["instdisc-r50"], release="https://github.com/zhirongw/lemniscate.pytorch (lemniscate_resnet50.pth.tar)"))
    assert zoo.__main__.main(["convert", "instdisc-r50"]) == 2
    assert "--src FILE" in capsys.readouterr().err
    assert zoo.__main__.main(["convert", "instdisc-resnet18-fmnist"]) == 2
    assert "No converter" in capsys.readouterr().err


# -- cards ------------------------------------------------------------------------------------------------------------

FULL = Entry("mocov2-test", "mocov2", "resnet50", "imagenet-1k", "authors", "A test entry with every field.",
             release="https://example.org/moco_v2_800ep_pretrain.pth.tar", epochs=800, linear_top1=71.1,
             top1_source="MoCo README, Models table (https://github.com/facebookresearch/moco)",
             licence="CC-BY-NC-4.0", sha256="12" * 32, size=1234, model_args={"drop_path_rate": 0.1})


def test_card_of_an_authors_entry_has_its_facts_metrics_and_licence(zoo_home, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(ENTRIES, FULL.name, FULL)
    out = tmp_path / "cards" / "mocov2-test.md"
    assert zoo.__main__.main(["card", FULL.name, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    loaded = ModelCard.load(out)
    assert loaded.data.license == "cc-by-nc-4.0" and loaded.data.library_name == "timm"
    (result,) = loaded.data.eval_results
    assert (result.dataset_name, result.dataset_split, result.metric_type, result.metric_value) == \
        ("ImageNet-1k", "validation", "accuracy", 71.1)
    assert result.task_name.startswith("Linear probe") and result.source_url == "https://github.com/facebookresearch/moco"
    text = loaded.text
    for fact in ["MoCo v2", "Improved Baselines with Momentum Contrastive Learning", "stage 2 of the lineage",
                 "the champions", "timm `resnet50`", "drop_path_rate=0.1", "800 epochs", "71.1%",
                 "MoCo README, Models table", "CC-BY-NC-4.0", "python -m zoo convert mocov2-test",
                 "SHA-256", "every key and shape is checked", "that network's features", 'zoo.load("mocov2-test")',
                 'timm.create_model("hf-hub:contrastive-zoo/mocov2-test", pretrained=True)',
                 'zoo.load("mocov2-test", num_classes=N)']:
        assert fact in text, fact


@pytest.mark.parametrize("name", [n for n, e in ENTRIES.items() if e.source == "authors"])
def test_every_authors_card_is_valid_metadata_for_the_hub(name):
    entry = ENTRIES[name]
    loaded = ModelCard(card.for_entry(entry))
    assert loaded.data.license == card.hub_licence(entry.licence) and loaded.data.license in card.HUB_LICENCES
    results = loaded.data.eval_results or []
    assert [r.metric_value for r in results] == ([entry.linear_top1] if entry.linear_top1 is not None else [])


def test_card_of_a_trained_entry_is_its_checkpoints_card_and_goes_to_model_cards(zoo_home, tmp_path, monkeypatch):
    model = save_backbone(zoo_home / "instdisc-resnet18-fmnist")
    text = card.render("instdisc-resnet18-fmnist", "instdisc", "resnet18", "fashion-mnist", "Trained here.",
                       {card.KNN_METRIC: 81.25}, {"preset": "fmnist"})
    zoo.checkpoint.save(model, zoo_home / "instdisc-resnet18-fmnist", data_config={"input_size": (3, 32, 32)},
                        card=text)
    monkeypatch.setattr(zoo.__main__, "MODEL_CARDS", tmp_path / "model_cards")
    assert zoo.__main__.main(["card", "instdisc-resnet18-fmnist"]) == 0
    written = tmp_path / "model_cards" / "instdisc-resnet18-fmnist.md"
    assert written.read_text() == text
    (result,) = ModelCard.load(written).data.eval_results
    assert result.metric_value == 81.25 and result.metric_name == card.KNN_METRIC


def test_card_all_writes_every_authors_card_and_skips_trained_models_not_here(zoo_home, tmp_path, capsys):
    assert zoo.__main__.main(["card", "--all", "--out", str(tmp_path / "cards")]) == 0
    written = sorted(p.stem for p in (tmp_path / "cards").glob("*.md"))
    assert written == sorted(n for n, e in ENTRIES.items() if e.source == "authors")
    assert "skipped instdisc-resnet18-fmnist" in capsys.readouterr().err


# -- list -------------------------------------------------------------------------------------------------------------

def test_list_shows_each_models_lineage_top1_and_where_its_weights_are(zoo_home, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(ENTRIES, FULL.name, FULL)
    monkeypatch.setitem(ENTRIES, "cached-test", dataclasses.replace(FULL, name="cached-test", linear_top1=None))
    save_backbone(zoo_home / FULL.name)  # converted here
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    repo = cache / "models--contrastive-zoo--cached-test"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("a" * 40) / "model.safetensors").write_bytes(b"weights")
    trained = save_backbone(zoo_home / "simclr-mine")  # a local checkpoint outside the registry, with a card
    zoo.checkpoint.save(trained, zoo_home / "simclr-mine", data_config={"input_size": (3, 32, 32)},
                        card=card.render("simclr-mine", "simclr", "resnet18", "fashion-mnist", "Mine."))
    assert zoo.__main__.main(["list"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "METHOD", "STAGE", "ARCHITECTURE", "DATA", "TOP-1", "WEIGHTS"]
    starts = [header.index(word) for word in header.split()] + [None]
    rows = {}
    for line in lines:
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:])]
        rows[cells[0]] = cells[1:]
    assert set(rows) == set(zoo.list_models())
    assert rows["mocov2-test"] == ["mocov2", "2 the champions", "resnet50", "imagenet-1k", "71.1", "local"]
    assert rows["cached-test"][-2:] == ["-", "hf cache"]
    assert rows["simclr-mine"] == ["simclr", "2 the champions", "resnet18", "fashion-mnist", "-", "local"]
    assert rows["instdisc-resnet18-fmnist"][:2] == ["instdisc", "1 many ideas"]
    assert rows["instdisc-resnet18-fmnist"][-1] == "-"
