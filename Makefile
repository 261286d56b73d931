# SPDX-License-Identifier: Apache-2.0
# Thin wrapper over CMake/ctest. Build trees:
#   build/          the test build: ASan + UBSan, binaries in build/bin/
#   build-release/  optimised, datagram tools linked statically: run, bench, install
#   build-fuzz/     clang + libFuzzer, only the fuzz targets (make fuzz)
#   build-tsan/     ThreadSanitizer, the tools only (make tsan)
BUILD_DIR   ?= build
RELEASE_DIR ?= build-release
PREFIX      ?= /usr/local
DESTDIR     ?=
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Everything the build, the tests and the benchmarks use, from Debian.
DEB_PACKAGES := cmake make g++ pkg-config libpoco-dev libssl-dev libcli11-dev \
	nlohmann-json3-dev catch2 python3 python3-websockets python3-pytest \
	python3-pytest-timeout node-ws socat hyperfine tmux openssl
# The dashboard's tests and bench: headless Chromium driven by chromium-driver and Selenium.
DEB_PACKAGES += chromium chromium-driver python3-selenium
# ws-relay --redis: the client library, and the server the tests start themselves
DEB_PACKAGES += redis-server libhiredis-dev
# ws-probe: zlib for permessage-deflate; nginx as a real proxy in its tests
DEB_PACKAGES += zlib1g-dev nginx

# make deb and its tests (tests/integration/test_package.py): dpkg-shlibdeps
# (dpkg-dev), lintian, systemd-analyze (systemd; its verify looks the unit's
# man: pages up with man-db), groff for the man pages, zsh and fish to load
# the completions.
DEB_PACKAGES += dpkg-dev lintian systemd man-db groff-base zsh fish

# make fuzz: libFuzzer comes with clang's runtime libraries.
DEB_PACKAGES += clang libclang-rt-14-dev

# ws-relay's identities: PyJWT mints the tokens its integration tests present.
DEB_PACKAGES += python3-jwt

.PHONY: all deps build release test bench install deb run clean fuzz fuzz-build soak tsan

all: build

# Idempotent and quick when everything is there: dpkg-query first, and
# apt-get (with one update before it) only for what is missing.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Debug -DSMWS_SANITIZE=ON -DSMWS_BUILD_BENCH=OFF

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The package tests need the .deb (from the release tree), so test builds it.
test: build deb
	cd $(BUILD_DIR) && SMWS_RELEASE_DIR=$(CURDIR)/$(RELEASE_DIR) ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)
	$(MAKE) fuzz FUZZ_S=$(CI_FUZZ_S) FUZZ_SEED=$(CI_FUZZ_SEED)
	$(MAKE) soak SOAK_S=$(CI_SOAK_S)
	$(MAKE) tsan

$(RELEASE_DIR)/CMakeCache.txt:
	cmake -S . -B $(RELEASE_DIR) -DCMAKE_BUILD_TYPE=Release -DSMWS_SANITIZE=OFF -DSMWS_BUILD_TESTS=OFF

release: deps $(RELEASE_DIR)/CMakeCache.txt
	cmake --build $(RELEASE_DIR) -j $(JOBS)

bench: release
	SMWS_BIN_DIR=$(CURDIR)/$(RELEASE_DIR)/bin SMWS_BENCH_DIR=$(CURDIR)/$(RELEASE_DIR)/bench \
	  NODE_PATH=/usr/share/nodejs /usr/bin/python3 bench/run.py $(BENCH)

install: release
	DESTDIR=$(DESTDIR) cmake --install $(RELEASE_DIR) --prefix $(PREFIX)

# smws_<version>_<arch>.deb in $(RELEASE_DIR) (cmake/Packaging.cmake). Older
# ones are removed first so the tests find exactly one.
deb: release
	rm -f $(RELEASE_DIR)/smws_*.deb
	cd $(RELEASE_DIR) && cpack -G DEB

# The main job: events from the default socket to every WebSocket client
# (open http://127.0.0.1:3002/). Ctrl-C stops both.
run: release
	$(RELEASE_DIR)/bin/sm-listen | $(RELEASE_DIR)/bin/ws-relay

# Fuzzing (tests/fuzz/README.md): every target for FUZZ_S seconds, one after
# the other. `make test` runs a short pass of each (CI_FUZZ_S) with a fixed
# seed (CI_FUZZ_SEED), so CI explores the inputs a developer's run of the
# same seed did: a find there is one we could have had first. `make fuzz`
# alone draws a new seed each time (FUZZ_SEED=0), to look further.
FUZZ_DIR     ?= build-fuzz
FUZZ_S       ?= 60
FUZZ_SEED    ?= 0
CI_FUZZ_S    ?= 4
CI_FUZZ_SEED ?= 1
FUZZ_TARGETS := $(patsubst tests/fuzz/%_fuzz.cpp,%,$(wildcard tests/fuzz/*_fuzz.cpp))

$(FUZZ_DIR)/CMakeCache.txt:
	cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=Debug -DSMWS_SANITIZE=ON -DSMWS_FUZZ=ON \
	  -DCMAKE_CXX_COMPILER=clang++ \
	  -DCMAKE_CXX_FLAGS="-O1 -fsanitize=fuzzer-no-link -fsanitize-ignorelist=$(CURDIR)/tests/fuzz/ubsan_known.txt"

fuzz-build: deps $(FUZZ_DIR)/CMakeCache.txt
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzz_targets

fuzz: fuzz-build
	FUZZ_SEED=$(FUZZ_SEED) tests/fuzz/run.sh $(FUZZ_DIR)/fuzz $(FUZZ_S) $(FUZZ_TARGETS)

# Soak (tests/soak/soak.py): the release ws-relay under a mixed load for
# SOAK_S seconds; prints the RSS-over-time, loss and ping-timeout table and
# fails on RSS growth, a lost message or a missed ping timeout. `make test`
# runs CI_SOAK_S seconds of it.
SOAK_S    ?= 600
CI_SOAK_S ?= 60

soak: release
	/usr/bin/python3 tests/soak/soak.py --bin $(RELEASE_DIR)/bin --seconds $(SOAK_S)

# ThreadSanitizer: the tools built with -fsanitize=thread (no ASan: the two
# cannot be combined), then the tests that exercise threads (tests/tsan/run.sh
# lists them); any report fails. Part of `make test`.
TSAN_DIR ?= build-tsan

$(TSAN_DIR)/CMakeCache.txt:
	cmake -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSMWS_SANITIZE=OFF \
	  -DSMWS_STATIC_DATAGRAM_TOOLS=OFF -DSMWS_BUILD_TESTS=OFF \
	  -DCMAKE_CXX_FLAGS="-fsanitize=thread" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread"

tsan: deps $(TSAN_DIR)/CMakeCache.txt
	cmake --build $(TSAN_DIR) -j $(JOBS) --target ws-relay ws-probe hitl-approve sm-send sm-listen
	tests/tsan/run.sh $(TSAN_DIR)

clean:
	rm -rf $(BUILD_DIR) $(RELEASE_DIR) $(FUZZ_DIR) $(TSAN_DIR)
