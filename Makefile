# The two commands of the README: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup data browser test demo bench

setup: $(VENV)/.installed

# The package leaves torch unpinned; constraints.txt pins the builds on this project's machines.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# Fashion-MNIST from Debian where apt is at hand; elsewhere torchvision downloads it on first use.
data:
	@if [ -d $(FMNIST) ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null; \
	else echo "Fashion-MNIST: $(FMNIST) is missing; run 'sudo apt-get install dataset-fashion-mnist', or keep the network on so torchvision downloads it."; fi

# Debian's Chromium for the browser test (Playwright drives it; nothing is downloaded by Playwright).
browser:
	@if command -v chromium >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq chromium || (apt-get update -qq && apt-get install -y -qq chromium)) >/dev/null; \
	else echo "chromium is missing: the browser test will be skipped ('sudo apt-get install chromium' runs it)."; fi

test: setup data browser
	$(PY) -m ruff check zoo train app bench tests
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

demo: setup data
	$(PY) -m app.demo

bench: setup data
	$(PY) -m bench.knn_fmnist --skip-trained
	$(PY) -m bench.claims --train --skip-trained
	$(PY) -m bench.leaderboard
	$(PY) -m bench.throughput
	$(PY) -m bench.layout
	$(PY) -m bench.compile_gain
	$(PY) -m bench.load_app
	$(PY) -m bench.app_bombs
	$(PY) -m bench.bad_inputs
	$(PY) -m bench.ann_recall
	$(PY) -m bench.demo_startup
# against lightly and kornia, installed only here (the bench extra); kNN after the presets' 4 epochs on each side
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) -m bench.views
	$(PY) -m bench.step_ops
	$(PY) -m bench.vs_lightly --epochs 4
