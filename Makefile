# One entry point for developers and CI: every target creates .venv and installs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATASETS_DIR ?= /tmp/mlgate-public-datasets
TEST_WORKERS ?= 2  # pytest-xdist processes for `make test` (tests of one file stay in one process)
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export GIT_PYTHON_REFRESH := quiet

.PHONY: install demo test bench datasets lint wheel clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/mlgate demo

test: install
	$(BIN)/python -m pytest -q --durations=25 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: install
	$(BIN)/python -m benchmarks

# Three public data sets (binary, multiclass, regression) from `mlgate init` through `mlgate demo`, each in
# its own new repository under $(DATASETS_DIR) (about 15 minutes; see examples/public_datasets/README.md).
datasets: install
	$(BIN)/python examples/public_datasets/run.py --out $(DATASETS_DIR)

wheel: install
	rm -rf build dist/mlgate-*.whl
	$(BIN)/python -m pip wheel --no-deps --quiet -w dist .
	rm -rf build
	@ls dist/mlgate-*.whl

lint: install
	$(BIN)/ruff check mlgate gates pipelines serving tests benchmarks examples

clean:
	rm -rf $(VENV) reports metrics models data/*.parquet mlflow.db mlartifacts build dist
