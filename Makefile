# acme-tiny: one C file over BearSSL. CC, CFLAGS, LDFLAGS and LDLIBS may be
# overridden for cross builds, e.g. make CC=mipsel-linux-musl-gcc.
CC ?= cc
CFLAGS ?= -O2 -Wall -Wextra
LDFLAGS ?=
LDLIBS ?= -lbearssl
PREFIX ?= /usr/local
PYTHON ?= python3
SAN = -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

all: acme-tiny

acme-tiny: acme-tiny.c
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ acme-tiny.c $(LDLIBS)

tests/unit: tests/unit.c acme-tiny.c
	$(CC) $(CPPFLAGS) $(CFLAGS) -DACME_TINY_TEST -I. $(LDFLAGS) -o $@ tests/unit.c $(LDLIBS)

# The whole suite: unit tests, then the real binary against a local Pebble.
test: acme-tiny tests/unit
	$(PYTHON) tests/run.py --bin ./acme-tiny --unit tests/unit

# Everything CI runs (README's test command).
check: test

# A real issuance against a local Pebble, set up and torn down for you.
demo: acme-tiny
	$(PYTHON) tests/demo.py ./acme-tiny

install: acme-tiny
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 acme-tiny $(DESTDIR)$(PREFIX)/bin/acme-tiny

clean:
	rm -f acme-tiny acme-tiny-* tests/unit tests/unit-*

.PHONY: all test check demo install clean
