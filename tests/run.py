#!/usr/bin/env python3
"""Runs the whole test suite: the C unit tests, then the real binary against
a local Pebble (and, where present, against the misbehaving test CA).
Ends with the line `N passed, N failed`; exits 1 if anything failed."""
import argparse
import importlib
import os
import re
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SUITES = ["test_pebble", "test_evil"]


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, fn, *args):
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


def run_unit(path, report):
    p = subprocess.run([path], capture_output=True, text=True, timeout=600)
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
    print(f"unit tests: {passed} passed, {failed} failed", flush=True)
    report.passed += passed
    report.failed += failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="./acme-tiny", help="the acme-tiny binary to test")
    ap.add_argument("--unit", default="tests/unit", help="the unit test binary")
    ap.add_argument("--only", help="run only the suites or tests whose name contains this")
    args = ap.parse_args()
    report = Report()
    if not args.only:
        run_unit(args.unit, report)
    for name in SUITES:
        if not os.path.exists(os.path.join(os.path.dirname(__file__), name + ".py")):
            continue
        suite = importlib.import_module(name)
        suite.run(os.path.abspath(args.bin), report, args.only)
    print(f"{report.passed} passed, {report.failed} failed")
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
