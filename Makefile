# expreg: every install step lives here. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# The tests and benchmarks pin this CPU build of PyTorch (it installs from local disk here).
TORCH  ?= torch==2.13.0

.PHONY: demo test bench install-demo install-test install-bench clean

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

install-demo: $(VENV)/.demo-installed
install-test: $(VENV)/.test-installed
install-bench: $(VENV)/.bench-installed

demo: install-demo
	$(VENV)/bin/expreg train --n 64 --d 16 --m 16384 --seed 0

test: install-test
	$(PY) -m pytest -q

bench: install-bench
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
