# SPDX-License-Identifier: MIT
# Entry points: `make demo` and `make test` set up everything on a fresh Debian machine.
BUILD ?= build
JOBS ?= $(shell nproc)
BUILD_TYPE ?= RelWithDebInfo

.PHONY: all deps build demo test install package docs build-asan test-asan build-tsan test-tsan fuzz bench bench-smoke clean

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

# Installs the build under PREFIX (bin, lib, include, lib/cmake/wm, lib/pkgconfig, share/man,
# share/bash-completion, share/doc/wm); DESTDIR, if set, is put in front of every path (staging).
PREFIX ?= /usr/local
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

# A .deb of the same install under /usr, in $(BUILD)/package/ (CPack; dependencies declared).
package: build
	cd $(BUILD) && cpack -G DEB

# The API reference (Doxygen over the public headers, warnings are errors) in $(BUILD)/docs/api/html,
# and the man page in $(BUILD)/docs/man/wm.1. `make build` makes both too.
docs: build
	cmake --build $(BUILD) --target docs

# Every test again under AddressSanitizer + UndefinedBehaviorSanitizer (leaks included), in its own
# build tree. handle_segv=0: the crash-matrix tests need a worker to die by SIGSEGV, not by ASan's exit.
# Leaks inside system libraries that wm cannot fix: tests/lsan.supp.
# The conformance suite runs here once per layout that exercises distinct code (mpi at -np 1, tasks
# on a thread in rank 0, and -np 2; zmq with one node of 2 workers and two nodes of 1); the repeats
# at -np 4 and 16 and with 16 nodes, which `make test` runs, take most of an hour under ASan on
# 2 cores and add no code path.
# Built at -O0 with line tables only (-g1): under both sanitizers that compiles in about a third of
# the time of -O1 -g (measured on 2 cores: 135 s against 419 s for the tree) while the tests run
# about as fast (133 s against 169 s), and ASan and UBSan instrument every access and operation at
# -O0 too; reports keep their file:line stacks.
ASAN_BUILD ?= build-asan
ASAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer
ASAN_OPT ?= -O0
ASAN_DEBUG ?= -g1
build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DWM_BUILD_BENCH=OFF -DWM_BUILD_FUZZ=OFF -DWM_BUILD_DOCS=OFF \
	  -DCMAKE_CXX_FLAGS_DEBUG="$(ASAN_DEBUG)" -DCMAKE_C_FLAGS_DEBUG="$(ASAN_DEBUG)" \
	  -DCMAKE_CXX_FLAGS="$(ASAN_FLAGS) $(ASAN_OPT)" -DCMAKE_C_FLAGS="$(ASAN_FLAGS) $(ASAN_OPT)" \
	  -DCMAKE_EXE_LINKER_FLAGS="$(ASAN_FLAGS)" -DCMAKE_SHARED_LINKER_FLAGS="$(ASAN_FLAGS)" \
	  -DCMAKE_MODULE_LINKER_FLAGS="$(ASAN_FLAGS)"
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# One test more than the cores: under ASan the tests leave about a third of the CPU idle (they wait on
# workers and mpirun); on 2 cores -j 3 took 105 s where -j 2 took 131 s (and -j 4, 115 s).
ASAN_TEST_JOBS ?= $(shell expr $(JOBS) + 1)
test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:handle_segv=0 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  ctest --output-on-failure -j $(ASAN_TEST_JOBS) --timeout 300 \
	  -E '^install|^package|^mpi\.conformance\.np(4|16)(\.|$$)|^zmq\.16x1\.'

# The conformance suite on every backend under ThreadSanitizer, in its own build tree (core,
# plugins and the conformance test only). Suppressions, each with its reason: tests/tsan.supp.
# -O1 (TSan's cost is per memory access, which -O0 multiplies) with line tables only (-g1).
TSAN_BUILD ?= build-tsan
TSAN_FLAGS = -fsanitize=thread -fno-omit-frame-pointer
TSAN_OPT ?= -O1
TSAN_DEBUG ?= -g1
build-tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DWM_BUILD_BENCH=OFF -DWM_BUILD_FUZZ=OFF -DWM_BUILD_DOCS=OFF \
	  -DWM_BUILD_EXAMPLES=OFF -DCMAKE_CXX_FLAGS_DEBUG="$(TSAN_DEBUG)" -DCMAKE_C_FLAGS_DEBUG="$(TSAN_DEBUG)" \
	  -DCMAKE_CXX_FLAGS="$(TSAN_FLAGS) $(TSAN_OPT)" -DCMAKE_C_FLAGS="$(TSAN_FLAGS) $(TSAN_OPT)" \
	  -DCMAKE_EXE_LINKER_FLAGS="$(TSAN_FLAGS)" -DCMAKE_SHARED_LINKER_FLAGS="$(TSAN_FLAGS)" \
	  -DCMAKE_MODULE_LINKER_FLAGS="$(TSAN_FLAGS)"
	cmake --build $(TSAN_BUILD) -j $(JOBS) --target test_conformance

# atexit_sleep_ms=0: TSan otherwise sleeps 1 s in every process that exits (each test, each worker
# process) before its last report; every work manager is gone before a test's exit, so nothing
# runs then. It took test-tsan from 336 s to 46 s on 2 cores (2026-12-08).
test-tsan: build-tsan
	cd $(TSAN_BUILD) && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 atexit_sleep_ms=0 suppressions=$(CURDIR)/tests/tsan.supp" \
	  ctest --output-on-failure -j $(JOBS) --timeout 300 -R '^Backends/Conformance\.'

# Every fuzz target (tests/fuzz) for FUZZ_SECONDS each, growing its corpus in $(BUILD)/fuzz/corpus/;
# an input that breaks it is kept there (crash-*, timeout-*, leak-*, oom-*).
FUZZ_SECONDS ?= 60
fuzz: build
	@ls $(BUILD)/fuzz/bin/wm_fuzz_* >/dev/null 2>&1 || { echo "fuzz: no fuzz targets in $(BUILD)/fuzz (is clang installed?)"; exit 1; }
	@for f in $(BUILD)/fuzz/bin/wm_fuzz_*; do \
	  case "$$f" in *_seeds) continue;; esac; \
	  name=$${f##*/wm_fuzz_}; echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
	  bash tests/fuzz/run.sh "$$f" $(BUILD)/fuzz/corpus/$$name $(BUILD)/fuzz/seeds/$$name $(FUZZ_SECONDS) || exit 1; \
	done

# Benchmark every installed backend against the floor (bench/README.md); results in bench/results/.
bench: build
	python3 bench/run.py --build $(BUILD) --update-readme

# The same with tiny N and one run (what ctest's bench.smoke runs); results in $(BUILD)/bench-smoke.
bench-smoke: build
	python3 bench/run.py --build $(BUILD) --smoke --check --out $(BUILD)/bench-smoke

clean:
	rm -rf $(BUILD)
