# Front door for building and testing spate. CMake does the real work.
BUILD   ?= build
JOBS    ?= $(shell nproc)
PYTEST  ?= /usr/bin/python3 -m pytest

.PHONY: all deps configure test unit integration test-sanitize bench clean format

all: configure
	cmake --build $(BUILD) -j$(JOBS)

configure:
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

deps:
	./scripts/install-deps.sh

# The whole suite on a fresh machine: dependencies, a -Werror build, unit tests
# (one process each, under ctest) and integration tests against real spated processes.
test: deps
	cmake -S . -B $(BUILD) -DSPATE_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)
	$(MAKE) --no-print-directory unit integration

unit:
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

integration:
	SPATE_BUILD=$(abspath $(BUILD)) $(PYTEST) -q tests/integration

# Same suite with AddressSanitizer and UBSan in a build folder of its own.
test-sanitize: deps
	$(MAKE) --no-print-directory test BUILD=build-asan \
	    CMAKE_FLAGS="-DSPATE_ASAN=ON -DSPATE_UBSAN=ON -DCMAKE_BUILD_TYPE=Debug"

bench: deps all
	./bench/invoke

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan
