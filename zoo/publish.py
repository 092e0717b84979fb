"""Publishing a checkpoint folder to the Hugging Face Hub with huggingface-hub: the repository, its files, a release tag."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError

from .checkpoint import CARD, CONFIG, TRAINING, WEIGHTS, sha256_of
from .registry import HUB_ORG, ZooError
from .resolve import resolve

PUBLISHED = [CONFIG, WEIGHTS, CARD, TRAINING]  # a trained model's training.json too; never local results

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Published:
    repo_id: str
    url: str
    commit: str | None
    tag: str
    tag_created: bool  # False: the tag was already there (the same weights were released before)

    def __str__(self) -> str:
        tagged = (f"tagged {self.tag}" if self.tag_created
                  else f"tag {self.tag} already exists on {self.repo_id}: left as it is")
        return f"published to {self.url} (commit {self.commit or 'unchanged'}); {tagged}"


def zoo_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("contrastive-zoo")
    except PackageNotFoundError:
        return "0"


def release_tag(weights: Path) -> str:
    """``v{zoo version}-{first 12 hex digits of the weights' SHA-256}``: one tag per released set of weights."""
    return f"v{zoo_version()}-{sha256_of(weights)[:12]}"


def token_file_in_repository() -> Path | None:
    """huggingface-hub's token file when it lies inside this project's repository or the current git work tree,
    where a commit or an upload could carry it off; else None."""
    token = Path(constants.HF_TOKEN_PATH).expanduser()
    if not token.is_file():
        return None
    token = token.resolve()
    roots = {PROJECT_ROOT}
    for folder in [Path.cwd().resolve(), *Path.cwd().resolve().parents]:
        if (folder / ".git").exists():
            roots.add(folder)
            break
    return token if any(token.is_relative_to(root) for root in roots) else None


def publish(name: str, repo_id: str | None = None, *, private: bool = False, tag: str | None = None,
            api: HfApi | None = None) -> Published:
    """Upload ``name``'s checkpoint (config.json, model.safetensors, README.md) to ``repo_id`` and tag the commit.

    Authenticates like huggingface-hub does (``HF_TOKEN`` or ``hf auth login``), but refuses a token file kept
    inside the repository. The tag defaults to :func:`release_tag`; an existing tag is reported, not moved.
    """
    folder = resolve(name, download=False)
    if not (folder / CARD).is_file():
        raise ZooError(f"{folder} has no model card ({CARD}). Fix: re-export or convert it, which writes one.")
    token = token_file_in_repository()
    if token:
        raise ZooError(f"The Hugging Face token file {token} is inside the repository, where a commit could publish "
                       "it. Nothing was uploaded. Fix: move it out (`hf auth login` keeps it in "
                       "~/.cache/huggingface/token, or set HF_TOKEN_PATH elsewhere) or use the HF_TOKEN variable.")
    api = api or HfApi()
    repo_id = repo_id or f"{HUB_ORG}/{folder.name}"
    tag = tag or release_tag(folder / WEIGHTS)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=folder, allow_patterns=PUBLISHED,
                               commit_message=f"Publish {folder.name} ({tag})")
    oid = getattr(commit, "oid", None)
    if tag in {ref.name for ref in api.list_repo_refs(repo_id).tags}:
        return Published(repo_id, str(url), oid, tag, tag_created=False)
    try:
        api.create_tag(repo_id, tag=tag, revision=oid, tag_message=f"{folder.name}: weights {tag}")
    except HfHubHTTPError as error:
        if error.response is None or error.response.status_code != 409:  # 409: created meanwhile by another push
            raise
        return Published(repo_id, str(url), oid, tag, tag_created=False)
    return Published(repo_id, str(url), oid, tag, tag_created=True)
