# akua-operator: every entry point a developer or CI needs.
# `make test` on a fresh machine installs what the tests need (Python deps from uv.lock,
# the control-plane binaries built from Go modules), then runs the lint gates and all tests.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION ?= 0.13.9
VENV := .venv
# uv itself is pinned and installed into a project-local tools venv, so a fresh machine needs
# only python3 (and a machine with another uv on PATH still gets the pinned one).
UV_HOME := .tools/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
RUN := $(UV) run --frozen --no-sync
PYTEST_ARGS ?=

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

.PHONY: venv
venv: $(UV) ## Create .venv from uv.lock (exact pinned versions; with the simulator extra)
	$(UV) sync --frozen --extra sim --python $(PYTHON)

.PHONY: testbin
testbin: ## Build (or reuse) kube-apiserver, kube-controller-manager, kubectl, etcd, helm and promtool from Go modules
	hack/testbin/build.sh

.PHONY: system-deps
system-deps: ## Install the Debian packages the tests need (buildah, debootstrap); fast when present
	hack/install-system-deps.sh

.PHONY: demo
demo: venv ## Local control plane + Akua simulator + operator: an AkuaCluster created, watched, deleted
	hack/demo.sh

.PHONY: sim
sim: venv ## Run the Akua API simulator on 127.0.0.1:8080 (token sk_akua_test; docs/simulator.md)
	$(RUN) akua-sim --host 127.0.0.1 --port 8080 --token sk_akua_test --step-seconds 2

.PHONY: lint
lint: venv ## ruff, mypy --strict, import-linter layering contracts
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports

.PHONY: test
test: system-deps venv lint ## Install what the tests need, then run lint gates and all tests
	@TESTBIN="$$(hack/testbin/build.sh | tail -n1)"; \
	echo "control-plane binaries: $$TESTBIN"; \
	AKUA_TESTBIN="$$TESTBIN" $(RUN) pytest $(PYTEST_ARGS)

.PHONY: bench
bench: venv ## Deletion benchmark: N AkuaClusters deleted at once (BENCH_ARGS="--n 100 --duration 10 --baseline")
	@TESTBIN="$$(hack/testbin/build.sh | tail -n1)"; \
	AKUA_TESTBIN="$$TESTBIN" $(RUN) python bench/run.py $${BENCH_ARGS:---n 100 --duration 10 --baseline}

.PHONY: chaos-full
chaos-full: venv ## The chaos suite at full scale (50 deletions, 15 kills, 8 kills of the active replica of two, 3 etcd restarts, 1500 malformed answers)
	@TESTBIN="$$(hack/testbin/build.sh | tail -n1)"; \
	AKUA_TESTBIN="$$TESTBIN" $(RUN) pytest tests/chaos --chaos-full $(PYTEST_ARGS)

.PHONY: release
release: system-deps venv ## Build into dist/: the chart (.tgz), the image (OCI archive), its SBOM, SHA256SUMS (docs/release.md)
	HELM="$${HELM:-$$(hack/testbin/build.sh | tail -n1)/helm}" hack/release.sh

.PHONY: deploy-manifests
deploy-manifests: ## Regenerate deploy/ from the Helm chart (run after changing the chart or the CRD)
	HELM="$${HELM:-$$(hack/testbin/build.sh | tail -n1)/helm}" hack/gen-deploy.sh

.PHONY: fmt
fmt: venv ## Format and autofix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

.PHONY: clean
clean: ## Remove local build and test artefacts (not the binary cache)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist
