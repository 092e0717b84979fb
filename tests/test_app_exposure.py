"""What the served app exposes, and to whom: queue bound, share link, login, Host/Origin guard, URL inputs,
temporary folders, server paths, and the CPUs it counts. Each test serves its own app on a loopback port."""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from app import bank as banks
from app.search import Searcher

from test_app import free_port, query_file  # noqa: E402  (tests/ is on sys.path under pytest)
from test_bank import make_folder, make_model  # noqa: E402

gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A zoo with one model and its bank over a small gallery folder; yields the tmp folder (bank in tmp/bank)."""
    tmp = tmp_path_factory.mktemp("exposure")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_HOME", str(tmp / "zoo"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        make_model("gamma")
        banks.save(banks.build("gamma", str(make_folder(tmp / "gallery", per_label=3)), progress=False), tmp / "bank")
        yield tmp


@contextlib.contextmanager
def serving(home, **launch_kwargs):
    """The app over the bank, launched on a free loopback port; yields (app, url) and closes it after."""
    from app import ui

    app = ui.build_ui([banks.load(home / "bank")])
    port = free_port()
    ui.launch(app, port=port, prevent_thread_lock=True, quiet=True, **launch_kwargs)
    try:
        yield app, f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def upload(url, path, **kwargs) -> dict:
    """Upload ``path`` as the page does; the FileData payload that names the uploaded copy."""
    with open(path, "rb") as file:
        reply = httpx.post(f"{url}gradio_api/upload", files={"files": file}, timeout=30, **kwargs)
    reply.raise_for_status()
    return {"path": reply.json()[0], "meta": {"_type": "gradio.FileData"}}


def call(url, api, data) -> str:
    """One call through the queue API, as raw HTTP: the whole event stream of its answer."""
    event = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=30)
    event.raise_for_status()
    return httpx.get(f"{url}gradio_api/call/{api}/{event.json()['event_id']}", timeout=60).text


def outputs(stream: str) -> list:
    """The outputs of a completed call, from its event stream."""
    assert "event: complete" in stream, stream
    return json.loads(stream.split("event: complete\ndata:", 1)[1].strip().splitlines()[0])


def test_joins_beyond_the_queue_bound_are_told_the_app_is_busy(home, monkeypatch):
    from app import ui

    entered, release = threading.Event(), threading.Event()
    search_many = Searcher.search_many

    def held(self, images, ks):  # the first search holds the only worker until the test lets it go
        entered.set()
        release.wait(timeout=60)
        return search_many(self, images, ks)

    monkeypatch.setattr(Searcher, "search_many", held)
    monkeypatch.setattr(ui, "CONCURRENCY", 1)
    monkeypatch.setattr(ui, "MAX_QUEUE", 1)
    with serving(home) as (_, url):
        try:
            data = [upload(url, query_file(home, "busy.png")), "gamma", 2]
            assert httpx.post(f"{url}gradio_api/call/search", json={"data": data}, timeout=30).status_code == 200
            assert entered.wait(timeout=60)  # being answered: the queue is empty again
            assert httpx.post(f"{url}gradio_api/call/search", json={"data": data}, timeout=30).status_code == 200
            refused = httpx.post(f"{url}gradio_api/call/search", json={"data": data}, timeout=30)
            assert refused.status_code == 503 and "Queue is full" in refused.json()["detail"]
            with pytest.raises(gradio_client.utils.QueueError, match="try again"):
                gradio_client.Client(url, verbose=False).predict(gradio_client.handle_file(query_file(home, "b.png")),
                                                                 "gamma", 2, api_name="/search")
        finally:
            release.set()


def test_the_queue_is_bounded_by_default(home):
    from app import ui

    with serving(home) as (app, _):
        assert app._queue.max_size == ui.MAX_QUEUE == 4 * ui.CONCURRENCY * ui.MAX_BATCH


def test_no_share_link_whatever_the_environment_says(home, monkeypatch):
    import gradio.networking

    tunnels = []
    monkeypatch.setenv("GRADIO_SHARE", "True")
    monkeypatch.setattr(gradio.networking, "setup_tunnel", lambda **kw: tunnels.append(kw) or "https://x.gradio.live")
    with serving(home) as (app, _):
        assert tunnels == [] and app.share is False and app.share_url is None


def test_a_login_is_required_when_app_user_and_password_are_set(home, monkeypatch):
    monkeypatch.setenv("APP_USER", "ann")
    monkeypatch.setenv("APP_PASSWORD", "s3cret")
    with serving(home) as (_, url):
        anonymous = httpx.post(f"{url}gradio_api/call/search", json={"data": [None, "gamma", 2]}, timeout=30)
        assert anonymous.status_code == 401
        with open(query_file(home, "login.png"), "rb") as file:
            assert httpx.post(f"{url}gradio_api/upload", files={"files": file}, timeout=30).status_code == 401
        with pytest.raises(Exception):
            gradio_client.Client(url, auth=("ann", "wrong"), verbose=False)
        client = gradio_client.Client(url, auth=("ann", "s3cret"), verbose=False)
        _, status, rows = client.predict(gradio_client.handle_file(query_file(home, "login.png")), "gamma", 2,
                                         api_name="/search")
        assert len(rows) == 2, status


@pytest.mark.parametrize("given", ["APP_USER", "APP_PASSWORD"])
def test_a_user_without_a_password_or_the_reverse_is_refused(home, monkeypatch, given):
    from app import ui

    monkeypatch.delenv("APP_USER", raising=False)
    monkeypatch.delenv("APP_PASSWORD", raising=False)
    monkeypatch.setenv(given, "ann")
    app = ui.build_ui([banks.load(home / "bank")])
    with pytest.raises(ValueError, match=f"{given} is set but .* is not. Fix: set both"):
        ui.launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    assert not app.is_running


def test_foreign_host_headers_are_refused(home):
    with serving(home) as (_, url):
        port = url.rstrip("/").rsplit(":", 1)[1]
        for host in ["evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "", "[::1"]:
            reply = httpx.get(url, headers={"Host": host}, timeout=30)
            assert reply.status_code == 400 and "is not served here" in reply.text, host
        for host in [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"]:
            assert httpx.get(url, headers={"Host": host}, timeout=30).status_code == 200, host
        # a DNS-rebinding page's preflight: refused before Gradio's CORS layer could echo its origin
        preflight = httpx.options(f"{url}gradio_api/call/search", timeout=30, headers={
            "Host": "evil.example", "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 400 and "access-control-allow-origin" not in preflight.headers


def test_a_foreign_origin_is_refused_and_never_echoed(home):
    with serving(home) as (_, url):
        port = url.rstrip("/").rsplit(":", 1)[1]
        for host in [f"127.0.0.1:{port}", f"[::1]:{port}"]:  # Gradio's CORS echoes any origin to Host [::1]
            for origin in ["http://evil.example", "null"]:
                reply = httpx.get(f"{url}config", headers={"Host": host, "Origin": origin}, timeout=30)
                assert reply.status_code == 403 and "access-control-allow-origin" not in reply.headers, (host, origin)
        own = httpx.get(f"{url}config", headers={"Origin": url.rstrip("/")}, timeout=30)  # the app's own page
        assert own.status_code == 200


@pytest.fixture
def recording_server():
    """A loopback HTTP server that records every path asked of it; yields (base url, hits)."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server hook's name)
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(b"\x89PNG\r\n\x1a\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("api,extra", [("search", ["gamma", 2]), ("compare", [2])])
def test_image_urls_are_refused_and_never_fetched(home, recording_server, api, extra):
    base, hits = recording_server
    with serving(home) as (_, url):
        stream = call(url, api, [{"path": f"{base}/cat.png", "meta": {"_type": "gradio.FileData"}}, *extra])
    assert "Image URLs are not fetched by this app" in stream and "Fix: download the image" in stream
    assert hits == []


def test_a_refused_query_fails_only_its_own_request_in_a_batch(home):
    import asyncio

    from app import ui

    app = ui.build_ui([banks.load(home / "bank")])
    (search,) = [f for f in app.fns.values() if f.api_name == "search"]
    payloads = [{"path": "https://example.com/cat.png", "meta": {"_type": "gradio.FileData"}}, "a\0b"]
    refused = [asyncio.run(app.preprocess_data(search, [payload, "gamma", 2], None))[0] for payload in payloads]
    assert all(isinstance(query, ui.InputRefused) for query in refused)
    own = str(next((home / "gallery").rglob("*.png")))  # batched with them, as Gradio would
    _, notes, rows = search.fn([*refused, own], ["gamma"] * 3, [2] * 3)
    assert "Image URLs are not fetched" in notes[0] and "was not uploaded" in notes[1] and rows[:2] == [[], []]
    assert len(rows[2]) == 2


def test_answers_carry_no_server_path(home):
    with serving(home) as (app, url):
        stream = call(url, "search", [upload(url, query_file(home, "paths.png")), "gamma", 4])
        _, status, rows = outputs(stream)
        assert len(rows) == 4, status
        for row in rows:  # the path inside the gallery folder, e.g. bag/1.png
            assert not Path(row["ref"]).is_absolute() and (home / "gallery" / row["ref"]).is_file()
        bad = home / "letter.png"
        bad.write_text("not a picture")
        on_server = {"path": str(home / "gallery" / "bag" / "0.png"), "meta": {"_type": "gradio.FileData"}}
        errors = [call(url, "search", [upload(url, bad), "gamma", 2]), call(url, "compare", [on_server, 2])]
        assert all("**Error:**" in error for error in errors)
        for answer in [stream, *errors]:
            assert str(home) not in answer and str(home.resolve()) not in answer
        assert app.show_error is False  # Gradio's own exception texts stay on the server


def test_thumbnails_survive_a_tmp_cleaner_and_temp_folders_go_with_the_app(home):
    with serving(home) as (app, url):
        client = gradio_client.Client(url, verbose=False)
        query = gradio_client.handle_file(query_file(home, "again.png"))
        assert len(client.predict(query, "gamma", 3, api_name="/search")[2]) == 3
        temp = Path(app.temp_folder)
        assert (temp / "thumbnails").is_dir() and (temp / "examples").is_dir()
        shutil.rmtree(temp)  # as a tmp cleaner does while the app runs
        results, status, rows = client.predict(query, "gamma", 3, api_name="/search")
        assert len(rows) == 3 and len(results) == 3, status
        assert temp.is_dir()
    assert not temp.exists()


def test_concurrency_counts_the_cpus_this_process_may_use(monkeypatch):
    from app import ui

    assert ui.CONCURRENCY == ui.usable_cpus()
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's count...
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)  # ...of which this process has one
    assert ui.usable_cpus() == 1
