# The lab's sweep: an experiment's variants over a range of endpoint propagation lags.
# Included by the Makefile. Its short form (two lags, one run each) is lab/tests/test_sweep.py,
# which `make lab-short` (part of `make test`) runs.

##@ Lab

.PHONY: lab-sweep
lab-sweep: $(VENV)/.done ## EXP=folder (003-zero-downtime, long-lived): failed requests (or abnormal stream ends) against the lag, per variant; target/lab/<folder>/sweep.json and sweep.svg
	@scripts/deps.sh docker haproxy
	@[ -x target/dist/$(ARCH)/probe ] && docker image inspect $(addprefix $(REGISTRY),zero-downtime:green testpage:0.8 testpage:0.9) >/dev/null 2>&1 || $(MAKE) images
	nice $(PY) -m lab.sweep $(or $(LAB_EXP),003-zero-downtime)
