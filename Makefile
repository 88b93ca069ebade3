# Front door for building and testing spate. CMake does the real work.
BUILD   ?= build
JOBS    ?= $(shell nproc)
PYTEST  ?= /usr/bin/python3 -m pytest

.PHONY: all deps configure test check unit integration sanitize bench demo clean format

all: configure
	cmake --build $(BUILD) -j$(JOBS)

configure:
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

deps:
	./scripts/install-deps.sh

# The whole suite on a fresh machine: dependencies, then every test twice:
# on a -Werror build, and on an AddressSanitizer + UBSan build.
test: deps
	$(MAKE) --no-print-directory check
	$(MAKE) --no-print-directory sanitize

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

bench: deps all
	./bench/invoke
	./bench/events

# The trading day of examples/trade-report, twice: one consumer, then spate.
# Prints a table per mode and writes demo-out/trading-day.svg and .png.
demo: deps all
	/usr/bin/python3 examples/trade-report/demo.py --build $(abspath $(BUILD)) --out demo-out

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan
