# Front door for building and testing spate. CMake does the real work.
SHELL := /bin/bash
BUILD   ?= build
JOBS    ?= $(shell nproc)
PYTEST  ?= /usr/bin/python3 -m pytest

.PHONY: all deps configure test check unit integration sanitize fuzz bench demo clean format

all: configure
	cmake --build $(BUILD) -j$(JOBS)

configure:
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

deps:
	./scripts/install-deps.sh

# The whole suite on a fresh machine: dependencies, then every test twice:
# on a -Werror build, and on an AddressSanitizer + UBSan build; then each
# fuzz target briefly.
test: deps
	$(MAKE) --no-print-directory check
	$(MAKE) --no-print-directory sanitize
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

# One build folder: build with -Werror, unit tests (one process each, under
# ctest), integration tests against real spated processes.
check:
	cmake -S . -B $(BUILD) -DSPATE_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)
	$(MAKE) --no-print-directory unit integration

unit:
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

integration:
	SPATE_BUILD=$(abspath $(BUILD)) $(PYTEST) -q tests/integration

# ASan must not turn a function's own crash (SIGSEGV, abort) into exit(1):
# the tests check that spate names the signal.
sanitize: export ASAN_OPTIONS = handle_segv=0:handle_sigbus=0:handle_abort=0
sanitize:
	$(MAKE) --no-print-directory check BUILD=build-asan \
	    CMAKE_FLAGS="-DSPATE_ASAN=ON -DSPATE_UBSAN=ON -DCMAKE_BUILD_TYPE=Debug"

# libFuzzer targets (clang, ASan + UBSan) for HTTP parsing and routing, the
# frame codec, the Runtime API endpoint and archive extraction, each run for
# FUZZ_SECONDS from its seed corpus (tests/fuzz/corpus/<target>; what the
# run adds stays in build-fuzz/corpus). Crashes are left in build-fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS  = http frame unpack runtime_api
fuzz: all
	CC=clang cmake -S . -B build-fuzz -DSPATE_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-fuzz -j$(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p build-fuzz/corpus/$$t build-fuzz/crashes/$$t && \
	    cp -n tests/fuzz/corpus/$$t/* build-fuzz/corpus/$$t/ && \
	    echo "fuzz_$$t: $(FUZZ_SECONDS) s" && \
	    (cd build-fuzz/crashes/$$t && SPATE_RUNNER=$(abspath $(BUILD))/spate-runner \
	        ASAN_OPTIONS=detect_leaks=0:handle_abort=1 ../../fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	        -timeout=20 -max_len=65536 -print_final_stats=1 ../../corpus/$$t 2>&1 | \
	        grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==ERROR|SUMMARY|INFO: Running)" ; \
	     exit $${PIPESTATUS[0]}) || exit 1; \
	done

bench: deps all
	./bench/invoke
	./bench/events
	./bench/metrics

# The trading day of examples/trade-report, twice: one consumer, then spate.
# Prints a table per mode and writes demo-out/trading-day.svg and .png.
demo: deps all
	/usr/bin/python3 examples/trade-report/demo.py --build $(abspath $(BUILD)) --out demo-out

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-fuzz
