#!/usr/bin/env python3
"""Peak memory (VmHWM, which the binary reports with --stats) and CPU time of
one full issuance against a local Pebble: with a CA file holding one root, and
with the machine's whole CA bundle (plus that root), which is what the default
--ca-file reads."""
import os
import resource
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from helpers import make_csr, make_key  # noqa: E402
from pebble_env import Pebble  # noqa: E402

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def issue(binary, p, key, csr, ca_file):
    argv = [binary, "--account-key", key, "--csr", csr, "--acme-dir", p.acme_dir,
            "--directory-url", p.directory, "--ca-file", ca_file, "--disable-check",
            "--quiet", "--stats"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode:
        sys.exit(f"issuance failed: {res.stderr}")
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
    return f"{res.stderr.strip().removeprefix('stats: ')}, CPU {cpu:.0f} ms"


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./acme-tiny-static")
    with tempfile.TemporaryDirectory() as d, Pebble(nonce_reject=0) as p:
        key = make_key(d, "p256")
        csr = make_csr(d, "one", "memory.example.test")
        print(f"{os.path.basename(binary)}, one-name issuance, P-256 account key:")
        print(f"  --ca-file with 1 root:            {issue(binary, p, key, csr, p.ca_file)}")
        if os.path.exists(SYSTEM_BUNDLE):
            bundle = os.path.join(d, "bundle.pem")
            with open(bundle, "w") as out, open(SYSTEM_BUNDLE) as a, open(p.ca_file) as b:
                out.write(a.read() + b.read())
            n = open(bundle).read().count("BEGIN CERTIFICATE")
            print(f"  --ca-file with {n} roots ({os.path.getsize(bundle) // 1024} kB): "
                  f"{issue(binary, p, key, csr, bundle)}")


if __name__ == "__main__":
    main()
