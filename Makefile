# testpage: every workflow. `make help` lists the targets.

SHELL          := bash
.SHELLFLAGS    := -eu -o pipefail -c
.DEFAULT_GOAL  := help

CARGO          ?= cargo
REQUIRE_DOCKER ?= 0
PORT           ?= 8080
VERSION        ?= dev
ARCH           ?= $(shell uname -m | sed 's/arm64/aarch64/')

export REQUIRE_DOCKER

##@ Everyday

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z_-]+:.*##/ {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Build and start testpage on :8080 (PORT=, VERSION=; Ctrl-C drains and exits)
	$(CARGO) run --release --locked -p testpage -- --port $(PORT) --app-version $(VERSION)

.PHONY: test
test: lint unit ## Everything that checks the project (REQUIRE_DOCKER=1 in CI)

.PHONY: lint
lint: ## Format check and clippy with warnings denied
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: unit
unit: ## Unit and integration tests (spawn the real binaries)
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --locked --no-fail-fast; \
	else \
		echo "cargo-nextest not found; using cargo test"; \
		$(CARGO) test --workspace --locked; \
	fi

.PHONY: doc
doc: ## API docs, warnings denied
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked

##@ Build

.PHONY: build
build: ## Static release binaries in target/dist/ARCH/ (ARCH=x86_64 or aarch64)
	images/build-binaries.sh $(ARCH)

.PHONY: clean
clean: ## Remove build output
	$(CARGO) clean
