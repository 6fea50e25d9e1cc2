# Hourglass: `make run` sets up and starts it; `make test` sets up and passes the tests.
# Installs what is missing: Debian packages through apt-get (root, or sudo),
# Python packages into .venv. A second run only checks, so it starts in seconds.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Podman only Recommends its init (catatonit), netavark with aardvark-dns (names on task
# networks) and iptables (netavark's firewall): a new machine gets them only from here.
RUN_PACKAGES := podman runc catatonit netavark aardvark-dns iptables python3-venv busybox-static mmdebstrap openssh-client
# `make monitoring` (and `make run MONITORING=1`): Prometheus and node-exporter, run by
# Hourglass itself (never Debian's system services).
MONITORING_PACKAGES := prometheus prometheus-node-exporter
# The tests' two-node Slurm cluster (tests/slurm_cluster.py) runs its own daemons, never the
# system services: slurm-wlm's parts are named one by one, as each service is named after its
# package (slurm-client has none).
SLURM_PACKAGES := slurm-client slurmctld slurmd slurmrestd munge
SLURM_SERVICES := $(filter-out slurm-client,$(SLURM_PACKAGES))
TEST_PACKAGES := chromium fonts-noto-cjk postgresql openssh-server $(MONITORING_PACKAGES) $(SLURM_PACKAGES)
TRANSLATIONS := portal/translations
MO_FILES := $(patsubst %.po,%.mo,$(wildcard $(TRANSLATIONS)/*/LC_MESSAGES/messages.po))

.PHONY: run test lint images jupyter-image translations-update run-packages test-packages packages
.PHONY: monitoring monitoring-packages

# `make run MONITORING=1` also runs Prometheus and node-exporter beside Hourglass.
WITH_MONITORING := $(filter 1 on yes true,$(MONITORING))

run: run-packages $(if $(WITH_MONITORING),monitoring-packages) $(VENV)/.run $(MO_FILES)
	$(if $(WITH_MONITORING),HOURGLASS_MONITORING=on )$(VENV)/bin/flask --app app serve

# Prometheus (127.0.0.1:9090) and node-exporter for the instance, in the foreground; Ctrl-C
# stops both. Hourglass's charts read this Prometheus while it runs.
monitoring: run-packages monitoring-packages $(VENV)/.run
	$(VENV)/bin/flask --app app monitoring run

test: run-packages test-packages $(VENV)/.test $(MO_FILES) jupyter-image
	$(VENV)/bin/pytest

images: run-packages $(VENV)/.run jupyter-image
	$(VENV)/bin/flask --app app images probe

# The notebooks' JupyterLab image (needs network for apt and PyPI the first time);
# a check of a second or two when it exists.
jupyter-image: run-packages $(VENV)/.run
	$(VENV)/bin/flask --app app images jupyter

lint: $(VENV)/.test
	$(VENV)/bin/ruff check .

# Load: bench/locustfile.py's 50 renters and 2 miners for LOAD_TIME against a server of
# its own on a temp instance (bench/load.py); prints requests, p95 per page, failures.
LOAD_TIME ?= 5m
.PHONY: bench-load
bench-load: run-packages $(VENV)/.test $(MO_FILES)
	$(VENV)/bin/python bench/load.py --time $(LOAD_TIME)

# Installs only the Debian packages that are missing. The system services of those in $(2)
# that it installed are stopped and disabled where systemd runs: Debian starts Prometheus
# and node-exporter on every interface, while Hourglass runs its own on 127.0.0.1.
define apt_ensure
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null && \
	  for p in $$missing; do case " $(2) " in *" $$p "*) \
	    if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now -q $$p || exit 1; fi;; \
	  esac; done; \
	fi
endef

run-packages:
	$(call apt_ensure,$(RUN_PACKAGES))

test-packages:
	$(call apt_ensure,$(TEST_PACKAGES),$(MONITORING_PACKAGES) $(SLURM_SERVICES))

monitoring-packages:
	$(call apt_ensure,$(MONITORING_PACKAGES),$(MONITORING_PACKAGES))

# The Debian packages make installs (the fresh-machine test reads them here).
packages:
	@echo $(RUN_PACKAGES) $(TEST_PACKAGES)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

$(VENV)/.run: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@ $(VENV)/.run

%.mo: %.po $(VENV)/.run
	$(VENV)/bin/pybabel compile -i $< -o $@

# For developers: collect new strings from code and templates into the .po files.
translations-update: $(VENV)/.run
	$(VENV)/bin/pybabel extract -F $(TRANSLATIONS)/babel.cfg -k _l -k N_ -o $(TRANSLATIONS)/messages.pot .
	$(VENV)/bin/pybabel update --ignore-obsolete -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS)
