"""Published checkpoints over real HTTP: a Hub stand-in on 127.0.0.1 serves a folder as a repository, and
zoo.load and timm fetch it into the normal Hugging Face cache, then load it again offline with the server gone."""
import pytest
import timm
import torch
from huggingface_hub import constants

import zoo
from conftest import save_backbone
from hub_server import HubServer

REPO = "contrastive-zoo/instdisc-resnet18-fmnist"  # a registry entry's hub id
x = torch.randn(2, 3, 32, 32)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A running Hub stand-in that huggingface-hub talks to, with its cache and home in tmp_path and no token.

    huggingface-hub reads its environment once, into ``huggingface_hub.constants``, when it is imported (the
    tests' conftest imports it offline): the constants are set here as well as the variables."""
    server = HubServer().start()
    home = tmp_path / "hf"
    settings = dict(ENDPOINT=server.endpoint, HF_HOME=str(home), HF_HUB_CACHE=str(home / "hub"),
                    HUGGINGFACE_CO_URL_TEMPLATE=server.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
                    HF_TOKEN_PATH=str(home / "token"), HF_STORED_TOKENS_PATH=str(home / "stored_tokens"),
                    HF_HUB_OFFLINE=False)
    for key, value in settings.items():
        monkeypatch.setattr(constants, key, value)
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.stop()


def features(model):
    with torch.no_grad():
        return model.eval()(x)


def test_zoo_and_timm_fetch_the_published_repo_into_the_hf_cache_then_load_it_offline(hub, zoo_home, tmp_path,
                                                                                      monkeypatch):
    source = save_backbone(tmp_path / "published", seed=3)
    commit = hub.publish(REPO, tmp_path / "published")
    expected = features(source)

    by_name = zoo.load("instdisc-resnet18-fmnist")  # a registry name: not in $ZOO_HOME, so from the Hub
    folder = zoo.resolve("instdisc-resnet18-fmnist")
    assert folder == tmp_path / "hf" / "hub" / "models--contrastive-zoo--instdisc-resnet18-fmnist" / "snapshots" / commit
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert (folder / "model.safetensors").is_symlink()  # the normal cache layout: snapshots link to blobs
    by_hub_name = zoo.load(f"hf-hub:{REPO}")
    plain = timm.create_model(f"hf-hub:{REPO}", pretrained=True)
    for model in (by_name, by_hub_name, plain):
        assert torch.equal(features(model), expected)

    seen = {(origin, method, path) for origin, method, path, _ in hub.requests}
    assert ("hub", "GET", f"/api/models/{REPO}/revision/main") in seen  # snapshot_download: the commit of main
    assert ("hub", "HEAD", f"/{REPO}/resolve/main/config.json") in seen  # timm: hf_hub_download of each file
    assert ("hub", "HEAD", f"/{REPO}/resolve/{commit}/model.safetensors") in seen
    assert any(origin == "cdn" and method == "GET" for origin, method, _ in seen)  # the weights, after Location

    hub.stop()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    asked = len(hub.requests)
    assert torch.equal(features(zoo.load("instdisc-resnet18-fmnist")), expected)
    assert torch.equal(features(zoo.load(f"hf-hub:{REPO}")), expected)
    assert torch.equal(features(timm.create_model(f"hf-hub:{REPO}", pretrained=True)), expected)
    assert len(hub.requests) == asked


def test_a_registry_entry_pinned_to_a_tag_gets_that_release_while_main_moves_on(hub, zoo_home, tmp_path,
                                                                               monkeypatch):
    import dataclasses

    from zoo.registry import ENTRIES

    first = save_backbone(tmp_path / "v1", seed=1)
    hub.publish(REPO, tmp_path / "v1", tags=("v0.1.0-aaaa",))
    later = save_backbone(tmp_path / "v2", seed=2)
    hub.publish(REPO, tmp_path / "v2")
    monkeypatch.setitem(ENTRIES, "instdisc-resnet18-fmnist",
                        dataclasses.replace(ENTRIES["instdisc-resnet18-fmnist"], revision="v0.1.0-aaaa"))
    assert torch.equal(features(zoo.load("instdisc-resnet18-fmnist")), features(first))
    assert torch.equal(features(zoo.load(f"hf-hub:{REPO}@v0.1.0-aaaa")), features(first))
    assert torch.equal(features(zoo.load(f"hf-hub:{REPO}")), features(later))


def test_a_missing_repository_says_what_was_tried(hub, zoo_home):
    with pytest.raises(zoo.ZooError) as error:
        zoo.load("hf-hub:contrastive-zoo/nothing-here")
    message = str(error.value)
    assert "the Hugging Face cache (contrastive-zoo/nothing-here)" in message and "the Hub (" in message
