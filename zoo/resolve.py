"""Where a model name resolves, in order: an explicit folder, the local zoo folder
(``$ZOO_HOME``), the Hugging Face cache, then the Hub itself (unless offline).
"""
from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import CARD, CONFIG, WEIGHTS, is_checkpoint, recover
from .registry import ENTRIES, ZooError, suggest

HF_HUB_PREFIX = "hf-hub:"


def zoo_home() -> Path:
    """The local zoo folder: where `python -m train` exports and `zoo convert` writes."""
    home = os.environ.get("ZOO_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "contrastive-zoo"
    return Path(home).expanduser()


def local_names() -> list[str]:
    home = zoo_home()
    return sorted(p.name for p in home.iterdir() if is_checkpoint(p)) if home.is_dir() else []


def known_names() -> list[str]:
    return sorted(set(ENTRIES) | set(local_names()))


def _looks_like_path(name: str) -> bool:
    return os.sep in name or name.startswith((".", "~"))


def resolve(name: str | os.PathLike, download: bool = True) -> Path:
    """The folder holding ``name``'s config.json and model.safetensors, fetching it if ``download``."""
    if str(name).startswith(HF_HUB_PREFIX):  # timm's spelling of a Hub repository: hf-hub:ORG/NAME[@REVISION]
        repo_id, _, revision = str(name)[len(HF_HUB_PREFIX):].partition("@")
        return _from_hub(repo_id, revision, download, tried=[],
                         fix=f"publish it with `python -m zoo push NAME --repo {repo_id}`")
    path = Path(name).expanduser()
    recover(path)  # a writer killed mid-swap left the old folder aside
    if path.is_dir() or _looks_like_path(str(name)):
        if not is_checkpoint(path):
            raise ZooError(f"{path} is not a zoo checkpoint: it needs {CONFIG} and {WEIGHTS}. "
                           "Export one with `python -m train` or `python -m zoo convert`.")
        return path
    name = str(name)
    local = zoo_home() / name
    recover(local)
    if is_checkpoint(local):
        return local
    if name not in ENTRIES:
        raise ZooError(f"Unknown model {name!r}. {suggest(name, known_names())}")
    entry = ENTRIES[name]
    if entry.source == "authors":
        from .download import is_url

        fix = (f"download and convert the authors' checkpoint with `python -m zoo convert {entry.name}`"
               if is_url(entry.release) else f"convert the authors' checkpoint ({entry.release}) with "
               f"`python -m zoo convert {entry.name} --src FILE`")
    else:
        fix = f"train it with `python -m train {entry.method} --preset {entry.preset}`"
    return _from_hub(entry.hub_id, entry.revision, download, tried=[f"the local zoo folder {local}"], fix=fix,
                     what=entry.name)


def _from_hub(hub_id: str, revision: str, download: bool, tried: list[str], fix: str, what: str = "") -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    # the registered revision when there is one, and only the checkpoint's own files
    pinned = dict(revision=revision or None, allow_patterns=[CONFIG, WEIGHTS, CARD])
    try:
        return Path(snapshot_download(hub_id, local_files_only=True, **pinned))
    except LocalEntryNotFoundError:
        tried.append(f"the Hugging Face cache ({hub_id})")
    if not download:
        tried.append("the Hub: not asked")
    elif constants.HF_HUB_OFFLINE:
        tried.append("the Hub: skipped because HF_HUB_OFFLINE is set")
    else:
        try:
            return Path(snapshot_download(hub_id, **pinned))
        except Exception as error:  # network down, repo missing, auth: all end the same way
            tried.append(f"the Hub ({type(error).__name__}: {(str(error).splitlines() or [''])[0][:160]})")
    raise ZooError(f"No weights for {what or hub_id!r} on this machine. Tried: " + "; ".join(tried)
                   + f". Fix: connect to the network, or {fix}.")
