#!/usr/bin/env python3
"""Runs the whole test suite: the C unit tests, then the real binary against
a local Pebble and against the misbehaving test CA (a suite file missing fails).
Ends with the line `N passed, N failed`; exits 1 if anything failed."""
import argparse
import importlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SUITES = ["test_pebble", "test_evil", "test_renewal", "test_account", "test_dns", "test_dns_persist",
          "test_openwrt"]


FUZZERS = ["json", "http", "key", "csr"]


class Report:
    def __init__(self):
        self.passed = self.failed = 0
        self.prefix = ""

    def check(self, name, fn, *args):
        name = self.prefix + name
        start = time.time()
        try:
            fn(*args)
        except Exception as e:  # a failed assertion or a crash of the test itself
            self.failed += 1
            detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            print(f"FAIL {name}: {detail}", flush=True)
        else:
            self.passed += 1
            print(f"ok   {name} ({time.time() - start:.1f} s)", flush=True)


def run_unit(command, report):
    p = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=900)
    sys.stdout.write("".join(l + "\n" for l in p.stdout.splitlines() if l.startswith("FAIL")))
    m = re.search(r"^(\d+) passed, (\d+) failed$", p.stdout, re.M)
    if not m:
        report.failed += 1
        print(f"FAIL unit tests: no summary line (exit {p.returncode})\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
        return
    passed, failed = int(m[1]), int(m[2])
    if p.returncode and not failed:
        failed = 1
        print(f"FAIL unit tests: exit {p.returncode}\n{p.stderr[-2000:]}")
    print(f"{report.prefix}unit tests: {passed} passed, {failed} failed", flush=True)
    report.passed += passed
    report.failed += failed


def run_suites(binary, unit, report, only):
    if not only:
        run_unit(unit, report)
    for name in SUITES:     # a missing suite fails the import: never a silent skip
        importlib.import_module(name).run(os.path.abspath(binary), report, only)


def name_and_command(arg):
    """NAME=COMMAND, as given to --cross-unit and --cross-bin."""
    name, _, command = arg.partition("=")
    return name, command


def check_size(path, limit):
    """The stripped binary stays under limit bytes (issue 4: flash is scarce)."""
    with tempfile.NamedTemporaryFile() as t:
        subprocess.run(["strip", "-o", t.name, path], check=True)
        size = os.path.getsize(t.name)
    print(f"size: {path} stripped {size} bytes (limit {limit})", flush=True)
    assert size < limit, f"{path} stripped is {size} bytes, over {limit}"


def check_warnings(compiler):
    """acme-tiny.c compiles without a warning under -Wall -Wextra (README says so)."""
    p = subprocess.run([compiler, "-O2", "-Wall", "-Wextra", "-Werror", "-c", "-o", os.devnull,
                        "-I/usr/include/bearssl", "acme-tiny.c"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]


def check_shape(path="acme-tiny.c"):
    """What the auditor is promised (README): lines within 100 columns, tabs as 8, and no
    function over 80 lines (a definition's body runs from a "{" to a "}" in column 0)."""
    with open(path) as f:
        lines = f.read().split("\n")
    wide = [k + 1 for k, line in enumerate(lines) if len(line.expandtabs(8)) > 100]
    assert not wide, f"{path}: lines over 100 columns: {wide}"
    opened = None
    for k, line in enumerate(lines):
        if line == "{":
            opened = k
        elif line.startswith("}") and opened is not None:
            assert k - opened - 1 <= 80, f"{path}:{opened + 1}: a function of {k - opened - 1} lines"
            opened = None


def run_fuzzer(name, seconds):
    """One libFuzzer target for a bounded time, from the seed corpus in the repo;
    what it finds new goes to a temporary directory, crashes to fuzz/. Inputs
    may grow past the 128 KiB body and 8,192-token limits (libFuzzer's default
    would stop at 4 KiB, short of every limit but the small ones)."""
    with tempfile.TemporaryDirectory() as new:
        p = subprocess.run([f"fuzz/{name}-fuzz", f"-max_total_time={seconds}",
                            "-max_len=140000", "-artifact_prefix=fuzz/", "-print_final_stats=1", new,
                            f"fuzz/corpus/{name}"], capture_output=True, text=True,
                           timeout=seconds + 120)
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", p.stderr)
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stderr[-3000:]}"
    print(f"     fuzz/{name}: {runs[1] if runs else '?'} inputs in {seconds} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="./acme-tiny", help="the acme-tiny binary to test")
    ap.add_argument("--unit", default="tests/unit", help="the unit test binary")
    ap.add_argument("--asan-bin", help="also run everything with this ASan+UBSan build...")
    ap.add_argument("--asan-unit", help="...and this ASan+UBSan unit test binary")
    ap.add_argument("--fuzz-seconds", type=int, default=0, help="run each fuzzer this long")
    ap.add_argument("--valgrind", action="store_true", help="one issuance under valgrind")
    ap.add_argument("--cross-unit", action="append", default=[], metavar="NAME=COMMAND",
                    help="run unit tests built for another architecture, e.g. under qemu")
    ap.add_argument("--cross-bin", action="append", default=[], metavar="NAME=COMMAND",
                    help="issue certificates with a binary for another architecture")
    ap.add_argument("--size-limit", action="append", default=[], metavar="BINARY=BYTES",
                    help="fail if the stripped binary is not smaller than BYTES")
    ap.add_argument("--warnings", action="append", default=[], metavar="COMPILER",
                    help="fail if acme-tiny.c gets a warning from COMPILER (-Wall -Wextra)")
    ap.add_argument("--only", help="run only the suites or tests whose name contains this")
    ap.add_argument("--no-suites", action="store_true", help="skip the unit and suite tests")
    args = ap.parse_args()
    report = Report()
    if not args.no_suites:
        run_suites(args.bin, args.unit, report, args.only)
    if args.asan_bin:
        # distinct exit codes, so that a sanitizer report is never taken for exit 1
        os.environ.update(ACME_TINY_SANITIZED="1", ASAN_OPTIONS="exitcode=86:detect_leaks=1",
                          UBSAN_OPTIONS="exitcode=87:print_stacktrace=1")
        report.prefix = "asan "
        run_suites(args.asan_bin, args.asan_unit, report, args.only)
        report.prefix = ""
        for k in ("ACME_TINY_SANITIZED", "ASAN_OPTIONS", "UBSAN_OPTIONS"):
            del os.environ[k]
    for name in FUZZERS if args.fuzz_seconds else []:
        report.check(f"fuzz_{name}", run_fuzzer, name, args.fuzz_seconds)
    for compiler in args.warnings:
        report.check(f"warnings_{os.path.basename(compiler)}", check_warnings, compiler)
    if args.warnings:
        report.check("shape", check_shape)
    for path, limit in map(name_and_command, args.size_limit):
        report.check(f"size_{os.path.basename(path)}", check_size, path, int(limit))
    for name, command in map(name_and_command, args.cross_unit):
        report.prefix = name + " "
        run_unit(command, report)
    report.prefix = ""
    for name, command in map(name_and_command, args.cross_bin):
        importlib.import_module("test_pebble").run_cross(name, command, report)
        if name == "mipsel":    # a router's build, as OpenWrt's acme-common runs it
            importlib.import_module("test_openwrt").run_cross(name, command, report)
    if args.valgrind:
        importlib.import_module("test_pebble").run_valgrind(os.path.abspath(args.bin), report)
    print(f"{report.passed} passed, {report.failed} failed")
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
