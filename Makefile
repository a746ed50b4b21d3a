# acme-tiny: one C file over BearSSL. CC, CFLAGS, LDFLAGS and LDLIBS may be
# overridden for cross builds, e.g. make CC=mipsel-linux-musl-gcc.
CC ?= cc
CFLAGS ?= -O2 -Wall -Wextra
LDFLAGS ?=
LDLIBS ?= -lbearssl
PREFIX ?= /usr/local
PYTHON ?= python3
CLANG ?= clang
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SAN = -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZ_SECONDS ?= 60
FUZZERS = fuzz/json-fuzz fuzz/http-fuzz fuzz/key-fuzz fuzz/csr-fuzz

all: acme-tiny

acme-tiny: acme-tiny.c
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ acme-tiny.c $(LDLIBS)

tests/unit: tests/unit.c acme-tiny.c
	$(CC) $(CPPFLAGS) $(CFLAGS) -DACME_TINY_TEST -I. $(LDFLAGS) -o $@ tests/unit.c $(LDLIBS)

# Debian 13's pebble (2.6.0, which serves ARI), unpacked for the tests, not installed.
PEBBLE_ARI = tests/.pebble-trixie/usr/bin/pebble
$(PEBBLE_ARI):
	sh tests/fetch-pebble-trixie.sh tests/.pebble-trixie

# The whole suite: unit tests, then the real binary against a local Pebble.
test: acme-tiny tests/unit $(PEBBLE_ARI)
	$(PYTHON) tests/run.py --bin ./acme-tiny --unit tests/unit --warnings $(CC)

# Static musl builds for routers, against Debian's libbearssl.a of each
# architecture (multiarch); openwrt/glibc-chk.c stands in for the three glibc
# calls that library makes. s390x (big-endian) is a glibc build run with qemu.
# On 32-bit glibc targets add -D_TIME_BITS=64 -D_FILE_OFFSET_BITS=64 (musl's
# time_t is 64-bit everywhere).
# Unwind tables are dead weight in C without exceptions: -fno-asynchronous-
# unwind-tables drops ours, objcopy those of libbearssl.a before the link
# (after it, they would leave a hole of their size) and of libc.a after it,
# and -z noseparate-code the page padding between segments: 24 kB of flash.
# -z norelro and a small common page size drop the padding that puts the
# RELRO end on a page (up to 4 kB): a static musl binary has no dynamic
# linker to make that part read-only anyway. -Oz (gcc 12): 736 bytes less than
# -Os on x86_64, the same elsewhere; the CPU time is BearSSL's, built by Debian.
STATIC = -static -Oz -ffunction-sections -fdata-sections -Wl,--gc-sections \
	-fno-asynchronous-unwind-tables -Wl,-z,noseparate-code \
	-Wl,-z,norelro -Wl,-z,common-page-size=64 -I/usr/include/bearssl
CROSS = acme-tiny-static acme-tiny-mipsel acme-tiny-armhf acme-tiny-arm64 acme-tiny-s390x
CC_static = musl-gcc
CC_mipsel = mipsel-linux-musl-gcc
CC_armhf = arm-linux-musleabihf-gcc
CC_arm64 = aarch64-linux-musl-gcc
LIB_static = /usr/lib/x86_64-linux-gnu/libbearssl.a
LIB_mipsel = /usr/lib/mipsel-linux-gnu/libbearssl.a
LIB_armhf = /usr/lib/arm-linux-gnueabihf/libbearssl.a
LIB_arm64 = /usr/lib/aarch64-linux-gnu/libbearssl.a
BINUTILS_mipsel = mipsel-linux-gnu-
BINUTILS_armhf = arm-linux-gnueabihf-
BINUTILS_arm64 = aarch64-linux-gnu-

bearssl-static.a bearssl-mipsel.a bearssl-armhf.a bearssl-arm64.a:
	$(BINUTILS_$(@:bearssl-%.a=%))objcopy -R .eh_frame $(LIB_$(@:bearssl-%.a=%)) $@

acme-tiny-static acme-tiny-mipsel acme-tiny-armhf acme-tiny-arm64: acme-tiny-%: acme-tiny.c \
		openwrt/glibc-chk.c bearssl-%.a
	$(CC_$*) $(STATIC) -Wall -Wextra -o $@ acme-tiny.c openwrt/glibc-chk.c bearssl-$*.a
	$(BINUTILS_$(@:acme-tiny-%=%))objcopy -R .eh_frame -R .eh_frame_hdr $@

tests/unit-static tests/unit-mipsel tests/unit-armhf tests/unit-arm64: tests/unit.c acme-tiny.c openwrt/glibc-chk.c
	$(CC_$(@:tests/unit-%=%)) $(STATIC) -DACME_TINY_TEST -I. -o $@ tests/unit.c openwrt/glibc-chk.c $(LIB_$(@:tests/unit-%=%))

acme-tiny-s390x: acme-tiny.c
	s390x-linux-gnu-gcc -O2 -Wall -Wextra -o $@ acme-tiny.c -lbearssl

tests/unit-s390x: tests/unit.c acme-tiny.c
	s390x-linux-gnu-gcc -O2 -DACME_TINY_TEST -I. -o $@ tests/unit.c -lbearssl

# Big-endian MIPS has no Debian port, so no BearSSL: its unit tests cover our
# own code that needs none (base64url, JSON, DER, HTTP, URLs, dates).
tests/unit-mips: tests/unit.c acme-tiny.c
	mips-linux-gnu-gcc $(STATIC) -Wno-unused-function -DACME_TINY_TEST -DUNIT_NO_BEARSSL -I. \
		-o $@ tests/unit.c

static: acme-tiny-static

cross: $(CROSS) $(CROSS:acme-tiny-%=tests/unit-%) tests/unit-mips

# The static x86_64 binary's size budget (under 200 kB stripped), unit tests
# of every router build under qemu-user, and issuance with the mipsel
# (little-endian) and s390x (big-endian) builds against Pebble.
CROSS_TESTS = \
	--size-limit "acme-tiny-static=200000" \
	--cross-unit "static=tests/unit-static" \
	--cross-unit "mipsel=qemu-mipsel-static tests/unit-mipsel" \
	--cross-unit "armhf=qemu-arm-static tests/unit-armhf" \
	--cross-unit "arm64=qemu-aarch64-static tests/unit-arm64" \
	--cross-unit "s390x=qemu-s390x-static tests/unit-s390x" \
	--cross-unit "mips=qemu-mips-static tests/unit-mips" \
	--cross-bin "mipsel=qemu-mipsel-static ./acme-tiny-mipsel" \
	--cross-bin "s390x=qemu-s390x-static ./acme-tiny-s390x"

check-cross: cross
	$(PYTHON) tests/run.py --no-suites $(CROSS_TESTS)

# Peak memory of a full issuance by the static musl build (VmHWM, via --stats).
memory: acme-tiny-static
	$(PYTHON) bench/memory.py ./acme-tiny-static

# Stripped sizes of the router builds.
size: acme-tiny-static acme-tiny-mipsel
	@strip -o acme-tiny-static.stripped acme-tiny-static
	@mipsel-linux-gnu-strip -o acme-tiny-mipsel.stripped acme-tiny-mipsel
	@wc -c acme-tiny-static.stripped acme-tiny-mipsel.stripped | sed '$$d'
	@rm -f acme-tiny-static.stripped acme-tiny-mipsel.stripped

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
# ASan+UBSan, each fuzzer for FUZZ_SECONDS, issuances under valgrind (by file,
# by hook, by dns-persist-01), and the router builds under qemu.
check: acme-tiny tests/unit acme-tiny-asan tests/unit-asan $(FUZZERS) cross $(PEBBLE_ARI)
	$(PYTHON) tests/run.py --bin ./acme-tiny --unit tests/unit \
		--asan-bin ./acme-tiny-asan --asan-unit tests/unit-asan \
		--fuzz-seconds $(FUZZ_SECONDS) --valgrind --warnings $(CC) --warnings $(CLANG) \
		$(CROSS_TESTS)

# Side by side with acme_tiny.py and uacme (Debian's packages, installed here).
BENCH_PACKAGES = acme-tiny uacme strace gcc musl-tools pebble openssl libbearssl-dev python3
bench:
	@command -v acme-tiny uacme strace pebble openssl gcc musl-gcc >/dev/null && \
		[ -f /usr/include/bearssl.h ] || \
		{ $(SUDO) apt-get update; $(SUDO) apt-get install -y --no-install-recommends $(BENCH_PACKAGES); }
	$(MAKE) acme-tiny acme-tiny-static $(PEBBLE_ARI)
	$(PYTHON) bench/bench.py ./acme-tiny ./acme-tiny-static

# A real issuance against a local Pebble, set up and torn down for you.
demo: acme-tiny
	$(PYTHON) tests/demo.py ./acme-tiny

install: acme-tiny
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 acme-tiny $(DESTDIR)$(PREFIX)/bin/acme-tiny

clean:
	rm -f acme-tiny acme-tiny-* bearssl-*.a tests/unit tests/unit-* $(FUZZERS) fuzz/*.log
	rm -rf tests/.pebble-trixie

.PHONY: all test check check-cross cross static size memory bench fuzz demo install clean
