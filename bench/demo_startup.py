"""Time to a serving app for `make demo` on a fresh clone: the first run and the one after.

    python -m bench.demo_startup            # clones this repository's HEAD to a temporary folder

The first run starts from nothing: a new clone (no .venv), an empty $ZOO_HOME and an empty
Hugging Face cache, offline, so it builds the virtual environment (pip takes the wheels from
this machine's disk or cache), trains the one-epoch `demo` preset and embeds the 10k-image
bank. The second run finds all of that and only starts the server. Each time is from
`make demo` to the first HTTP 200 on http://127.0.0.1:PORT/.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from .load_app import free_port
from .report import write_section

ROOT = Path(__file__).resolve().parents[1]


def serve_time(clone: Path, env: dict, log: Path, limit: float = 1800) -> float:
    """Seconds from `make demo` to the first answered page; the demo is stopped afterwards."""
    began = time.monotonic()
    with log.open("w") as out:
        demo = subprocess.Popen(["make", "demo"], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        while time.monotonic() - began < limit:
            if demo.poll() is not None:
                raise RuntimeError(f"make demo exited with {demo.returncode}; see {log}")
            try:
                if httpx.get(f"http://127.0.0.1:{env['APP_PORT']}/", timeout=2).status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"no page within {limit:.0f} s; see {log}")
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(60)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.demo_startup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="demo-startup-"))
    try:
        clone = work / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = dict(os.environ, ZOO_HOME=str(work / "zoo"), HF_HOME=str(work / "hf"), HF_HUB_OFFLINE="1",
                   APP_PORT=str(free_port()))
        first = serve_time(clone, env, work / "first.log")
        second = serve_time(clone, env, work / "second.log")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = f"""
`python -m bench.demo_startup`: `make demo` on a fresh clone of HEAD, offline, with an empty
`$ZOO_HOME` and Hugging Face cache, until the app answers on loopback. The first run builds
`.venv` (pip installs from wheels on this machine's disk), trains the one-epoch `demo` preset
and embeds the 10k-image bank; the second finds them and starts the server. Goal: 10 minutes,
then under one.

| run | seconds to a serving app |
|---|---|
| first (nothing there) | {first:.0f} |
| second | {second:.0f} |
"""
    print(body)
    if not args.no_write:
        write_section("Demo start-up", body)


if __name__ == "__main__":
    main()
