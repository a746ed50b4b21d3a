"""Keys, CSRs and the checks every issuance test shares; what every suite's run() shares."""
import contextlib
import os
import re
import shutil
import subprocess
import tempfile

PEM_CHAIN = re.compile(r"(-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n)+")

KEY_ARGS = {
    "rsa2048": ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "rsa4096": ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
    "p256": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "p384": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    # keys acme-tiny refuses
    "rsa1024": ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    "rsa4098": ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4098"],
    "p521": ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
    "ed25519": ["genpkey", "-algorithm", "ED25519"],
}


def openssl(*args, **kw):
    return subprocess.run(["openssl", *args], check=True, capture_output=True, **kw)


def make_key(d, kind, name=None):
    """An account key of kind, made once per name (default: one per kind)."""
    path = os.path.join(d, f"{name or kind}.key")
    if not os.path.exists(path):
        openssl(*KEY_ARGS[kind], "-out", path)
    return path


def make_csr(d, name, cn, sans=None, der=False):
    """A CSR for cn and sans (default [cn]; DNS names or IP addresses), with
    a domain key of its own: Pebble refuses an account key in a CSR."""
    sans = [cn] if sans is None else sans
    key = os.path.join(d, "domain.key")
    if not os.path.exists(key):
        openssl(*KEY_ARGS["p256"], "-out", key)
    path = os.path.join(d, name + (".der" if der else ".csr"))
    args = ["req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", path]
    if sans:
        san = ",".join(("IP:" if re.fullmatch(r"[0-9.]+|[0-9a-f:]+", s) else "DNS:") + s for s in sans)
        args += ["-addext", f"subjectAltName={san}"]
    if der:
        args += ["-outform", "DER"]
    openssl(*args)
    return path


def split_pem(text):
    return re.findall(r"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n", text, re.S)


def check_success(res, acme_dir):
    """Exit 0, stdout nothing but PEM certificates, no challenge file left."""
    out, err = res.stdout.decode(), res.stderr.decode()
    assert res.returncode == 0, f"exit {res.returncode}: {err[-1500:]}"
    assert PEM_CHAIN.fullmatch(out), f"stdout is not only PEM certificates: {out[:300]!r}"
    assert os.listdir(acme_dir) == [], f"challenge files left: {os.listdir(acme_dir)}"
    return out


def check_failure(res, acme_dir, pattern):
    """Exit 2, nothing on stdout, one line on stderr (with --quiet) matching pattern."""
    out, err = res.stdout.decode(), res.stderr.decode(errors="replace")
    assert res.returncode == 2, f"exit {res.returncode}, stderr: {err[-1500:]}"
    assert out == "", f"stdout not empty: {out[:200]!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err[-1500:]!r}"
    assert re.search(pattern, lines[0]), f"stderr {lines[0]!r} does not match {pattern!r}"
    if acme_dir:
        assert os.listdir(acme_dir) == [], f"challenge files left: {os.listdir(acme_dir)}"
    return lines[0]


def picked(only, name, suite):
    """True if run.py's --only (part of a test's name, or of its suite's) picks this test."""
    return not only or only in name or only in suite


@contextlib.contextmanager
def scratch_dir(prefix):
    """A temporary directory for one suite, removed however the suite ends."""
    d = tempfile.mkdtemp(prefix=prefix)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_cases(cases, report, only, suite, new_suite):
    """Runs the (name, fn) cases that --only picks, each as fn(s) with one
    s = new_suite(tmp) over a scratch directory made only if any is picked."""
    selected = [(n, f) for n, f in cases if picked(only, n, suite)]
    if selected:
        with scratch_dir(f"acme-tiny-{suite}-") as tmp:
            s = new_suite(tmp)
            for name, fn in selected:
                report.check(name, fn, s)
