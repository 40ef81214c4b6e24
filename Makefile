# The two set-up commands of the README: `make demo` and `make test`. Each bootstraps .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# The other supported Pythons: the suite again on each but the tests marked `setups`, `tools` and `soak`
# (`make test-pythons`, run by CI; README).
PYTHONS ?= 3.10 3.12 3.13

.PHONY: demo test lint typecheck unit test-pythons bench clean

demo: $(VENV)/.installed
	$(BIN)/python examples/cluster.py

test: lint typecheck unit

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

unit: $(VENV)/.installed
	$(BIN)/pytest

test-pythons: $(PYTHONS:%=.venv-%/.installed)
	@for v in $(PYTHONS); do echo "== Python $$v"; .venv-$$v/bin/pytest -q -m "not setups and not soak and not tools" || exit 1; done

.venv-%/.installed: pyproject.toml
	"$$(.ci/find-python $*)" -m venv .venv-$*
	.venv-$*/bin/pip install --quiet --upgrade pip
	.venv-$*/bin/pip install --quiet -e '.[test]'
	touch $@

# Every benchmark; writes docs/benchmarks.md and docs/img/ (bench/ makes its own .venv-bench).
bench:
	$(PYTHON) -m bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) $(PYTHONS:%=.venv-%) .venv-bench .mypy_cache .pytest_cache .ruff_cache
