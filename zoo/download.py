"""Fetching the authors' release files: resumable, checked, and written atomically.

``fetch`` streams a URL into ``DEST.partial`` and renames it to ``DEST`` only once it is whole and
matches the size and digests the registry records (a SHA-256, or the MD5 prefix an authors' README
publishes). An interrupted download leaves the partial file, which the next run continues with an HTTP Range request (a server that ignores the Range, or says the
file changed since, gets the download restarted from byte 0). Only the standard library speaks HTTP
here, so this works with every huggingface-hub the project allows; the progress bar is huggingface-hub's.
"""
from __future__ import annotations

import fcntl
import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from .checkpoint import fsync
from .registry import ENTRIES, ZooError, suggest

CHUNK = 1 << 20
RETRIES = 3  # further attempts after an interrupted transfer, each resuming where the last one stopped
USER_AGENT = "contrastive-zoo (python -m zoo convert)"
DOWNLOADS = ".downloads"  # under the zoo home: the cache of release files
DIGEST_NAMES = {"sha256": "SHA-256", "md5": "MD5"}
PREFIXES = {"md5"}  # checked on the digits given (MoCo's README publishes eight); a SHA-256 is recorded whole


class _Interrupted(Exception):
    """A transfer that stopped early; what arrived is kept and the next attempt resumes after it."""


def is_url(text: str) -> bool:
    return bool(re.fullmatch(r"https?://\S+", text or ""))


def fetch(url: str, dest: Path, sha256: str = "", size: int = 0, *, md5: str = "", progress: bool = True,
          timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``; a ``dest`` already there that passes the checks is kept.

    ``sha256``, ``md5`` (its leading hex digits are enough: MoCo's README publishes eight) and
    ``size``, when known (non-empty, non-zero), are what the file must match: a file that does not is deleted,
    never put at ``dest``, and a ZooError names both values and the fix.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digests = {name: value.strip().lower() for name, value in (("sha256", sha256), ("md5", md5)) if value.strip()}
    with _locked(dest):
        if dest.is_file():
            if _passes(dest, digests, size):
                return dest
            dest.unlink()  # changed since it was checked: download it again rather than trust it
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            raise ZooError(f"{dest.name} is not downloaded yet and HF_HUB_OFFLINE is set, so {url} was not "
                           "fetched. Fix: unset HF_HUB_OFFLINE, or download the file yourself and pass --src FILE.")
        partial = _partial(dest)
        for attempt in range(RETRIES + 1):
            try:
                _transfer(url, partial, size, dest.name, progress, timeout)
                break
            except _Interrupted as error:
                if attempt == RETRIES:
                    have = partial.stat().st_size if partial.exists() else 0
                    raise ZooError(f"Downloading {url} stopped {RETRIES + 1} times ({error}); {have} bytes are kept "
                                   f"in {partial}. Fix: run the same command again to resume.") from None
                time.sleep(min(0.5 * 2 ** attempt, 4.0))
        _check(partial, url, digests, size)
        fsync(partial)
        os.replace(partial, dest)
        _meta(partial).unlink(missing_ok=True)
        fsync(dest.parent)
    return dest


def release(name: str, src: str | None = None, *, progress: bool = True) -> Path:
    """The local file of ``name``'s release: ``src`` itself when it is a file, else the download of ``src``
    (a URL) or of the registry's ``release`` URL, cached under ``$ZOO_HOME/.downloads/NAME/``.

    The registry's size and digests check the download of its own release URL; a file or another URL
    that the user chose is taken as it is.
    """
    from .resolve import zoo_home

    entry = ENTRIES.get(name)
    if entry is None or entry.source != "authors":
        authors = [n for n, e in ENTRIES.items() if e.source == "authors"]
        raise ZooError(f"No converter for {name!r}. {suggest(name, authors)}")
    if src and not is_url(src):
        return Path(src).expanduser()
    url = src or download_url(entry.release)
    if not is_url(url):
        raise ZooError(f"The registry records no download URL for {name!r}: its release is "
                       f"{entry.release or 'not recorded'}. Fix: download the checkpoint from there and pass it "
                       f"with `python -m zoo convert {name} --src FILE`.")
    checks = dict(sha256=entry.sha256, md5=entry.md5, size=entry.size) if url == download_url(entry.release) else {}
    return fetch(url, zoo_home() / DOWNLOADS / name / cache_name(url), progress=progress, **checks)


def download_url(release: str) -> str:
    """The URL that serves ``release`` to anyone: Google Cloud Storage's browser links (storage.cloud.google.com,
    which answers a script with a sign-in page) and ``gs://`` paths of a file become storage.googleapis.com,
    which serves public objects without an account; other releases are kept as they are."""
    gcs = re.fullmatch(r"(?:https://storage\.cloud\.google\.com/|gs://)([^/\s]+/\S*[^/\s]\.[A-Za-z0-9]+)", release or "")
    return f"https://storage.googleapis.com/{gcs.group(1)}" if gcs else release


def cache_name(url: str) -> str:
    """The file name a download of ``url`` is kept under: its last path segment, after a short hash of the
    whole URL (two releases of the same file name never share a cache entry)."""
    base = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name or "download"
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".") or "download"
    return f"{hashlib.sha256(url.encode()).hexdigest()[:8]}-{base}"


def _partial(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def _meta(partial: Path) -> Path:
    """Beside the partial file: the URL it came from and the server's validator (ETag or Last-Modified)."""
    return partial.with_name(partial.name + ".json")


@contextmanager
def _locked(dest: Path):
    with open(dest.with_name(f".{dest.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two downloads of one file take turns; released if the process dies
        yield


def _mismatch(path: Path, digests: dict[str, str]) -> tuple[str, str, str] | None:
    """The first of ``digests`` ({algorithm: hex digest, or for ``PREFIXES`` its leading digits}) that ``path``
    fails, as (algorithm, expected, found); None when it passes them all. The file is read once for all."""
    hashers = {algorithm: hashlib.new(algorithm) for algorithm in digests}
    with open(path, "rb") as file:
        while hashers and (block := file.read(CHUNK)):
            for hasher in hashers.values():
                hasher.update(block)
    for algorithm, expected in digests.items():
        found = hashers[algorithm].hexdigest()
        if not (found == expected or algorithm in PREFIXES and found.startswith(expected)):
            return algorithm, expected, found
    return None


def _passes(path: Path, digests: dict[str, str], size: int) -> bool:
    return (not size or path.stat().st_size == size) and _mismatch(path, digests) is None


def _discard(partial: Path) -> None:
    partial.unlink(missing_ok=True)
    _meta(partial).unlink(missing_ok=True)


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a Content-Range header such as ``bytes 100-199/200`` or ``bytes */200``."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total != "*" else None)


def _transfer(url: str, partial: Path, size: int, label: str, progress: bool, timeout: float) -> None:
    """One request: append to ``partial`` from where it stops (206), or rewrite it from the start (200)."""
    offset = partial.stat().st_size if partial.exists() else 0
    try:
        meta = json.loads(_meta(partial).read_text()) if offset else {}
    except (OSError, ValueError):
        meta = {}
    if offset and (meta.get("url") != url or (size and offset > size)):
        _discard(partial)  # bytes of another URL, or more than the file has: not a prefix of this download
        offset, meta = 0, {}
    if size and offset == size:
        return  # whole already: a previous run was stopped between the last byte and the rename
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if meta.get("validator"):
            headers["If-Range"] = meta["validator"]  # the server sends the whole file if it changed since
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the range starts at or past the end of the file
            _, total = _content_range(error.headers.get("Content-Range"))
            if total == offset:
                return
            _discard(partial)
            raise _Interrupted("the server refused to resume; starting again") from None
        raise ZooError(f"Downloading {url} failed: HTTP {error.code} {error.reason}. Fix: check the URL, or download "
                       "the file yourself and pass --src FILE.") from None
    except (urllib.error.URLError, OSError) as error:
        raise _Interrupted(f"{type(error).__name__}: {getattr(error, 'reason', error)}") from None
    with response:
        if response.headers.get_content_type() == "text/html":  # no release is a web page: a sign-in or error page
            raise ZooError(f"{url} answered with a web page, not the file (a sign-in page, or the file moved). "
                           "Fix: open the URL in a browser, download the file, and pass it with --src FILE.")
        total = None
        if offset and response.status == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != offset:
                _discard(partial)
                raise _Interrupted(f"the server sent bytes from {first}, not {offset}; starting again")
            mode = "ab"
        else:  # 200: the whole file, because it was asked for, or the server ignores Range, or the file changed
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        etag = response.headers.get("ETag") or ""
        validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
        _meta(partial).write_text(json.dumps({"url": url, "validator": validator}))
        from huggingface_hub.utils import tqdm

        with open(partial, mode) as out, tqdm(total=size or total, initial=offset, unit="B", unit_scale=True,
                                              unit_divisor=1024, desc=label, disable=not progress) as bar:
            try:
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as error:  # connection reset, or body cut short
                raise _Interrupted(f"{type(error).__name__} after {out.tell()} bytes") from None
            finally:
                out.flush()
                os.fsync(out.fileno())
            received = out.tell()
    if total is not None and received < total:
        raise _Interrupted(f"the connection closed after {received} of {total} bytes")


def _check(partial: Path, url: str, digests: dict[str, str], size: int) -> None:
    """Refuse a download that is not the recorded file; the bad bytes are deleted, not left to resume from."""
    fix = ("Fix: run the command again to download it afresh; if it fails again, the file at that URL is not the "
           "one the registry describes: get the authors' file another way, check it, and pass it with --src FILE.")
    found = partial.stat().st_size
    if size and found != size:
        _discard(partial)
        raise ZooError(f"{url} gave {found} bytes, but the registry records {size}. The download was deleted. {fix}")
    if failed := _mismatch(partial, digests):
        algorithm, expected, found = failed
        _discard(partial)
        raise ZooError(f"{DIGEST_NAMES[algorithm]} mismatch for {url}: the registry records {expected}, the download "
                       f"is {found}. The download was deleted and nothing was converted. {fix}")
