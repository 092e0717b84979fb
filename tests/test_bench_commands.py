"""Every benchmark is a command: `--help` describes it and runs nothing (some take an hour, and write
BENCHMARKS.md), and an unknown option is refused before any work."""
import importlib
import importlib.util
import pkgutil

import pytest

import bench

COMMANDS = sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                  if "__main__" in (importlib.util.find_spec(f"bench.{m.name}").loader.get_source(f"bench.{m.name}")))


def test_every_benchmark_with_a_main_is_found():
    assert {"demo_startup", "bad_inputs", "vs_lightly", "knn_fmnist", "claims"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_describes_the_benchmark_and_runs_nothing(name, capsys, monkeypatch):
    module = importlib.import_module(f"bench.{name}")
    monkeypatch.setattr(bench.report, "write_section", lambda *a, **k: pytest.fail("--help wrote BENCHMARKS.md"))
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0 and f"python -m bench.{name}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        module.main(["--no-such-option"])
    assert refused.value.code == 2 and f"python -m bench.{name}: error:" in capsys.readouterr().err
