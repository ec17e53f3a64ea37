# expreg: every install step lives here. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# The tests and benchmarks pin this CPU build of PyTorch (it installs from local disk here).
TORCH  ?= torch==2.13.0

.PHONY: demo test bench profile docs install-demo install-test install-bench install-docs clean install-chromium install-npm
.PHONY: test-min install-min dist lint install-lint parity install-nt

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

# Debian's headless Chromium: the suite opens the built site and the report in it (network off).
# npm: the docs build fetches MathJax from the npm registry once (docs/vendor_mathjax.py).
# Installed with apt-get where missing; CI runs as root, elsewhere the command to run is printed.
APT_INSTALL = if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); \
	else echo "missing: run 'sudo apt-get install -y $(1)'" >&2; exit 1; fi
install-chromium:
	@command -v chromium >/dev/null 2>&1 || { $(call APT_INSTALL,chromium); }
install-npm:
	@command -v npm >/dev/null 2>&1 || { $(call APT_INSTALL,npm); }

install-demo: $(VENV)/.demo-installed
install-test: $(VENV)/.test-installed
install-bench: $(VENV)/.bench-installed
install-docs: $(VENV)/.docs-installed install-npm

# The main job: quick presets of three experiments, then the report.
# Re-running resumes: finished runs are skipped. DEMO_OUT and DEMO_JOBS can be overridden.
DEMO_OUT  ?= results/demo
DEMO_JOBS ?=
demo: install-demo
	$(VENV)/bin/expreg run convergence --preset quick --out $(DEMO_OUT) $(if $(DEMO_JOBS),--jobs $(DEMO_JOBS))
	$(VENV)/bin/expreg run lazy --preset quick --out $(DEMO_OUT) $(if $(DEMO_JOBS),--jobs $(DEMO_JOBS))
	$(VENV)/bin/expreg run width --preset quick --out $(DEMO_OUT) $(if $(DEMO_JOBS),--jobs $(DEMO_JOBS))
	@echo
	@echo "== headline numbers (width: m* ~ n^a over the n measured; the theorem's [paper] n^2 holds lambda fixed) =="
	@$(VENV)/bin/expreg report --reuse $(DEMO_OUT)

# Lint first (ruff, mypy), then the docs build (a broken example or reference fails), then the suite
# (which runs every code block of README.md and docs/, and opens the built pages in headless Chromium)
# and the docstring examples of src/expreg: pytest's summary is the last line it prints.
test: install-test install-docs install-lint install-chromium install-nt
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory docs
	$(PY) -m pytest -q --doctest-modules src/expreg tests

# The documentation site into docs/_build/html: warnings are errors, no network (the gallery runs its examples).
docs: install-docs
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

# `make bench BENCH_ARGS=--quick` for a short run; see benchmarks/run_all.py --help
BENCH_ARGS ?=
bench: install-bench
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

# `make profile`: where one step's time goes on this CPU (GEMM, exp, reductions), into this CPU's
# section of benchmarks/RESULTS.md. Run it on a quiet machine (load average well under the cores).
profile: install-bench
	$(PY) benchmarks/profile_step.py --md benchmarks/RESULTS.md

# `make parity`: expreg beside neural-tangents 0.6.5 on every shared quantity; writes docs/parity.md and
# benchmarks/parity.json. neural-tangents 0.6.5 needs jax/jaxlib 0.4.23, which need numpy < 2 and a scipy that
# still has scipy.linalg.tril (< 1.13); its experimental module imports tensorflow, whose ml-dtypes must
# import under numpy 1.x (0.5.1 does): all in their own venv, from PyPI, never in $(VENV). `make test` builds it
# too, so the peer-library tests (tests/test_parity_nt.py) run rather than skip.
NT_VENV ?= benchmarks/.nt-venv
NT_PKGS := neural-tangents==0.6.5 jax==0.4.23 jaxlib==0.4.23 "numpy<2" "scipy<1.13" ml-dtypes==0.5.1

$(NT_VENV)/.installed:
	$(PYTHON) -m venv $(NT_VENV)
	$(NT_VENV)/bin/python -m pip install -q --disable-pip-version-check $(NT_PKGS)
	touch $@

install-nt: $(NT_VENV)/.installed

parity: install-bench install-nt
	$(PY) benchmarks/parity.py --nt-python $(NT_VENV)/bin/python --out docs/parity.md --json benchmarks/parity.json

# `make test-min`: the whole suite at the lowest versions pyproject.toml declares
# (uv's lowest-direct resolution: each declared dependency at its lower bound, the
# rest at the newest that fits), in its own venv. torch stays the CPU build pinned
# above: pip installs it from local disk, and uv leaves it out of its resolution
# (a lowest-direct torch from the registry would be a multi-GB CUDA build).
# --upgrade-package setuptools: the venv already has a newer one, which uv would keep.
VENV_MIN ?= .venv-min
PY_MIN   := $(VENV_MIN)/bin/python

$(VENV_MIN)/.min-installed: pyproject.toml
	rm -rf $(VENV_MIN)
	$(PYTHON) -m venv $(VENV_MIN)
	$(PY_MIN) -m pip install -q --disable-pip-version-check uv '$(TORCH)'
	echo torch > $(VENV_MIN)/excludes.txt
	$(VENV_MIN)/bin/uv pip install -q --python $(PY_MIN) --resolution lowest-direct \
	    --excludes $(VENV_MIN)/excludes.txt --upgrade-package setuptools -e '.[test]'
	touch $@

install-min: $(VENV_MIN)/.min-installed

test-min: install-min install-chromium docs
	$(VENV_MIN)/bin/uv pip list --python $(PY_MIN) > $(VENV_MIN)/versions.txt
	$(PY_MIN) -m pytest -q --doctest-modules src/expreg tests

# `make dist`: the sdist and wheel in dist/, checked by twine.
dist: install-test
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*

# `make lint`: ruff (lint and format check) and mypy, configured in pyproject.toml.
$(VENV)/.lint-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q '$(TORCH)'
	$(PIP) install -q -e '.[test,lint]'
	touch $@

install-lint: $(VENV)/.lint-installed

lint: install-lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(VENV_MIN) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
	rm -rf docs/_build docs/_vendor docs/api/generated docs/auto_examples
