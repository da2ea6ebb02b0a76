# Two entry points a new user needs: `make demo` and `make test`.
# Both create .venv on first use. DDS discovery never leaves this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 42

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_ROOT ?= $(or $(TAAF_DATA_ROOT),../shared/data)

.PHONY: setup test demo bench bench-peers lint clean

setup: $(STAMP)

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: anything that depends on it must find it already there.
	$(BIN)/pip install --quiet -c constraints.txt torch
	$(BIN)/pip install --quiet -c constraints.txt -e ".[ros,dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q test

lint: $(STAMP)
	$(BIN)/ruff check .

# Where DATA_ROOT does not exist, the public FSDD and MNIST originals are downloaded instead.
demo: $(STAMP)
	$(BIN)/taaf_demo --data-root $(DATA_ROOT) $(if $(wildcard $(DATA_ROOT)),,--download)

# Peers that cannot share the project's environment (evlib imports torchvision when torch is
# installed, and fails on the project's pair) get one of their own.
PEERS := .venv-peers
bench-peers: $(PEERS)/.installed
$(PEERS)/.installed:
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install --quiet evlib
	touch $@

bench: $(STAMP) bench-peers
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_decode.py --data-root $(DATA_ROOT)
	$(BIN)/python benchmarks/bench_binning.py --data-root $(DATA_ROOT) --peer-python $(PEERS)/bin/python
	$(BIN)/python benchmarks/bench_cochlea.py --data-root $(DATA_ROOT)
	$(BIN)/python benchmarks/bench_network.py --data-root $(DATA_ROOT)
	$(BIN)/python benchmarks/bench_live.py

clean:
	rm -rf $(VENV) $(PEERS) build install log *.egg-info
