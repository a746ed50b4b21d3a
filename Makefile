# acme-tiny: one C file over BearSSL. CC, CFLAGS, LDFLAGS and LDLIBS may be
# overridden for cross builds, e.g. make CC=mipsel-linux-musl-gcc.
CC ?= cc
CFLAGS ?= -O2 -Wall -Wextra
LDFLAGS ?=
LDLIBS ?= -lbearssl
PREFIX ?= /usr/local
PYTHON ?= python3
CLANG ?= clang
SAN = -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZ_SECONDS ?= 60
FUZZERS = fuzz/json-fuzz fuzz/http-fuzz fuzz/key-fuzz fuzz/csr-fuzz

all: acme-tiny

acme-tiny: acme-tiny.c
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ acme-tiny.c $(LDLIBS)

tests/unit: tests/unit.c acme-tiny.c
	$(CC) $(CPPFLAGS) $(CFLAGS) -DACME_TINY_TEST -I. $(LDFLAGS) -o $@ tests/unit.c $(LDLIBS)

# The whole suite: unit tests, then the real binary against a local Pebble.
test: acme-tiny tests/unit
	$(PYTHON) tests/run.py --bin ./acme-tiny --unit tests/unit

# The same under ASan+UBSan (clang).
acme-tiny-asan: acme-tiny.c
	$(CLANG) $(SAN) -o $@ acme-tiny.c $(LDLIBS)

tests/unit-asan: tests/unit.c acme-tiny.c
	$(CLANG) $(SAN) -DACME_TINY_TEST -I. -o $@ tests/unit.c $(LDLIBS)

# libFuzzer targets, one per parser; seeds in fuzz/corpus/.
fuzz/%-fuzz: fuzz/%.c acme-tiny.c
	$(CLANG) $(SAN) -fsanitize=fuzzer -I. -o $@ $< $(LDLIBS)

fuzz: $(FUZZERS)
	$(PYTHON) tests/run.py --no-suites --fuzz-seconds $(FUZZ_SECONDS)

# Everything CI runs (README's test command): the suite, the suite again under
# ASan+UBSan, each fuzzer for FUZZ_SECONDS, one issuance under valgrind.
check: acme-tiny tests/unit acme-tiny-asan tests/unit-asan $(FUZZERS)
	$(PYTHON) tests/run.py --bin ./acme-tiny --unit tests/unit \
		--asan-bin ./acme-tiny-asan --asan-unit tests/unit-asan \
		--fuzz-seconds $(FUZZ_SECONDS) --valgrind

# A real issuance against a local Pebble, set up and torn down for you.
demo: acme-tiny
	$(PYTHON) tests/demo.py ./acme-tiny

install: acme-tiny
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 acme-tiny $(DESTDIR)$(PREFIX)/bin/acme-tiny

clean:
	rm -f acme-tiny acme-tiny-* tests/unit tests/unit-* $(FUZZERS) fuzz/*.log

.PHONY: all test check fuzz demo install clean
