"""Publishing a checkpoint folder to the Hugging Face Hub with huggingface-hub."""
from __future__ import annotations

from huggingface_hub import HfApi

from .registry import HUB_ORG
from .resolve import resolve


def publish(name: str, repo_id: str | None = None, *, private: bool = False, api: HfApi | None = None) -> str:
    """Upload ``name``'s folder (config.json, model.safetensors, README.md); returns the repo URL.

    Authenticates like huggingface-hub does (``HF_TOKEN`` or ``hf auth login``).
    """
    folder = resolve(name, download=False)
    api = api or HfApi()
    repo_id = repo_id or f"{HUB_ORG}/{folder.name}"
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=f"Publish {folder.name}")
    return str(url)
