# Entry points: `make demo` and `make test` set up everything on a fresh Debian machine.
BUILD ?= build
JOBS ?= $(shell nproc)
BUILD_TYPE ?= RelWithDebInfo

.PHONY: all deps build demo test test-asan bench bench-smoke clean

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

# Every test again under AddressSanitizer + UndefinedBehaviorSanitizer (leaks included), in its own
# build tree. handle_segv=0: the crash-matrix tests need a worker to die by SIGSEGV, not by ASan's exit.
ASAN_BUILD ?= build-asan
ASAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DWM_BUILD_BENCH=OFF \
	  -DCMAKE_CXX_FLAGS="$(ASAN_FLAGS) -O1" -DCMAKE_C_FLAGS="$(ASAN_FLAGS)" \
	  -DCMAKE_EXE_LINKER_FLAGS="$(ASAN_FLAGS)" -DCMAKE_SHARED_LINKER_FLAGS="$(ASAN_FLAGS)" \
	  -DCMAKE_MODULE_LINKER_FLAGS="$(ASAN_FLAGS)"
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:handle_segv=0 \
	  ctest --output-on-failure -j $(JOBS) --timeout 300 -E install

# Benchmark every installed backend against the floor (bench/README.md); results in bench/results/.
bench: build
	python3 bench/run.py --build $(BUILD) --update-readme

# The same with tiny N and one run (what ctest's bench.smoke runs); results in $(BUILD)/bench-smoke.
bench-smoke: build
	python3 bench/run.py --build $(BUILD) --smoke --check --out $(BUILD)/bench-smoke

clean:
	rm -rf $(BUILD)
