# bpfring developer entry points.  Every target installs what it needs first
# (idempotent, fast when already there).  Run as root on Debian 12.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LINT_DIRS := $(wildcard src tests examples benchmarks)

.PHONY: deps venv demo test test-pure lint typecheck docs bench clean

# System packages (scripts/setup-system.sh lists them and why).
deps:
	@bash scripts/setup-system.sh

# The venv, repaired when broken; the C accelerator's build is checked.
$(STAMP): pyproject.toml setup.py MANIFEST.in src/bpfring/_speedups.c src/bpfring/_speedups_perf.c src/bpfring/_speedups_batch.c src/bpfring/_speedups_decode.c src/bpfring/_speedups_vm.c src/bpfring/_speedups_vm_loop.c src/bpfring/_speedups_vm_maps.c src/bpfring/_speedups_vm_rings.c scripts/install-venv.sh
	@bash scripts/install-venv.sh $(PYTHON) $(VENV)
	@touch $(STAMP)

venv: deps
	@test -x $(PY) && $(PY) -m pip --version >/dev/null 2>&1 || rm -f $(STAMP)
	@$(MAKE) --no-print-directory $(STAMP)

demo: deps venv
	$(VENV)/bin/bpfring demo --count 5 --trigger

# CI: lint, types, the docs site, then the suite.
test: deps venv
	$(PY) -m ruff check $(LINT_DIRS)
	$(PY) -m mypy --strict src/bpfring
	@$(MAKE) --no-print-directory docs
	$(PY) -m pytest $(PYTEST_ARGS)

# The same suite with the C accelerator switched off: the pure-Python ring
# core is the reference implementation and must keep passing on its own.
test-pure: deps venv
	BPFRING_PURE_PYTHON=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check $(LINT_DIRS)

typecheck: venv
	$(PY) -m mypy --strict src/bpfring

# The documentation site (mkdocs.yml): README as the home page, docs/*.md, and
# the API reference from the docstrings; any warning fails the build.
docs: venv
	$(VENV)/bin/mkdocs build --strict --quiet

bench: deps venv
	$(VENV)/bin/bpfring bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache src/bpfring/*.so
