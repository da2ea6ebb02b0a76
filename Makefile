# Two entry points a new user needs: `make demo` and `make test`.
# Both create .venv on first use. DDS discovery never leaves this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 42

PYTHON ?= python3
# ROS 2 distribution of the PyPI wheels: kilted (default) or jazzy (LTS), one venv each.
ROS_DISTRO ?= kilted
ifeq ($(ROS_DISTRO),kilted)
VENV := .venv
EXTRAS := ros,interfaces,train,dev
else ifeq ($(ROS_DISTRO),jazzy)
VENV := .venv-jazzy
EXTRAS := ros-jazzy,interfaces-jazzy,train,dev
else
$(error ROS_DISTRO=$(ROS_DISTRO): choose kilted or jazzy)
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_ROOT ?= $(or $(TAAF_DATA_ROOT),../shared/data)

.PHONY: setup test test-fast demo bench bench-gpu device-prep bench-peers lint clean interfaces ros2-tools

setup: $(STAMP)

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: anything that depends on it must find it already there.
	$(BIN)/pip install --quiet -c constraints.txt torch
	$(BIN)/pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	# `source $(VENV)/bin/activate` then puts the venv on AMENT_PREFIX_PATH (the ros2 tools)
	$(BIN)/taaf_build_interfaces --activate-only
	touch $(STAMP)

test: $(STAMP) ros2-tools
	$(BIN)/python -m pytest -q test

# The inner loop: everything but the DDS tests (marked ros) and the trainings (marked slow).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not ros and not slow" test

# The real `ros2 launch`, `ros2` CLI and launch_testing, for the tests: not on PyPI, installed
# from their sources in ../shared/vendor when that folder exists (a ROS install has them; a
# user's pip-only venv needs none of it). Without it, the tests that need them are skipped.
VENDOR ?= ../shared/vendor/ros2-python-tools/$(ROS_DISTRO)
ROS2_TOOLS := osrf_pycommon launch launch_xml launch_yaml launch_ros rosidl_runtime_py ros2cli \
	ros2topic ros2node ros2param ros2lifecycle ros2service ros2pkg ros2run ros2interface \
	ros2launch launch_testing launch_testing_ros
TOOLS_STAMP := $(VENV)/.ros2-tools

ros2-tools: $(STAMP)
	@if [ -d "$(VENDOR)" ]; then $(MAKE) --no-print-directory $(TOOLS_STAMP); \
	else echo "no $(VENDOR): tests of ros2 launch and the ros2 CLI will be skipped"; fi

$(TOOLS_STAMP): $(STAMP)
	# A writable copy: pip builds in the source folder, and shared/ is read-only.
	rm -rf $(VENV)/ros2-tools-src && cp -r $(VENDOR) $(VENV)/ros2-tools-src
	chmod -R u+w $(VENV)/ros2-tools-src
	$(BIN)/pip install --quiet setuptools wheel psutil netifaces
	for d in $(ROS2_TOOLS); do \
	  $(BIN)/pip install --quiet --no-deps --no-build-isolation $(VENV)/ros2-tools-src/$$d \
	  || exit 1; done
	# launch_ros imports composition_interfaces (a service package, not on PyPI either).
	$(BIN)/taaf_build_interfaces --source $(VENV)/ros2-tools-src/composition_interfaces
	touch $@

# The drivers' message packages, built into the venv (the tests also do this on first use).
interfaces: $(STAMP)
	$(BIN)/taaf_build_interfaces

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

# The prepared device check (CUDA tests, the network per dtype, a training epoch, torchrun
# with NCCL: one generated table); on the GPU machine as ../shared/docs/DEVICE.md runs it.
bench-gpu:
	bash benchmarks/device_check.sh

# What the GPU machine lacks, into .gpu/ (ignored; name it in the device tool's carry): the
# pure-Python packages the model and trainer import, copied from this venv, and the AV-digits
# sources (the check builds the dataset there).
GPU_PACKAGES := norse nir nirtorch tonic tyro docstring_parser typeguard importRosbag
device-prep: $(STAMP)
	rm -rf .gpu && mkdir -p .gpu/site .gpu/data
	sp=$$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
	for p in $(GPU_PACKAGES); do cp -r $$sp/$$p $$sp/$$p-*.dist-info .gpu/site/; done
	cp -r $(DATA_ROOT)/fsdd $(DATA_ROOT)/mnist .gpu/data/
	du -sh .gpu

# Every benchmark with its reference in the same run, recorded into docs/bench/results/, then
# the generated page docs/bench/README.md and the README's headline table (bench_page.py).
RESULTS := docs/bench/results
LIVE := --wire event_packet --rates 0.5,1,2,4,5 --front-ends auto
bench: $(STAMP) bench-peers
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_network.py --data-root $(DATA_ROOT) --compile --record $(RESULTS)/network.json
	$(BIN)/python benchmarks/bench_training.py --data-root $(DATA_ROOT) --record $(RESULTS)/training.json
	$(BIN)/python benchmarks/bench_live.py $(LIVE) --markdown docs/bench/live_event_packet.md --record $(RESULTS)/live_default.json
	$(BIN)/python benchmarks/bench_live.py $(LIVE) --backend eager --markdown docs/bench/live_event_packet_eager.md --record $(RESULTS)/live_eager.json
	$(BIN)/python benchmarks/bench_live.py --wire pointcloud2 --rates 1,2 --front-ends auto,per_window --markdown docs/bench/live_pointcloud2.md --record $(RESULTS)/live_pointcloud2.json
	$(BIN)/python benchmarks/bench_decode.py --data-root $(DATA_ROOT) --record $(RESULTS)/decode.json
	$(BIN)/python benchmarks/bench_binning.py --data-root $(DATA_ROOT) --peer-python $(PEERS)/bin/python --record $(RESULTS)/binning.json
	$(BIN)/python benchmarks/bench_cochlea.py --data-root $(DATA_ROOT) --record $(RESULTS)/cochlea.json
	$(BIN)/python benchmarks/bench_lif.py --record $(RESULTS)/lif.json
	$(BIN)/python benchmarks/bench_dataset.py --data-root $(DATA_ROOT) --markdown docs/bench/dataset.md --record $(RESULTS)/dataset.json
	$(BIN)/python benchmarks/bench_page.py

clean:
	rm -rf .venv .venv-jazzy $(PEERS) build install log *.egg-info
