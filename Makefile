# Every entry point of the project. `make help` lists them.
# The first target that needs Python bootstraps uv and .venv from uv.lock; nothing else is needed.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
SYNCED := $(VENV)/.synced
export PATH := $(BIN):$(PATH)
export UV_LINK_MODE := copy

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

$(SYNCED): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras
	@touch $@

.PHONY: install
install: $(SYNCED) ## create .venv from uv.lock (done by every target that needs it)

.PHONY: repro
repro: $(SYNCED) ## run the DVC pipeline (only the stages whose inputs changed)
	dvc repro

.PHONY: schema
schema: $(SYNCED) ## infer the validation schema from data.source and write it for review
	python -m mlops.data.schema --params params.yaml

.PHONY: test
test: $(SYNCED) ## run the whole test suite
	pytest

.PHONY: lint
lint: $(SYNCED) ## ruff (lint + format check) and mypy on the package
	ruff check src tests
	ruff format --check src tests
	mypy

.PHONY: format
format: $(SYNCED) ## apply ruff's fixes and formatting
	ruff check --fix src tests
	ruff format src tests

.PHONY: monitor
monitor: $(SYNCED) ## run the monitoring sidecar (127.0.0.1:8090; settings: docs/monitoring.md)
	python -m mlops.monitor

# --- Container image and deployment (docs/deploy.md) ---------------------------------------------
IMAGE ?= mlops:latest

.PHONY: image base-image deploy-resources up down test-deps
image: ## build the scorer+sidecar image with docker or podman (CA_BUNDLE=<pem> behind a TLS proxy)
	IMAGE="$(IMAGE)" scripts/image.sh

base-image: ## build python:3.11-slim from Debian packages, for machines without a registry
	scripts/base-image.sh python

deploy-resources: $(SYNCED) ## write deploy/k8s/resources.yaml from models/package/resources.json
	python scripts/k8s-resources.py

up: ## run scorer + sidecar + Prometheus locally (deploy/compose.yaml), building what is missing
	IMAGE="$(IMAGE)" scripts/compose.sh up

down: ## stop the local compose project (its volumes stay)
	scripts/compose.sh down

test-deps: ## install the system tools the tests use (Prometheus, podman, ...) from Debian
	scripts/install-test-deps.sh
