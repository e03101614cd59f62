# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first
# (system libraries for Blender when run as root, then one `pip install -e .[test]`).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all lint format bench venv system clean

venv: $(STAMP)

system:
	@bash scripts/install_system_deps.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0) if v == (3, 11) else print("warning: bpy (Blender) wheels exist for Python 3.11 only; this is %d.%d, rendering will be unavailable" % v)'
	@bash scripts/install_system_deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check datagen mmcl scripts benchmarks experiments tests
	$(BIN)/ruff format --check datagen mmcl scripts benchmarks experiments tests

format: $(STAMP)
	$(BIN)/ruff check --fix datagen mmcl scripts benchmarks experiments tests
	$(BIN)/ruff format datagen mmcl scripts benchmarks experiments tests

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_precision.py
	$(BIN)/python benchmarks/bench_render.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_probe.py
	$(BIN)/python benchmarks/bench_demo_cpu.py
	$(BIN)/python benchmarks/bench_integrity.py

clean:
	rm -rf runs/demo .pytest_cache
