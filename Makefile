# expreg: every install step lives here. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# The tests and benchmarks pin this CPU build of PyTorch (it installs from local disk here).
TORCH  ?= torch==2.13.0

.PHONY: demo test bench docs install-demo install-test install-bench install-docs clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

$(VENV)/.demo-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e '.[experiments]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q '$(TORCH)'
	$(PIP) install -q -e '.[test]'
	touch $@

$(VENV)/.bench-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q '$(TORCH)'
	$(PIP) install -q -e '.[test,bench]'
	touch $@

$(VENV)/.docs-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q '$(TORCH)'
	$(PIP) install -q -e '.[docs]'
	touch $@

install-demo: $(VENV)/.demo-installed
install-test: $(VENV)/.test-installed
install-bench: $(VENV)/.bench-installed
install-docs: $(VENV)/.docs-installed

# The main job: quick presets of three experiments (about 2-3 minutes on 2 cores), then the report.
# Re-running resumes: finished runs are skipped. DEMO_OUT and DEMO_JOBS can be overridden.
DEMO_OUT  ?= results/demo
DEMO_JOBS ?=
demo: install-demo
	$(VENV)/bin/expreg run convergence --preset quick --out $(DEMO_OUT) $(if $(DEMO_JOBS),--jobs $(DEMO_JOBS))
	$(VENV)/bin/expreg run lazy --preset quick --out $(DEMO_OUT) $(if $(DEMO_JOBS),--jobs $(DEMO_JOBS))
	$(VENV)/bin/expreg run width --preset quick --out $(DEMO_OUT) $(if $(DEMO_JOBS),--jobs $(DEMO_JOBS))
	@echo
	@echo "== headline numbers (width: m* ~ n^a, the theorem says a = 2) =="
	@$(VENV)/bin/expreg report --reuse $(DEMO_OUT)

# The suite, the docstring examples of src/expreg, then the docs build (a broken example or reference fails).
test: install-test install-docs
	$(PY) -m pytest -q --doctest-modules src/expreg tests
	$(MAKE) --no-print-directory docs

# The documentation site into docs/_build/html: warnings are errors, no network (the gallery runs its examples).
docs: install-docs
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

# `make bench BENCH_ARGS=--quick` for a short run; see benchmarks/run_all.py --help
BENCH_ARGS ?=
bench: install-bench
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache docs/_build docs/api/generated docs/auto_examples
