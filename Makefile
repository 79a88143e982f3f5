# Caption Zoo. The two commands users need:
#   make demo   set up and launch the comparison app on the bundled demo zoo (offline)
#   make test   set up and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Offline by design: never wait on the hub, never phone home.
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false

.PHONY: setup lock lint browser prometheus postgres java test demo demo-zoo bench screenshot clean

setup: $(STAMP)

# torch is pinned to 2.13.0 (a CPU wheel here); torchvision is deliberately not installed.
# requirements.lock pins every transitive dependency, so a fresh install is the one that was tested.
$(STAMP): requirements.txt requirements-test.txt requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt -c requirements.lock
	touch $(STAMP)

# Regenerate the lock after changing requirements*.txt (pip-tools resolves from the package registry).
# The local "+cpu" label is dropped so that a GPU machine's CUDA wheel of the same torch version satisfies it.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip-tools==7.6.2
	$(VENV)/bin/pip-compile --quiet --strip-extras --allow-unsafe --no-header --annotate --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.lock requirements-test.txt
	sed -i 's/^\(torch==[0-9.]*\)+cpu$$/\1/' requirements.lock

lint: setup
	$(PY) -m ruff check .

# The end-to-end browser test drives Debian's Chromium (Playwright cannot download its own browsers).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; \
	  else echo "note: /usr/bin/chromium missing and cannot be installed here; the browser test will be skipped"; fi; \
	fi

# The metrics test runs Debian's Prometheus on a port of its own. A policy-rc.d that refuses (101) keeps apt
# from starting the packaged daemon as a service on :9090; --no-install-recommends leaves out node-exporter.
prometheus:
	@if [ ! -x /usr/bin/prometheus ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    made=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	      chmod +x /usr/sbin/policy-rc.d; made=1; fi; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      prometheus) >/dev/null; status=$$?; \
	    if [ -n "$$made" ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$status; \
	  else echo "note: /usr/bin/prometheus missing and cannot be installed here; the Prometheus test will be skipped"; fi; \
	fi

# The rating store's PostgreSQL tests start Debian's PostgreSQL server themselves (tests/postgres_server.py: a
# throwaway cluster on 127.0.0.1 and a free port). A policy-rc.d that refuses (101) keeps apt from starting the
# packaged cluster as a service on :5432; without the binaries those tests are skipped.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    made=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	      chmod +x /usr/sbin/policy-rc.d; made=1; fi; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      postgresql) >/dev/null; status=$$?; \
	    if [ -n "$$made" ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$status; \
	  else echo "note: PostgreSQL (/usr/lib/postgresql/*/bin/initdb) missing and cannot be installed here; the PostgreSQL tests will be skipped"; fi; \
	fi

# The COCO caption metrics run Java: pycocoevalcap's PTB tokenizer (so BLEU/METEOR/ROUGE-L/CIDEr equal the official
# numbers) and its METEOR jar. Debian's headless JRE; without it those tests are skipped and scoring falls back to
# the regex tokenizer, saying so.
java:
	@if ! command -v java >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      default-jre-headless) >/dev/null; \
	  else echo "note: java missing and cannot be installed here; the COCO-metric tests will be skipped"; fi; \
	fi

test: setup browser prometheus postgres java lint
	OMP_NUM_THREADS=1 $(PY) -m pytest

demo: setup
	$(PY) app.py --zoo model_zoo

# Retrains the committed demo entries (three from scratch, then the SCST fine-tune of one) from a freshly
# generated shapes dataset: about 16 minutes on 2 cores.
demo-zoo: setup
	$(PY) -m trainer.demo_zoo --zoo model_zoo

bench: setup
	$(PY) bench/generation.py
	$(PY) bench/natural_length.py

# The README's picture of the rating screen: the rating-screen browser test's steps on the demo zoo.
screenshot: setup browser
	OMP_NUM_THREADS=1 $(PY) docs/screenshot.py

clean:
	rm -rf $(VENV) .pytest_cache runs .cache test-artifacts
