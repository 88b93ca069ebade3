# Front door for building and testing spate. CMake does the real work.
SHELL := /bin/bash
BUILD   ?= build
JOBS    ?= $(shell nproc)
PYTEST  ?= /usr/bin/python3 -m pytest
TEST_JOBS ?= 3

.PHONY: all deps configure test check layers unit integration sanitize fuzz bench demo demo-cluster \
        clean format \
        install uninstall

all: configure
	cmake --build $(BUILD) -j$(JOBS)

configure:
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

deps:
	./scripts/install-deps.sh
	@if command -v npm >/dev/null; then ./scripts/npm-test-deps.sh $(BUILD)/npm >/dev/null; fi

# The whole suite on a fresh machine: dependencies, the unit tests on a
# -Werror build and on an AddressSanitizer + UBSan build (with fault
# injection built in), each integration test once — on the ASan build, but
# for those marked normal_build (they compare timings with a peer, or size
# what the normal build's forks cost) or cluster_timing (test_cluster.py:
# its JetStream requests timed out under ASan beside the others), which run
# on the -Werror build — then each fuzz target briefly. Run twice, the integration tests took
# longer than CI's 90 minutes; make check and make sanitize each run all.
test: deps
	$(MAKE) --no-print-directory check INTEGRATION="normal_build or cluster_timing"
	$(MAKE) --no-print-directory sanitize INTEGRATION="not cluster_timing"
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

# One build folder: the layers' include check, build with -Werror, unit tests
# (one process each, under ctest), integration tests against real spated processes.
check: layers
	cmake -S . -B $(BUILD) -DSPATE_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)
	$(MAKE) --no-print-directory unit integration

# Fails when an #include points up the layers of docs/architecture.md.
layers:
	./scripts/check-layers

unit:
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

# Whole files in parallel (pytest-xdist, TEST_JOBS at once): a test spends
# most of its time waiting for spated, brokers and clocks, not on a core.
# TEST_JOBS=0 runs them one after another. SERIAL_TESTS run alone after
# them: they compare spate with a peer on the same cores, or count what a
# burst started.
# INTEGRATION, a pytest -m expression, runs only the tests it selects. A test still
# running after TEST_TIMEOUT seconds fails (pytest-timeout) with where it
# waits: one that hung on a pipe once took make test past CI's limit.
SERIAL_TESTS = $(addprefix tests/integration/,test_demo.py test_burst.py test_lambda_invoke.py)
TEST_TIMEOUT ?= 900
PYTEST_RUN = SPATE_BUILD=$(abspath $(BUILD)) $(PYTEST) -q --timeout $(TEST_TIMEOUT) \
    $(if $(INTEGRATION),-m "$(INTEGRATION)")
integration:
	$(PYTEST_RUN) -n $(TEST_JOBS) --dist loadfile $(addprefix --ignore=,$(SERIAL_TESTS)) \
	    tests/integration; rc=$$?; \
	$(PYTEST_RUN) $(SERIAL_TESTS) && exit $$rc

# ASan must not turn a function's own crash (SIGSEGV, abort) into exit(1):
# the tests check that spate names the signal. Optimised as the normal build
# is (with debug information): the integration tests run on this build.
sanitize: export ASAN_OPTIONS = handle_segv=0:handle_sigbus=0:handle_abort=0
sanitize:
	$(MAKE) --no-print-directory check BUILD=build-asan \
	    CMAKE_FLAGS="-DSPATE_ASAN=ON -DSPATE_UBSAN=ON -DSPATE_FAILPOINTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo"

# libFuzzer targets (clang, ASan + UBSan) for HTTP parsing and routing, the
# frame codec, the Runtime API endpoint and archive extraction, each run for
# FUZZ_SECONDS from its seed corpus (tests/fuzz/corpus/<target>; what the
# run adds stays in build-fuzz/corpus). Crashes are left in build-fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS  = http http_tls frame unpack runtime_api fnlog sigv4 lambda lambda_mgmt sqs
fuzz: all
	CC=clang cmake -S . -B build-fuzz -DSPATE_FUZZ=ON -DSPATE_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
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
	./bench/batches
	./bench/metrics
	./bench/console
	./bench/cluster
	./bench/sqs

# The trading day of examples/trade-report, twice: one consumer, then spate.
# Prints a table per mode and writes demo-out/trading-day.svg and .png.
# SOURCE=amqp: the day goes into a RabbitMQ queue that a spate source drains.
demo: deps all
	/usr/bin/python3 examples/trade-report/demo.py --build $(abspath $(BUILD)) --out demo-out \
	    $(if $(SOURCE),--source $(SOURCE))

# The same day on three spated nodes sharing the topic through a three-server
# NATS JetStream cluster (started here), beside the single consumer; the table
# and demo-out/cluster/trading-day.svg show each node's instances.
demo-cluster: deps all
	/usr/bin/python3 examples/trade-report/demo.py --build $(abspath $(BUILD)) \
	    --out demo-out/cluster --modes classic,cluster

# make install [PREFIX=/usr/local] [DESTDIR=]: the programs (spated in sbin,
# spate-runner in libexec/spate, where spated looks for it), spate.h, the man
# pages, the systemd unit, bash completion, and the sample configuration
# (as SYSCONFDIR/spate/spated.conf unless one is there already).
PREFIX        ?= /usr/local
SYSCONFDIR    ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR       ?= $(PREFIX)/lib/systemd/system
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
MANDIR        ?= $(PREFIX)/share/man
DOCDIR        ?= $(PREFIX)/share/doc/spate
STATEDIR      ?= /var/lib/spate
INSTALLED = $(PREFIX)/bin/spate $(PREFIX)/sbin/spated $(PREFIX)/libexec/spate/spate-runner \
            $(PREFIX)/include/spate.h $(MANDIR)/man1/spate.1 $(MANDIR)/man8/spated.8 \
            $(MANDIR)/man7/spate-functions.7 $(UNITDIR)/spated.service \
            $(COMPLETIONDIR)/spate $(COMPLETIONDIR)/spated $(DOCDIR)/spated.conf.example
# The installed configuration is the sample with the data directory of the
# systemd unit: the file alone decides it (the unit passes only --config).
INSTALLED_CONF = sed -e 's|^\#data = .*|data = $(STATEDIR)|' etc/spated.conf
install: all
	install -D -m 0755 $(BUILD)/spate $(DESTDIR)$(PREFIX)/bin/spate
	install -D -m 0755 $(BUILD)/spated $(DESTDIR)$(PREFIX)/sbin/spated
	install -D -m 0755 $(BUILD)/spate-runner $(DESTDIR)$(PREFIX)/libexec/spate/spate-runner
	install -D -m 0644 $(BUILD)/runtimes/python3/zygote.so \
	    $(DESTDIR)$(PREFIX)/libexec/spate/runtimes/python3/zygote.so
	cd runtimes && find . -type f ! -name '*.c' | while read -r f; do \
	    install -D -m $$(test -x "$$f" && echo 0755 || echo 0644) "$$f" \
	        "$(DESTDIR)$(PREFIX)/libexec/spate/runtimes/$$f"; done
	install -D -m 0644 include/spate.h $(DESTDIR)$(PREFIX)/include/spate.h
	install -D -m 0644 $(BUILD)/man/spate.1 $(DESTDIR)$(MANDIR)/man1/spate.1
	install -D -m 0644 $(BUILD)/man/spated.8 $(DESTDIR)$(MANDIR)/man8/spated.8
	install -D -m 0644 $(BUILD)/man/spate-functions.7 $(DESTDIR)$(MANDIR)/man7/spate-functions.7
	install -d $(DESTDIR)$(UNITDIR)
	sed -e 's|@SBINDIR@|$(PREFIX)/sbin|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' dist/spated.service \
	    > $(DESTDIR)$(UNITDIR)/spated.service
	install -D -m 0644 completions/spate.bash $(DESTDIR)$(COMPLETIONDIR)/spate
	install -D -m 0644 completions/spate.bash $(DESTDIR)$(COMPLETIONDIR)/spated
	install -D -m 0644 etc/spated.conf $(DESTDIR)$(DOCDIR)/spated.conf.example
	$(INSTALLED_CONF) > $(BUILD)/spated.conf
	test -e $(DESTDIR)$(SYSCONFDIR)/spate/spated.conf || \
	    install -D -m 0644 $(BUILD)/spated.conf $(DESTDIR)$(SYSCONFDIR)/spate/spated.conf

# Removes what install put there; the configuration only if it is still the sample.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	rm -rf $(DESTDIR)$(PREFIX)/libexec/spate/runtimes
	-rmdir $(DESTDIR)$(PREFIX)/libexec/spate $(DESTDIR)$(DOCDIR) 2>/dev/null
	if $(INSTALLED_CONF) | cmp -s - $(DESTDIR)$(SYSCONFDIR)/spate/spated.conf; then \
	    rm -f $(DESTDIR)$(SYSCONFDIR)/spate/spated.conf; \
	    rmdir $(DESTDIR)$(SYSCONFDIR)/spate 2>/dev/null || true; \
	fi

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-fuzz
