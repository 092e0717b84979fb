"""Publishing uploads the checkpoint folder as it is, tags the release, and the committed cards stay in sync."""
import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import HfApi, constants

import zoo
import zoo.__main__
import zoo.publish
from zoo import card
from zoo.publish import publish
from zoo.registry import ENTRIES
from conftest import save_backbone

ROOT = Path(__file__).resolve().parents[1]


class FakeHub:
    """HfApi's upload side with its network calls replaced by a log; each call must fit HfApi's own signature."""

    def __init__(self, tags=()):
        self.calls, self.tags = [], list(tags)

    def _log(self, method, *args, **kwargs):
        inspect.signature(getattr(HfApi, method)).bind(None, *args, **kwargs)  # raises if HfApi would refuse it
        self.calls.append((method, args, kwargs))

    def create_repo(self, *args, **kwargs):
        self._log("create_repo", *args, **kwargs)
        return f"https://huggingface.co/{args[0] if args else kwargs['repo_id']}"

    def upload_folder(self, *args, **kwargs):
        self._log("upload_folder", *args, **kwargs)
        return SimpleNamespace(oid="c0ffee" * 6 + "0000")

    def list_repo_refs(self, *args, **kwargs):
        self._log("list_repo_refs", *args, **kwargs)
        return SimpleNamespace(tags=[SimpleNamespace(name=tag) for tag in self.tags], branches=[])

    def create_tag(self, *args, **kwargs):
        self._log("create_tag", *args, **kwargs)
        self.tags.append(kwargs["tag"])


@pytest.fixture
def no_token(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))


def test_push_creates_the_repo_uploads_the_checkpoint_files_and_tags_the_release(zoo_home, no_token):
    save_backbone(zoo_home / "instdisc-resnet18-fmnist")
    (zoo_home / "instdisc-resnet18-fmnist" / "notes.txt").write_text("not part of the checkpoint")
    hub = FakeHub()
    result = publish("instdisc-resnet18-fmnist", api=hub)
    repo = "contrastive-zoo/instdisc-resnet18-fmnist"
    assert result.url == f"https://huggingface.co/{repo}" and result.tag_created
    digest = zoo.publish.release_tag(zoo_home / "instdisc-resnet18-fmnist" / "model.safetensors")
    assert result.tag == digest and digest.startswith(f"v{zoo.publish.zoo_version()}-") and len(digest.split("-")[-1]) == 12
    (create, _), (upload, upload_kwargs), (refs, _), (tag, tag_kwargs) = [(c[0], c[2]) for c in hub.calls]
    assert [create, upload, refs, tag] == ["create_repo", "upload_folder", "list_repo_refs", "create_tag"]
    assert hub.calls[0][1] == (repo,) and hub.calls[0][2] == dict(private=False, exist_ok=True)
    assert upload_kwargs["repo_id"] == repo and Path(upload_kwargs["folder_path"]) == zoo_home / "instdisc-resnet18-fmnist"
    assert sorted(upload_kwargs["allow_patterns"]) == ["README.md", "config.json", "model.safetensors", "training.json"]
    assert tag_kwargs["tag"] == result.tag and tag_kwargs["revision"] == "c0ffee" * 6 + "0000"


def test_push_command_takes_the_repo_and_says_when_the_tag_exists(zoo_home, no_token, monkeypatch, capsys):
    save_backbone(zoo_home / "my-model")
    tag = zoo.publish.release_tag(zoo_home / "my-model" / "model.safetensors")
    hub = FakeHub(tags=[tag])
    monkeypatch.setattr(zoo.publish, "HfApi", lambda: hub)
    assert zoo.__main__.main(["push", "my-model", "--repo", "someone/my-model"]) == 0
    assert f"tag {tag} already exists on someone/my-model" in capsys.readouterr().out
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder", "list_repo_refs"]  # no create_tag
    assert hub.calls[1][2]["repo_id"] == "someone/my-model"
    assert zoo.__main__.main(["publish", "my-model", "--repo", "someone/my-model", "--tag", "v1"]) == 0  # the alias
    assert hub.calls[-1][0] == "create_tag" and hub.calls[-1][2]["tag"] == "v1"


def test_push_refuses_a_token_file_inside_the_repository(zoo_home, tmp_path, monkeypatch, capsys):
    save_backbone(zoo_home / "my-model")
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "token").write_text("hf_secret")
    monkeypatch.setattr(zoo.publish, "PROJECT_ROOT", tmp_path / "repo")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "repo" / "token"))
    hub = FakeHub()
    monkeypatch.setattr(zoo.publish, "HfApi", lambda: hub)
    assert zoo.__main__.main(["push", "my-model"]) == 2
    assert "is inside the repository" in capsys.readouterr().err and hub.calls == []


def test_push_reports_a_hub_failure_as_an_error_not_a_traceback(zoo_home, no_token, monkeypatch, capsys):
    save_backbone(zoo_home / "my-model")

    class Refusing(FakeHub):
        def create_repo(self, *args, **kwargs):
            raise PermissionError("401 Unauthorized")

    monkeypatch.setattr(zoo.publish, "HfApi", Refusing)
    assert zoo.__main__.main(["push", "my-model"]) == 2
    assert "hf auth login" in capsys.readouterr().err


def test_committed_cards_of_converted_models_match_the_registry():
    for entry in ENTRIES.values():
        if entry.source == "authors":
            expected = card.for_entry(entry)
            assert (ROOT / "model_cards" / f"{entry.name}.md").read_text() == expected, (
                f"{entry.name}: run `python -m zoo card {entry.name}` (or `python -m zoo card --all`)")
