# TVLT framework: set-up, tests, benchmarks.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install test test-cluster bench demo clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench,sweep]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with the test, bench and sweep extras

test: $(STAMP)  ## run the test suite
	$(BIN)/python -m pytest -q

SLURM_TOOLS := slurmctld slurmd srun sbatch scontrol munged

test-cluster: $(STAMP)  ## SLURM sweep and preemption tests on a local one-node cluster (root; installs SLURM with apt)
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "make test-cluster: needs root, to start munged, slurmctld and slurmd (scripts/slurm_local.sh)" >&2; \
	  exit 1; fi
	@PATH="$$PATH:/usr/sbin:/sbin"; for tool in $(SLURM_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	  if [ -n "$$missing" ]; then bash scripts/slurm_local.sh install; fi
	$(BIN)/python -m pytest -q -m cluster tests/test_cluster.py --durations=0

bench: $(STAMP)  ## run the benchmarks (this project vs transformers==4.40.2, same run)
	$(BIN)/python -m bench

demo: $(STAMP)  ## the main job on the embedded demo data
	$(BIN)/python run.py experiment=mosei

clean:  ## remove caches and outputs (keeps .venv)
	rm -rf .pytest_cache outputs multirun bench/results/tmp
