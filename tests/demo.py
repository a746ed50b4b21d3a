#!/usr/bin/env python3
"""make demo: a real issuance against a local Pebble, set up and torn down here.

Makes an account key and a CSR with openssl, runs acme-tiny as a user would
(progress on stderr, chain on stdout), and shows what came back."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pebble_env import Pebble  # noqa: E402


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./acme-tiny")
    work = tempfile.mkdtemp(prefix="acme-tiny-demo-")
    key, dkey = os.path.join(work, "account.key"), os.path.join(work, "domain.key")
    csr, chain = os.path.join(work, "domain.csr"), os.path.join(work, "signed_chain.crt")
    quiet = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", key], **quiet)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", dkey, "-subj",
                    "/CN=demo.example.test", "-addext",
                    "subjectAltName=DNS:demo.example.test,DNS:www.demo.example.test",
                    "-out", csr], **quiet)
    print("Starting a local Pebble (loopback only)...", flush=True)
    with Pebble(nonce_reject=None) as p:     # Pebble as it comes: 5% of nonces refused
        argv = [binary, "--account-key", key, "--csr", csr, "--acme-dir", p.acme_dir,
                "--directory-url", p.directory, "--ca-file", p.ca_file, "--disable-check"]
        print("$ " + " ".join(argv) + " > " + chain, flush=True)
        with open(chain, "w") as out:
            rc = subprocess.run(argv, stdout=out).returncode
    if rc != 0:
        print(f"acme-tiny failed (exit {rc})")
        sys.exit(rc)
    print(f"\nThe certificate chain is in {chain}; its first certificate:")
    subprocess.run(["openssl", "x509", "-in", chain, "-noout", "-subject", "-issuer",
                    "-dates", "-ext", "subjectAltName"], check=True)


if __name__ == "__main__":
    main()
