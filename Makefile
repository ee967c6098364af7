# The two commands that matter: `make run` and `make test`. Each creates or updates the local
# virtual environment first, so on a fresh machine they are all the set-up there is.
PYTHON ?= python3.11
VENV   ?= .venv
# Optional extras installed with the project: `make test EXTRAS=dev,rllib` adds RLlib for the PPO baseline
# (.ci/run does); without it, the PPO tests are skipped with the reason.
EXTRAS ?= dev
PY     := $(VENV)/bin/python
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: run test lint venv clean mlflow-ui

venv: $(STAMP)

# Reinstall only when the project definition changes. torch==2.13.0 is pinned in pyproject.toml so
# that pip takes the local CPU wheel instead of a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

# The quickstart sweep end to end (datasets, 8 Ray Tune trials, MLflow), then its table; open the UI with
# `make mlflow-ui`. Results land in ./mlruns.db, ./mlartifacts and ./runs/sweeps.
run: $(STAMP)
	RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/attention-tuner sweep sweeps/quickstart.py
	$(VENV)/bin/attention-tuner report --sweep quickstart --out runs/reports/quickstart
	@echo "MLflow UI: make mlflow-ui, then open http://127.0.0.1:5000 (experiment 'quickstart')"

lint: $(STAMP)
	$(VENV)/bin/ruff check platform tasks tests bench sweeps
	$(VENV)/bin/ruff check --select A005 platform tasks
	$(VENV)/bin/mypy platform/attention_tuner tasks/memory_tasks bench tests

test: $(STAMP) lint
	RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/pytest -q tests

mlflow-ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns.db --host 127.0.0.1 --port 5000

clean:
	rm -rf $(VENV) build *.egg-info
