# Entry points: `make demo` and `make test` set up everything on a fresh Debian machine.
BUILD ?= build
JOBS ?= $(shell nproc)
BUILD_TYPE ?= RelWithDebInfo

.PHONY: all deps build demo test bench bench-smoke clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	$(BUILD)/bin/wm_demo
	WM_WORK_MANAGER=threads $(BUILD)/bin/wm_demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300

# Benchmark every installed backend against the floor (bench/README.md); results in bench/results/.
bench: build
	python3 bench/run.py --build $(BUILD) --update-readme

# The same with tiny N and one run (what ctest's bench.smoke runs); results in $(BUILD)/bench-smoke.
bench-smoke: build
	python3 bench/run.py --build $(BUILD) --smoke --check --out $(BUILD)/bench-smoke

clean:
	rm -rf $(BUILD)
