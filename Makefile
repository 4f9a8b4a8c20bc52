# localcode: `make demo` runs the main job on the built-in lab fleet; `make test` runs the tests.
# Both work as root on a fresh Debian/Ubuntu machine: `make setup` installs what they need.

VENV := .venv
BIN := $(VENV)/bin
# command:Debian package pairs the lab needs on the control machine
LAB_TOOLS := debootstrap:debootstrap systemd-nspawn:systemd-container nginx:nginx-light socat:socat \
	nft:nftables zstd:zstd ip:iproute2 ssh:openssh-client curl:curl npm:npm dpkg-deb:dpkg rsync:rsync tmux:tmux

PYTEST_ARGS ?=

.PHONY: setup demo test bench defaults onboard lab-up lab-down clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@missing=$$(for pair in $(LAB_TOOLS); do command -v $${pair%%:*} >/dev/null || echo $${pair#*:}; done); \
	python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		policy=/usr/sbin/policy-rc.d; own_policy=; \
		if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy; chmod +x $$policy; own_policy=1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		rc=$$?; [ -z "$$own_policy" ] || rm -f $$policy; [ $$rc -eq 0 ] || exit $$rc; \
	fi
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The main job on the lab fleet: bring it up, show its sizing plan, build the bundle the
# air-gapped host needs, deploy every host, end with the doctor's report (also as HTML),
# take the lab down (also when a step fails).
demo: setup
	$(BIN)/python -m lab up
	$(BIN)/localcode plan inventory/lab.py && \
	$(BIN)/python -m lab bundle && \
	$(BIN)/pyinfra -y inventory/lab.py deploy.py && \
	$(BIN)/localcode doctor inventory/lab.py --deep --html doctor-report.html; \
	rc=$$?; $(BIN)/python -m lab down; exit $$rc

# Unit and plan tests in one process (pyinfra's CLI patches the process with gevent); then the lab
# tests three modules at a time, each module with a lab of its own (name and subnet): they mostly
# wait on their hosts, so 2 cores run 3 of them.
test: setup
	$(BIN)/pytest --ignore=tests/lab $(PYTEST_ARGS)
	$(BIN)/pytest -n 3 --dist loadfile tests/lab $(PYTEST_ARGS)

# Set up the machine this runs on (its entry in inventory/team.py), as its developer:
# `make onboard ARGS="--bundle /media/usb/bundle"`; the same as ./onboard (for machines without make).
onboard:
	./onboard $(ARGS)

# Benchmarks (not tests): fleet converge at 1/4/8/16 hosts against an ssh fan-out floor, and
# transfers against raw cat|ssh and curl; figures in bench/results.md and bench/transfer.json.
bench: setup
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/transfer.py

# group_data/all.py, generated from HostConfig (localcode/settings.py): every key, its default and
# what it does. tests/test_defaults.py fails while the committed file differs.
defaults: setup
	$(BIN)/localcode defaults > group_data/all.py.tmp && mv group_data/all.py.tmp group_data/all.py

lab-up: setup
	$(BIN)/python -m lab up

lab-down: setup
	$(BIN)/python -m lab down

clean: lab-down
	rm -rf $(VENV) *.egg-info
