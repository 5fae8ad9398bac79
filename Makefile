# parley build. `make run` and `make test` are the two set-up commands of the README:
# each first installs whatever the machine is missing (scripts/setup.sh), then builds.

VERSION := 0.1.0
PKGS := openssl jansson sqlite3 libsodium zlib libsystemd libutf8proc hiredis libpq
BUILD ?= release
OUT := build/$(BUILD)

CC ?= cc
# Recursively expanded, so pkg-config runs only once setup.sh has installed it.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS))

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
CFLAGS_COMMON = -std=c17 -D_GNU_SOURCE -DPARLEY_VERSION='"$(VERSION)"' -pthread $(WARN) \
                $(SRC_LAYERS:%=-Isrc/%) $(PKG_CFLAGS)
DEPFLAGS := -MMD -MP
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

ifeq ($(BUILD),asan)
  CFLAGS_BUILD := -O1 -g $(SAN)
  LDFLAGS_BUILD := $(SAN)
else ifeq ($(BUILD),fuzz)
  CC := clang
  CFLAGS_BUILD := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
  LDFLAGS_BUILD := -fsanitize=fuzzer,address,undefined
else
  CFLAGS_BUILD := -O2 -g
  LDFLAGS_BUILD :=
endif

ALL_CFLAGS = $(CFLAGS_COMMON) $(CFLAGS_BUILD) $(CFLAGS)
ALL_LDFLAGS = -pthread $(LDFLAGS_BUILD) $(LDFLAGS)
LIBS = $(PKG_LIBS)

# src/ is grouped by layer (docs/architecture.md, "Layout"); each folder is on the include path.
SRC_LAYERS := base net store broker chat process
LIB_SRCS := $(filter-out src/process/main.c,$(wildcard $(SRC_LAYERS:%=src/%/*.c)))
LIB_OBJS := $(LIB_SRCS:src/%.c=$(OUT)/obj/%.o) $(OUT)/obj/web_assets.o
WEB_FILES := $(shell find web -type f 2>/dev/null | LC_ALL=C sort)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(OUT)/tests/%,$(wildcard tests/unit/test_*.c))
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all run test unit asan fuzz fuzz-build bench clean format setup loadgen peers
.DEFAULT_GOAL := all

all: $(OUT)/parley

run:
	@scripts/setup.sh
	@$(MAKE) --no-print-directory all
	exec $(OUT)/parley --http 0.0.0.0:9999 --telnet 0.0.0.0:2323 --data ./parley-data

test:
	@scripts/setup.sh --test
	@scripts/test.sh

# Every test binary and both server builds, without running anything. notify_sink stands in for
# systemd's notification socket in tests/upgrade (it is not a unit test: test.sh runs test_* only).
unit: $(UNIT_TESTS) $(OUT)/tests/notify_sink

asan:
	@$(MAKE) --no-print-directory BUILD=asan all unit

fuzz-build:
	@$(MAKE) --no-print-directory BUILD=fuzz $(FUZZ_TARGETS)

# Runs every fuzz target for FUZZ_SECONDS each (default 60), one per core at a time.
fuzz: fuzz-build
	@scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

setup:
	@scripts/setup.sh --test

# Benchmarks: figures beside a peer measured in the same run (docs/benchmarks.md). Not part of `make test`.
# setup.sh --bench installs the test tools and the peers' (Go, gorilla/websocket, perf).
# bench/compare.mjs runs the load generator against parley, the Node relay and the Go peer in one
# run and writes its table into docs/benchmarks.md; BENCH_QUICK=1 runs it small, for development,
# and writes build/bench/loadgen-table.md only.
bench:
	@scripts/setup.sh --bench
	@$(MAKE) --no-print-directory all loadgen peers
	node bench/compare.mjs
	node bench/idle_memory.mjs $(or $(BENCH_CONNECTIONS),5000)
	node bench/fanout.mjs 500 1500 100
	node bench/fanout.mjs 1000 2000 500
	node bench/deflate.mjs 500 1000 200
	node bench/login_attack.mjs 5
	node bench/loadgen.mjs rooms -n 5000 --rooms 250 --send-rate 500 --duration 10
	node bench/loadgen.mjs storm -n 5000 --rooms 250 --send-rate 500 --duration 5
	node bench/hotpath.mjs --pairs 2 -n 5000 --messages 1000 --inflight 4
	node bench/upgrade.mjs 1000 250
	node bench/nodes.mjs

clean:
	rm -rf build

format:
	clang-format -i src/*/*.c src/*/*.h tests/unit/*.c tests/fuzz/*.c tools/*.c bench/loadgen/*.[ch]

$(OUT)/parley: $(OUT)/obj/process/main.o $(LIB_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(OUT)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(DEPFLAGS) -c -o $@ $<

# The web page is compiled into the binary: tools/embed turns web/ into a C file.
build/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	cc -std=c17 -O2 -Wall -Wextra -Werror -o $@ $< -lz

$(OUT)/gen/web_assets.c: build/tools/embed $(WEB_FILES)
	@mkdir -p $(dir $@)
	build/tools/embed web $(WEB_FILES) > $@.tmp && mv $@.tmp $@

$(OUT)/obj/web_assets.o: $(OUT)/gen/web_assets.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(OUT)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LIBS) -lcmocka

$(OUT)/tests/notify_sink: tests/tools/notify_sink.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $<

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LIBS)

# The C load generator (bench/loadgen, docs/benchmarks.md): a WebSocket client, so it shares no
# object with the server; always optimised, whatever BUILD is. `make bench` uses it, and the smoke
# test in tests/blackbox builds it with `make loadgen`.
LOADGEN_OBJS := $(patsubst bench/loadgen/%.c,build/bench/obj/%.o,$(wildcard bench/loadgen/*.c))

loadgen: build/bench/loadgen

build/bench/loadgen: $(LOADGEN_OBJS)
	$(CC) -o $@ $^ $(shell pkg-config --libs libcrypto)

build/bench/obj/%.o: bench/loadgen/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -O2 -g $(WARN) $(DEPFLAGS) $(shell pkg-config --cflags libcrypto) \
		-c -o $@ $<

# The Go peer (bench/peers/gorilla_chat): built offline from Debian's packages, golang-go and
# golang-github-gorilla-websocket-dev (its source in /usr/share/gocode), in GOPATH mode: no module
# download, no proxy, nothing vendored. A missing toolchain or library stops `make bench` here.
GOCODE := /usr/share/gocode
GORILLA_GO := $(wildcard bench/peers/gorilla_chat/*.go)

peers: build/bench/gorilla_chat

build/bench/gorilla_chat: $(GORILLA_GO)
	@command -v go >/dev/null || { echo "make: go not found: scripts/setup.sh --bench installs golang-go" >&2; exit 1; }
	@test -d $(GOCODE)/src/github.com/gorilla/websocket || { echo "make: $(GOCODE)/src/github.com/gorilla/websocket missing: scripts/setup.sh --bench installs golang-github-gorilla-websocket-dev" >&2; exit 1; }
	@mkdir -p $(dir $@)
	GO111MODULE=off GOPATH=$(GOCODE) GOFLAGS= GOPROXY=off GOCACHE=$(CURDIR)/build/bench/gocache \
		go build -o $@ ./bench/peers/gorilla_chat

-include $(shell find build -name '*.d' 2>/dev/null)
