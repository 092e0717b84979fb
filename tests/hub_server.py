"""A stand-in for the Hugging Face Hub, over real HTTP on 127.0.0.1, for the tests of downloads and uploads' readers.

It answers the requests huggingface-hub's ``hf_hub_download`` and ``snapshot_download`` make (as read in
``huggingface_hub/file_download.py``, ``_snapshot_download.py`` and ``hf_api.py``):

- ``GET /api/models/ORG/NAME[/revision/REV]``: the repository's info; ``sha`` is the commit a revision names.
- ``GET /api/models/ORG/NAME/tree/REV``: the file listing (``oid``, ``size``, ``lfs`` for large files), one page.
- ``HEAD|GET /ORG/NAME/resolve/REV/FILE``: a small file is served here with ``X-Repo-Commit``, ``ETag`` (its git
  blob id) and ``Content-Length``; a large ("LFS") file answers ``302`` with ``Location`` on a second origin (the
  "CDN", another port, so the client does not follow it for HEAD), ``X-Linked-Etag`` (its SHA-256) and
  ``X-Linked-Size``, as the Hub does. A missing repository, revision or file gets 404 with the ``X-Error-Code``
  huggingface-hub maps to its errors.
- ``GET /blobs/SHA256`` on the CDN origin, and ``GET /files/NAME`` for plain downloads: bytes with HTTP Range
  support (``honour_range``), ``If-Range``, and an optional cut after some bytes (``cut_after``) to play an
  interrupted transfer.

Every request is logged in ``requests`` as (origin, method, path, Range header).
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pth", "*.pt")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> {path: bytes}
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit


class HubServer:
    """``with HubServer() as hub: hub.publish("org/name", folder)``; ``hub.endpoint`` is the ``HF_ENDPOINT``."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.files: dict[str, bytes] = {}  # served at /files/NAME
        self.honour_range = True
        self.cut_after: int | None = None  # send only this many body bytes of the next /files or /blobs response
        self.requests: list[tuple[str, str, str, str | None]] = []
        self._servers: dict[str, ThreadingHTTPServer] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- content --------------------------------------------------------------------------------------------------

    def publish(self, repo_id: str, folder: Path, tags: tuple[str, ...] = ()) -> str:
        """Serve ``folder``'s files as a new commit of ``repo_id`` on ``main``, also named by ``tags``; returns it."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
                 if p.is_file()}
        repo = self.repos.setdefault(repo_id, Repo())
        parent = repo.refs.get("main", "")
        commit = hashlib.sha1(json.dumps([parent, repo_id, {k: git_blob_id(v) for k, v in files.items()}]).encode()
                              ).hexdigest()
        repo.commits[commit] = files
        repo.refs.update({"main": commit, **{tag: commit for tag in tags}})
        return commit

    @property
    def endpoint(self) -> str:
        return self._origin("hub")

    def url(self, path: str) -> str:
        return self.endpoint + path

    def _origin(self, role: str) -> str:
        host, port = self._servers[role].server_address[:2]
        return f"http://{host}:{port}"

    # -- life -----------------------------------------------------------------------------------------------------

    def start(self) -> HubServer:
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, role))
            server.daemon_threads = True
            self._servers[role] = server
            thread = threading.Thread(target=server.serve_forever, name=f"hub-server-{role}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self, entry) -> None:
        with self._lock:
            self.requests.append(entry)


def _handler(hub: HubServer, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: the test log is hub.requests
            pass

        def do_HEAD(self):
            self._route(body=False)

        def do_GET(self):
            self._route(body=True)

        # -- routing --------------------------------------------------------------------------------------------

        def _route(self, body: bool) -> None:
            path = urlsplit(self.path).path
            hub.log((role, self.command, path, self.headers.get("Range")))
            if role == "cdn":
                match = re.fullmatch(r"/blobs/([0-9a-f]{64})", path)
                data = match and next((d for repo in hub.repos.values() for files in repo.commits.values()
                                       for d in files.values() if hashlib.sha256(d).hexdigest() == match.group(1)),
                                      None)
                return self._bytes(data, body) if data is not None else self._error(404, "EntryNotFound")
            if match := re.fullmatch(r"/files/([^/]+)", path):
                data = hub.files.get(unquote(match.group(1)))
                return self._bytes(data, body) if data is not None else self._error(404, None)
            if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
                return self._info(unquote(match.group(1)), unquote(match.group(2) or "main"))
            if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path):
                return self._tree(unquote(match.group(1)), unquote(match.group(2)))
            if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                return self._resolve(unquote(match.group(1)), unquote(match.group(2)), unquote(match.group(3)), body)
            self._error(404, None)

        def _commit(self, repo_id: str, revision: str) -> tuple[Repo | None, str | None]:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound")
                return None, None
            commit = repo.refs.get(revision) or (revision if revision in repo.commits else None)
            if commit is None:
                self._error(404, "RevisionNotFound")
            return repo, commit

        def _info(self, repo_id: str, revision: str) -> None:
            repo, commit = self._commit(repo_id, revision)
            if commit:
                self._json({"_id": git_blob_id(repo_id.encode()), "id": repo_id, "modelId": repo_id,
                            "author": repo_id.split("/")[0], "sha": commit, "private": False, "gated": False,
                            "disabled": False, "library_name": "timm", "tags": ["timm"],
                            "lastModified": "2024-01-01T00:00:00.000Z",
                            "siblings": [{"rfilename": name} for name in repo.commits[commit]]})

        def _tree(self, repo_id: str, revision: str) -> None:
            repo, commit = self._commit(repo_id, revision)
            if commit:
                entries = []
                for name, data in repo.commits[commit].items():
                    entry = {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": name}
                    if _is_lfs(name):
                        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                    entries.append(entry)
                self._json(entries)

        def _resolve(self, repo_id: str, revision: str, name: str, body: bool) -> None:
            repo, commit = self._commit(repo_id, revision)
            if not commit:
                return
            data = repo.commits[commit].get(name)
            if data is None:
                return self._error(404, "EntryNotFound", {"X-Repo-Commit": commit})
            headers = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_id(data)}"'}
            if _is_lfs(name):
                digest = hashlib.sha256(data).hexdigest()
                headers.update({"X-Linked-Etag": f'"{digest}"', "X-Linked-Size": str(len(data)),
                                "Location": f"{hub._origin('cdn')}/blobs/{digest}", "Content-Length": "0"})
                return self._send(302, headers)
            self._send(200, {**headers, "Content-Length": str(len(data))}, data if body else b"")

        # -- answers --------------------------------------------------------------------------------------------

        def _bytes(self, data: bytes, body: bool) -> None:
            """``data`` as a download: the Range asked for when ``hub.honour_range``, else all of it."""
            etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
            wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            if_range = self.headers.get("If-Range")
            if wanted and hub.honour_range and (not if_range or if_range == etag):
                first = int(wanted.group(1))
                last = min(int(wanted.group(2) or len(data) - 1), len(data) - 1)
                if first >= len(data):
                    return self._send(416, {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"})
                part = data[first:last + 1]
                return self._send(206, {"ETag": etag, "Accept-Ranges": "bytes", "Content-Length": str(len(part)),
                                        "Content-Range": f"bytes {first}-{last}/{len(data)}"}, part if body else b"")
            headers = {"ETag": etag, "Content-Length": str(len(data)),
                       "Content-Type": "text/html; charset=utf-8" if data.lstrip()[:1] == b"<" else
                       "application/octet-stream"}  # as a sign-in or error page comes
            if hub.honour_range:
                headers["Accept-Ranges"] = "bytes"
            self._send(200, headers, data if body else b"")

        def _json(self, value) -> None:
            data = json.dumps(value).encode()
            self._send(200, {"Content-Type": "application/json", "Content-Length": str(len(data))}, data)

        def _error(self, status: int, code: str | None, headers: dict | None = None) -> None:
            data = json.dumps({"error": code or "Not found"}).encode()
            self._send(status, {**(headers or {}), **({"X-Error-Code": code} if code else {}),
                                "Content-Type": "application/json", "Content-Length": str(len(data))},
                       data if self.command != "HEAD" else b"")

        def _send(self, status: int, headers: dict, data: bytes = b"") -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            cut = hub.cut_after if data and status in (200, 206) and "/resolve/" not in self.path else None
            if cut is not None:
                hub.cut_after = None
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.close_connection = True  # the client sees the body end before Content-Length
                return
            self.wfile.write(data)

    return Handler


def _is_lfs(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in LFS_PATTERNS)
