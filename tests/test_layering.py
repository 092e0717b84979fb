"""The floors: `zoo` imports neither `train` nor `app`; `app` never imports `train`. Read from the source
(ast), so that an import inside a function or behind a condition counts too."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"zoo": {"train", "app"}, "app": {"train"}}


def imported_packages(source: str, module: str) -> set[str]:
    """The top-level packages that ``source`` (the module named ``module``, e.g. "zoo.convert") imports:
    import statements, relative ones resolved, and importlib.import_module / __import__ of a literal."""
    package = module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
                found.add(target[0] if target else "")  # a relative import above the top: a broken import
            else:
                found.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            found.add(str(node.args[0].value).split(".")[0])
    return found


def modules(package: str):
    """(dotted name, path) of every module; a package's __init__ keeps its name ("zoo.__init__"), so that
    its relative imports resolve from the package itself."""
    for path in sorted((ROOT / package).rglob("*.py")):
        yield ".".join(path.relative_to(ROOT).with_suffix("").parts), path


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_floor_never_imports_the_floors_above_it(package):
    breaches = [f"{path.relative_to(ROOT)} imports {name}"
                for module, path in modules(package)
                for name in sorted(imported_packages(path.read_text(), module) & FORBIDDEN[package])]
    assert list(modules(package)) and not breaches, "; ".join(breaches)


def test_the_check_sees_every_form_of_import():
    assert imported_packages("import train.engine", "zoo.x") == {"train"}
    assert imported_packages("from train import engine", "app.x") == {"train"}
    assert imported_packages("def f():\n    from app.bank import Bank", "zoo.x") == {"app"}
    assert imported_packages("from . import card", "zoo.convert") == {"zoo"}
    assert imported_packages("from ..train import engine", "zoo.sub.x") == {"zoo"}  # zoo.train, not train
    assert imported_packages("from .. import x", "zoo.sub.x") == {"zoo"}
    assert imported_packages("importlib.import_module('train.engine')", "app.x") == {"train"}
