"""`pip install contrastive-zoo` is a library: the core requirements are what `import zoo` and `zoo.load` need
(torch, timm, safetensors, huggingface-hub); training, the app, the tests and the benchmarks are extras."""
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import timm
import torch

import zoo.checkpoint
from test_layering import imported_packages

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "contrastive-zoo"
CORE = {"torch", "timm", "safetensors", "huggingface-hub"}
# the extra each folder's imports must be covered by (together with the core)
FOLDER_EXTRA = {"zoo": None, "train": "train", "app": "app", "bench": "bench", "tests": "test"}
LOCAL = {"zoo", "train", "app", "bench", "tests", "conftest"} | {path.stem for path in (ROOT / "tests").glob("*.py")}
MADE_BY_TESTS = {"lib"}  # tests/test_convert.py writes a package of this name to pickle the authors' classes


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def extra_names(extra: str | None) -> set[str]:
    """The distributions the core plus ``extra`` declare, extras of this project included recursively."""
    project = pyproject()
    names, todo, seen = {requirement_name(r) for r in project["dependencies"]}, [extra], set()
    while todo:
        current = todo.pop()
        if current is None or current in seen:
            continue
        seen.add(current)
        for requirement in project["optional-dependencies"][current]:
            if requirement_name(requirement) == PROJECT:
                todo += [e.strip() for e in re.search(r"\[(.*)\]", requirement).group(1).split(",")]
            else:
                names.add(requirement_name(requirement))
    return names


def installed_closure(names: set[str]) -> set[str]:
    """``names`` and everything they require as installed here, leaving out their own extras."""
    closure, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in closure or name == PROJECT:
            continue
        closure.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:  # e.g. uvloop where its marker leaves it out
            continue
        todo += [requirement_name(r) for r in requires if not re.search(r"\bextra\s*==", r)]
    return closure


def extras_only_modules() -> set[str]:
    """Top-level import names provided only by distributions that the extras bring and the core does not."""
    core = installed_closure(CORE)
    extras = installed_closure(set().union(*(extra_names(e) for e in pyproject()["optional-dependencies"])))
    refused = set()
    for module, dists in importlib.metadata.packages_distributions().items():
        dists = {normalise(d) for d in dists}
        if dists <= extras - core and not module.startswith("__"):
            refused.add(module)
    return refused


CHILD = r"""
import os, sys
refused = set(sys.argv[1].split(","))
tried = set()  # (refused module, the first file outside the import machinery that asked for it)


class Hidden:
    # a meta-path finder that finds nothing of a refused package: to `import` and importlib.util.find_spec
    # alike, it is not installed
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in refused:
            frame, machinery = sys._getframe(1), ("<frozen", os.path.dirname(os.__file__) + "/importlib")
            while frame and frame.f_code.co_filename.startswith(machinery):
                frame = frame.f_back
            tried.add((name, frame.f_code.co_filename if frame else "?"))
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attribute):
        return getattr(self.finder, attribute)


sys.meta_path[:] = [Hidden(finder) for finder in sys.meta_path]
for name in sorted(refused):
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"the refusal does not work: {name} imports")
tried.clear()

import torch
import zoo
folder, inputs, out = sys.argv[2:5]
with torch.no_grad():
    torch.save(zoo.load(folder)(torch.load(inputs)), out)
print("\n".join(f"{name} {where}" for name, where in sorted(tried)))
"""


def test_import_zoo_and_load_work_without_any_extra(tmp_path):
    refused = extras_only_modules()
    # the check is only as good as its list: the heavy packages of the extras must be on it
    heavy = {"gradio", "faiss", "matplotlib", "lightly", "playwright", "pytest", "pandas"}
    assert {name for name in heavy if importlib.util.find_spec(name)} <= refused  # lightly: only with [bench]
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=0, channels=(8, 16, 32, 64), stem_width=8).eval()
    zoo.checkpoint.save(model, tmp_path / "tiny", card="# tiny test model\n",
                        data_config=dict(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0,
                                         interpolation="bilinear"),
                        model_args=dict(channels=[8, 16, 32, 64], stem_width=8))
    x = torch.randn(2, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = model(x)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ZOO_HOME": str(tmp_path / "zoo"), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", CHILD, ",".join(sorted(refused)), str(tmp_path / "tiny"),
                          str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert torch.allclose(torch.load(tmp_path / "y.pt"), expected, atol=1e-6)
    # torch and timm probe for optional packages (pandas, ...); this project's own code must not
    own = tuple(str(ROOT / package) + os.sep for package in ("zoo", "train", "app", "bench"))
    ours = [line for line in run.stdout.splitlines() if line.split(" ", 1)[1].startswith(own)]
    assert not ours, "zoo asked for an extra's package on the import/load path: " + "; ".join(ours)


def test_wheel_requires_only_the_core(tmp_path):
    pytest.importorskip("setuptools")
    source = tmp_path / "src"  # a copy: building in place would write build/ and egg-info into the work tree
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    for package in ("zoo", "train", "app"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "-w", str(tmp_path / "dist"), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("contrastive_zoo-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(name).decode())
    requires = metadata.get_all("Requires-Dist")
    core = [r for r in requires if "extra ==" not in r]
    assert {requirement_name(r) for r in core} == CORE and len(core) == len(CORE), core
    assert not [r for r in core if "==" in r], f"the core pins a version: {core}"
    assert {"train", "app", "test", "bench"} <= set(metadata.get_all("Provides-Extra"))
    assert any(r.startswith("lightly==1.6.0") and 'extra == "bench"' in r for r in requires)


@pytest.mark.parametrize("folder", sorted(FOLDER_EXTRA))
def test_every_import_is_declared_by_the_folders_extra(folder):
    """A third-party import in train/ must be a requirement of [train] (or the core, or what those require), etc."""
    allowed = installed_closure(extra_names(FOLDER_EXTRA[folder]))
    providers = importlib.metadata.packages_distributions()
    missing = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        module, source = ".".join(path.relative_to(ROOT).with_suffix("").parts), path.read_text()
        optional = {m.split(".")[0] for m in re.findall(r"importorskip\(\s*[\"']([\w.]+)", source)}  # skip if absent
        for name in sorted(imported_packages(source, module) - optional):
            if name in sys.stdlib_module_names or name in LOCAL or name in MADE_BY_TESTS:
                continue
            # a package this machine lacks (lightly outside [bench]) must at least be declared by its own name
            dists = {normalise(d) for d in providers.get(name, [])} or {normalise(name)}
            if not dists & allowed:
                where = ", ".join(sorted(dists)) or "not installed"
                missing.append(f"{path.relative_to(ROOT)} imports {name} ({where})")
    assert not missing, f"not declared by [{FOLDER_EXTRA[folder]}]: " + "; ".join(missing)


def test_setup_installs_the_pinned_builds_and_test_runs_ruff_first():
    constraints = (ROOT / "constraints.txt").read_text().split()
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= set(constraints)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*-c constraints\.txt .*-e '\.\[test\]'", makefile)
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert recipe.index("ruff check") < recipe.index("pytest")
    assert "make test" in (ROOT / ".ci" / "run").read_text()
