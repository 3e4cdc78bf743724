# testpage: every workflow. `make help` lists the targets.

SHELL          := bash
.SHELLFLAGS    := -eu -o pipefail -c
.DEFAULT_GOAL  := help

CARGO          ?= cargo
REQUIRE_DOCKER ?= 0
PORT           ?= 8080
ARCH           ?= $(shell uname -m | sed 's/arm64/aarch64/')
REGISTRY       ?=
NAME           ?= testpage
VENV           := .venv
PY             := $(VENV)/bin/python
KIND_CLUSTER   ?= kind
K3D_CLUSTER    ?= k3s-default
CLUSTER_TOOL   ?= kind
# Where `make install` puts probe and testpage: PREFIX/bin (cargo's default: ~/.cargo/bin).
PREFIX         ?= $(or $(CARGO_INSTALL_ROOT),$(CARGO_HOME),$(HOME)/.cargo)

export REQUIRE_DOCKER REGISTRY

# Workflows with a file of their own (mk/*.mk: the chart, the release) add their checks here.
TEST_EXTRA :=
LINT_EXTRA :=
include $(sort $(wildcard mk/*.mk))

##@ Everyday

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z0-9_-]+:.*##/ {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: install
install: ## Put probe and testpage on the PATH: PREFIX/bin (PREFIX=~/.cargo; PREFIX=/usr/local)
	$(CARGO) install --locked --force --root "$(PREFIX)" --target-dir "$${CARGO_TARGET_DIR:-$(CURDIR)/target}" --path probes
	$(CARGO) install --locked --force --root "$(PREFIX)" --target-dir "$${CARGO_TARGET_DIR:-$(CURDIR)/target}" --path testpage
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; *) echo "install: add $(PREFIX)/bin to your PATH";; esac

.PHONY: uninstall
uninstall: ## Remove what `make install` put in PREFIX/bin
	$(CARGO) uninstall --root "$(PREFIX)" probes
	$(CARGO) uninstall --root "$(PREFIX)" testpage

.PHONY: run
run: ## Build and start testpage on :8080 (PORT=, VERSION=; Ctrl-C drains and exits)
	$(CARGO) run --release --locked -p testpage -- --port $(PORT)

.PHONY: test
test: lint doc unit test-images validate lab-short bench-quick $(TEST_EXTRA) ## Everything that checks the project (REQUIRE_DOCKER=1 in CI)

.PHONY: lint
lint: $(VENV)/.done $(LINT_EXTRA) ## Format check, clippy with warnings denied, Dockerfile lint, ruff on the Python, mypy on the lab
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(VENV)/bin/hadolint images/Dockerfile images/Dockerfile.build
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --no-error-summary --cache-dir target/mypy-lab -p lab

.PHONY: unit
unit: ## Unit and integration tests (they spawn the real binaries)
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --locked --no-fail-fast; \
	else \
		echo "cargo-nextest not found; using cargo test"; \
		$(CARGO) test --workspace --locked; \
	fi

.PHONY: doc
doc: ## API docs, warnings denied
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked

# The pinned tools, then the repository's own Python (pyproject.toml: the lab package and
# scripts/testlib.py), editable, so that both import by name from any folder.
$(VENV)/.done: requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

##@ Build and images

.PHONY: build
build: ## Static release binaries in target/dist/ARCH/ (ARCH=x86_64 or aarch64)
	@[ "$(ARCH)" = "$$(uname -m | sed 's/arm64/aarch64/')" ] || scripts/deps.sh aarch64-linux-gnu-gcc
	images/build-binaries.sh $(ARCH)

# On Linux with Rust: binaries here, then images/Dockerfile. Elsewhere (an arm64 Mac): compiled
# inside images/Dockerfile.build with docker buildx (images/build-plan.sh decides and says why not).
.PHONY: images
images: ## Build every image variant (images/variants.tsv) for ARCH
	@plan=$$(images/build-plan.sh $(ARCH)); \
	if [ "$$plan" = host ]; then $(MAKE) build && images/build-images.sh --arch $(ARCH); \
	else images/build-images.sh --buildx --arch $(ARCH); fi

.PHONY: image
image: ## Build one image: make image NAME=testpage VERSION=0.9
	@plan=$$(images/build-plan.sh $(ARCH)); \
	if [ "$$plan" = host ]; then $(MAKE) build && images/build-images.sh --arch $(ARCH) $(NAME) $(VERSION); \
	else images/build-images.sh --buildx --arch $(ARCH) $(NAME) $(VERSION); fi

.PHONY: images-arm64
images-arm64: ## Build every variant for linux/arm64 (tags end in -arm64)
	$(MAKE) images ARCH=aarch64

.PHONY: images-multiarch
images-multiarch: ## Build and push amd64+arm64 manifest lists with buildx (needs REGISTRY)
	@docker buildx version >/dev/null 2>&1 || { echo "images-multiarch needs docker buildx"; exit 1; }
	@[ -n "$(REGISTRY)" ] || { echo "set REGISTRY, e.g. REGISTRY=docker.io/you/"; exit 1; }
	images/build-multiarch.sh

.PHONY: push
push: ## Push every variant to REGISTRY (multi-arch where buildx exists)
	@[ -n "$(REGISTRY)" ] || { echo "set REGISTRY, e.g. REGISTRY=docker.io/you/"; exit 1; }
	@if docker buildx version >/dev/null 2>&1; then images/build-multiarch.sh; \
	else $(MAKE) images && for ref in $$(images/build-images.sh --list); do docker push "$$ref"; done; fi

.PHONY: kind-load
kind-load: ## Load every built tag into kind (KIND_CLUSTER=kind)
	kind load docker-image --name $(KIND_CLUSTER) $$(images/build-images.sh --list)

.PHONY: minikube-load
minikube-load: ## Load every built tag into minikube
	for ref in $$(images/build-images.sh --list); do minikube image load "$$ref"; done

.PHONY: k3d-load
k3d-load: ## Load every built tag into k3d (K3D_CLUSTER=k3s-default)
	k3d image import --cluster $(K3D_CLUSTER) $$(images/build-images.sh --list)

.PHONY: test-images
test-images: $(VENV)/.done ## Build the images and test them in real containers (Docker)
	@scripts/deps.sh docker qemu-aarch64-static aarch64-linux-gnu-gcc
	@if command -v docker >/dev/null && docker info >/dev/null 2>&1; then \
		$(MAKE) images && $(MAKE) build ARCH=aarch64; \
	elif [ "$(REQUIRE_DOCKER)" = 1 ]; then echo "test-images: Docker is required (REQUIRE_DOCKER=1)"; exit 1; \
	else echo "test-images: skipped: no Docker engine"; fi
	$(PY) -m pytest -q -rs images/tests

##@ The lab: the experiments of k8s/ run from their own manifests on one machine (Docker + haproxy)

DURATION ?= 60
# `make lab` runs every experiment; `make lab EXP=003-zero-downtime` one of them.
LAB_EXP = $(if $(filter file undefined,$(origin EXP)),,$(EXP))

.PHONY: lab
lab: $(VENV)/.done ## Every experiment (or EXP=folder) under load, DURATION=60 s at least; results in target/lab/
	@scripts/deps.sh docker haproxy
	@[ -x target/dist/$(ARCH)/probe ] && docker image inspect $(REGISTRY)zero-downtime:green >/dev/null 2>&1 || $(MAKE) images
	$(PY) -m lab --duration $(DURATION) $(LAB_EXP)

.PHONY: lab-short
lab-short: $(VENV)/.done ## The lab's short run, the live view in a browser, the analysis queries (lab-analysis), the Python helpers' tests (part of make test)
	@scripts/deps.sh docker haproxy chromium chromedriver prometheus zh-font
	@if docker info >/dev/null 2>&1; then \
		[ -x target/dist/$(ARCH)/probe ] && docker image inspect $(REGISTRY)zero-downtime:green >/dev/null 2>&1 || $(MAKE) images; fi
	$(PY) -m pytest -q -rs scripts/tests lab/tests

# Prometheus runs as the scenario's own process (Debian's package), never as a service.
.PHONY: lab-analysis
lab-analysis: $(VENV)/.done ## The Argo Rollouts and Flagger queries on a real Prometheus; writes target/lab/analysis.json
	@scripts/deps.sh docker prometheus
	@[ -x target/dist/$(ARCH)/probe ] && docker image inspect $(REGISTRY)testpage:0.9 >/dev/null 2>&1 || $(MAKE) images
	$(PY) -m lab.analysis

##@ Benchmarks

.PHONY: bench
bench: ## Side-by-side benchmarks; writes bench/RESULTS.md and bench/results.svg (about 5 min)
	@scripts/deps.sh wrk taskset nginx valgrind strace go hey
	@[ -x target/dist/$(ARCH)/testpage ] || $(MAKE) build
	python3 bench/run.py

.PHONY: bench-quick
bench-quick: $(VENV)/.done ## The benchmark harness in a second per figure (part of make test; asserts nothing about numbers)
	@scripts/deps.sh wrk taskset nginx valgrind strace
	@[ -x target/dist/$(ARCH)/testpage ] || $(MAKE) build
	$(PY) -m pytest -q -rs -s bench/tests

##@ Kubernetes experiments (k8s/; against the current kubectl context)

EXP ?= 000-rolling-update

.PHONY: validate
validate: $(VENV)/.done ## Validate every manifest offline (schemas 1.30-1.37, CRDs, project rules)
	@command -v kubectl >/dev/null || { echo "validate: kubectl is required (kustomize rendering)"; exit 1; }
	$(PY) k8s/validate.py
	$(PY) -m pytest -q k8s/tests

.PHONY: deploy
deploy: ## Apply an experiment: make deploy EXP=000-rolling-update
	@scripts/k8s.sh context deploy
	@# REGISTRY=ghcr.io/you/: the published images, by a kustomize image override of k8s/$(EXP)
	@# (release/registry-overlay.sh); without it, the images loaded into the cluster.
	@if [ -n "$(REGISTRY)" ]; then set -x; kubectl apply -k "$$(release/registry-overlay.sh $(EXP) $(REGISTRY))"; \
	else set -x; kubectl apply -k k8s/$(EXP); fi

.PHONY: upgrade
upgrade: ## Roll an experiment to another version: make upgrade EXP=000-rolling-update TO=0.9
	scripts/k8s.sh upgrade $(EXP) $(TO)

.PHONY: rollback
rollback: ## Undo the last rollout of an experiment's Deployment(s)
	scripts/k8s.sh rollback $(EXP)

.PHONY: status
status: ## Show an experiment's pods and rollout status
	scripts/k8s.sh status $(EXP)

.PHONY: watch
watch: ## probe watch the experiment's NodePort (URL= to override)
	scripts/k8s.sh watch $(EXP) $(URL)

.PHONY: undeploy
undeploy: ## Delete an experiment's objects
	@scripts/k8s.sh context undeploy
	kubectl delete -k k8s/$(EXP) --ignore-not-found

.PHONY: cluster
cluster: ## A local cluster with every NodePort on localhost (CLUSTER_TOOL=kind|k3d|minikube)
	scripts/k8s.sh cluster $(CLUSTER_TOOL) $(if $(filter k3d,$(CLUSTER_TOOL)),$(K3D_CLUSTER),$(KIND_CLUSTER))

.PHONY: cluster-delete
cluster-delete: ## Delete the cluster `make cluster` made (same CLUSTER_TOOL)
	scripts/k8s.sh cluster-delete $(CLUSTER_TOOL) $(if $(filter k3d,$(CLUSTER_TOOL)),$(K3D_CLUSTER),$(KIND_CLUSTER))

LOAD ?= -c 8 --qps 500 -t 60s

.PHONY: client
client: ## Start the in-cluster client (k8s/tools, namespace testpage-tools)
	@scripts/k8s.sh context client
	kubectl apply -k k8s/tools
	kubectl -n testpage-tools rollout status deployment/client --timeout=120s

.PHONY: client-watch
client-watch: ## probe watch from inside the cluster: make client-watch URL=http://SERVICE.NAMESPACE:PORT/
	scripts/k8s.sh client-watch "$(URL)"

.PHONY: client-load
client-load: ## probe load from inside the cluster: make client-load URL=... LOAD="-c 8 --qps 500 -t 60s"
	scripts/k8s.sh client-load "$(URL)" $(LOAD)

.PHONY: client-delete
client-delete: ## Remove the in-cluster client
	@scripts/k8s.sh context client-delete
	kubectl delete -k k8s/tools --ignore-not-found

##@ Housekeeping

.PHONY: clean
clean: ## Remove build output and the Python venv
	$(CARGO) clean
	rm -rf $(VENV)
