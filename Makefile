# Two commands cover the quick start: `make run` and `make test` (see README).
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
export PATH := $(abspath $(BIN)):$(PATH)
# when this make started (before any install): `make run` and `make test` report their wall time
STARTED := $(shell date +%s)
.DEFAULT_GOAL := help

.PHONY: timings help install system-packages run test test-all params constraints ui serve promote bench-serving bench-workload bench-trees peer-olive image docs lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv -c constraints.txt   # uv installs the pinned set in seconds (tools/install.py)
	$(BIN)/python -m tools.install $(BIN)/python -e ".[dev]" -c constraints.txt
	touch $@

install: $(BIN)/.installed ## create .venv and install the project with its dev tools

system-packages: ## Debian's postgresql and wrk, when missing (tests and bench-serving use them)
	bash tests/system_packages.sh

run: install ## install, then rebuild everything with `dvc repro` and say where the results are
	python -m tools.params
	python -m tools.prune_lock   # entries of stages no longer in the pipeline: DVC would rewrite them around every stage
	python -m tools.registry_state; if [ $$? -eq 3 ]; then dvc repro --force; else dvc repro; fi
	@python -m tools.check_lock || echo "(outputs differ from the committed locks: see above)"
	@echo
	@python -m tools.timings run --since $(STARTED)
	@echo
	@echo "Results:"
	@echo "  summary          reports/summary.md"
	@echo "  per-model        reports/validate/<model>.json  reports/benchmark/<model>.json  reports/package/<model>.json"
	@echo "  dvc              dvc metrics show   |   dvc plots show  (writes dvc_plots/index.html)"
	@echo "  MLflow UI        make ui   then open http://127.0.0.1:5000  (store: mlflow.db, artifacts: mlartifacts/)"

test: install system-packages ## install, then run the default test suite (no GPU needed)
	pytest -n 2 --dist loadgroup   # two workers: the shared smoke run's tests on one (tests/conftest.py)
	@python -m tools.timings test --since $(STARTED)

test-all: install system-packages ## every test, the slow ones included
	pytest -n 2 --dist loadgroup -m "slow or not slow"

timings: install ## render reports/timings.json (written by make run / make test) into the README
	python -m tools.timings readme

params: install ## rewrite params.yaml from conf/ (DVC tracks params.yaml)
	python -m tools.params

constraints: install ## re-pin constraints.txt to what is installed (after changing pyproject.toml)
	@head -2 constraints.txt > constraints.new
	$(BIN)/pip list --format=freeze --exclude-editable | grep -viE "^(onnxship|pip|setuptools|wheel)==" >> constraints.new
	mv constraints.new constraints.txt
	python -m tools.install_inputs

ui: install ## MLflow UI on the embedded store
	mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

serve: install ## serve every model's `champion` version on http://127.0.0.1:8000 (follows the alias)
	python -m serving.http.serve --host 127.0.0.1 --port 8000

promote: install ## move `champion` to the version aliased `candidate`: make promote MODEL=xgboost [VERSION=3]
	python -m serving.registry.promote $(MODEL) $(if $(VERSION),--version $(VERSION))

bench-workload: install ## the registered forecasters on M3 and Tourism monthly, native vs ONNX -> reports/workloads/ (after make run)
	python -m tools.bench_workload

bench-trees: install ## the tree models vs their libraries, ORT graphs and compiled trees (lleaves, TL2cgen) -> reports/peers/trees.json (after make run)
	python -m tools.install $(BIN)/python -e ".[dev,peers]" -c constraints.txt
	python -m tools.bench_trees

peer-olive: install ## Olive's automatic routes vs our registered variant on the same graph -> reports/peers/olive.json (MODEL=chronos2_release_speed)
	tools/peer_olive.sh models/onnx/$(or $(MODEL),chronos2_release_speed)/model.onnx .peer-olive/$(or $(MODEL),chronos2_release_speed)
	python -m tools.peer_compare $(or $(MODEL),chronos2_release_speed) .peer-olive/$(or $(MODEL),chronos2_release_speed)

image: install system-packages ## build the serving image (podman or docker; pinned by constraints.txt) -> reports/image.json
	python -m tools.image

bench-serving: install system-packages ## our server vs `mlflow models serve` under wrk load -> reports/serving.json
	python -m tools.bench_serving

docs: install ## build the manual (docs/) into site/ with `mkdocs build --strict`
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict   # (the variable silences a banner about MkDocs 2)

lint: install ## ruff lint and format check
	ruff check . && ruff format --check .

format: install ## ruff format and autofix
	ruff format . && ruff check --fix .

clean: ## remove pipeline outputs and the MLflow store (keeps .venv)
	rm -rf data models mlflow.db mlartifacts .serving-cache reports/validate reports/benchmark reports/package reports/summary.* dvc_plots
