"""Write one section of BENCHMARKS.md, leaving the others as they are."""
from __future__ import annotations

import platform
import re
import time
from pathlib import Path

import torch

REPORT = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nFigures written by the scripts in `bench/` (`make bench`); each section says how it was made.\n"


def machine() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    return f"{device}, torch {torch.__version__}, {platform.python_implementation()} {platform.python_version()}"


def device_title(title: str, device: torch.device) -> str:
    """The section ``title`` of figures measured on ``device``: a GPU's stand in a section of their own, beside the
    CPU's."""
    return title + (" on a GPU" if device.type == "cuda" else "")


def write_section(title: str, body: str) -> None:
    text = REPORT.read_text() if REPORT.exists() else HEADER
    section = f"## {title}\n\n_{time.strftime('%Y-%m-%d')}, {machine()}_\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    REPORT.write_text(text)


def remove_section(title: str) -> None:
    """Drop the section ``title`` (one a bench has superseded), leaving the others as they are."""
    if REPORT.exists():
        pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
        REPORT.write_text(pattern.sub("", REPORT.read_text()))
