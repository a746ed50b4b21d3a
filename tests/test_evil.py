"""acme-tiny against a malicious CA (tests/evil_ca.py), on loopback.

Every case runs the real binary as

    acme-tiny --account-key K --csr C --acme-dir www/.well-known/acme-challenge
              --directory-url https://localhost:PORT/dir --ca-file TESTCA
              --disable-check --quiet --timeout 5 --max-wait 4

(with --revoke keys/leaf.pem or --new-account-key keys/rollover-new.key for
the revokeCert and keyChange cases, --csr and --acme-dir then unused) in a
fresh temporary directory, and expect_failure() checks what must hold
whatever the CA does: exit status 2 (no signal, no hang: killed after
DEADLINE s), nothing on stdout, exactly one stderr line matching the case's
pattern, no raw control character on stderr, no sanitizer report, no file
created or changed in the temporary directory (the challenge directory
empty) nor at the absolute and traversal targets, and a peak RSS (from
wait4) under MEM_BOUND_KIB, unless ACME_TINY_SANITIZED=1.

Memory bound: a normal issuance against this CA peaks at about 2.2 MiB on
x86-64 Linux (measured first, printed as "evil: normal run peak RSS ..."),
and no hostile case here goes above 2.5 MiB; 16 MiB leaves room for other
libcs and allocators while still catching a client that buffers a 200 MiB
body (or a tenth of it). The peak comes from a small C launcher: see
tests/launcher.c for why wait4 on a child of this Python process cannot give it.

The cases run one after another, each with its own server: a few depend on
timing (drip, polling, signals), and the whole suite takes about 25 s.
"""
import base64
import calendar
import contextlib
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from types import SimpleNamespace

from evil_ca import DOMAIN, EvilCA
from helpers import check_failure, check_success, make_csr, make_key, run_cases
from pebble_env import make_tls_cert

HERE = os.path.dirname(os.path.abspath(__file__))
DEADLINE = 20                # s: a client still running then hangs
MEM_BOUND_KIB = 16 * 1024    # peak RSS of the client, see above
def sanitized():
    """Read at each check: tests/run.py sets it only for its ASan+UBSan phase."""
    return os.environ.get("ACME_TINY_SANITIZED") == "1"
ABS_TARGETS = ["/tmp/acme-tiny-evil-abs", "/etc/x", "/x", "/tmp/x"]
ACME_DIR = os.path.join("www", ".well-known", "acme-challenge")
# a byte the terminal could act on: C0 but the final newline, DEL, C1 in UTF-8
RAW_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


def raw_control(stderr):
    """The first control character acme-tiny let through to stderr, or None:
    RAW_CONTROL, and also an 8-bit C1 byte (0x80..0x9F that is not part of a
    valid UTF-8 sequence: 0x9B is CSI to a terminal in 8-bit mode)."""
    text = stderr[:-1] if stderr.endswith(b"\n") else stderr
    m = RAW_CONTROL.search(text)
    if m:
        return m.group()
    for ch in text.decode("utf-8", errors="surrogateescape"):
        if 0xDC80 <= ord(ch) <= 0xDC9F:     # an undecodable byte 0x80..0x9F
            return bytes([ord(ch) - 0xDC00])
    return None


# ---------------------------------------------------------------- setup

def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"openssl {' '.join(args)}: {p.stderr[-1000:]}")


def make_certs(d):
    """tls.pem (localhost, by the test CA ca.pem) as pebble_env makes it, and the
    bad ones: otherhost (for other.test), expired (2020), untrusted (another CA),
    localhost-only (no IP address)."""
    make_tls_cert(d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "otherhost.key", "-out", "otherhost.csr", "-subj", "/CN=other.test", cwd=d)
    with open(os.path.join(d, "otherhost.cnf"), "w") as f:
        f.write("subjectAltName=DNS:other.test\n")
    openssl("x509", "-req", "-in", "otherhost.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "otherhost.pem", "-days", "2",
            "-extfile", "otherhost.cnf", cwd=d)
    # localhost only, no IP address: for a CA addressed as 127.0.0.1
    with open(os.path.join(d, "localhost-only.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "localhost-only.pem", "-days", "2",
            "-extfile", "localhost-only.cnf", cwd=d)
    # OpenSSL 3.0's x509 has no -not_before: `openssl ca` takes both dates
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = evil\n[evil]\ndatabase = index.txt\nnew_certs_dir = .\n"
                "serial = serial.txt\ndefault_md = sha256\npolicy = anything\n"
                "unique_subject = no\nx509_extensions = ext\n"
                "[anything]\ncommonName = supplied\n"
                "[ext]\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n")
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial.txt"), "w") as f:
        f.write("1000\n")
    openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
            "-in", "tls.csr", "-out", "expired.pem", "-notext",
            "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", cwd=d)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2",
            "-subj", "/CN=some other CA", cwd=d)
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "other-ca.pem", "-CAkey", "other-ca.key",
            "-CAcreateserial", "-out", "untrusted.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    # the address as a dNSName, not an iPAddress: no name for a CA addressed as 127.0.0.1
    with open(os.path.join(d, "ip-as-dns.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,DNS:127.0.0.1\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "ip-as-dns.pem", "-days", "2",
            "-extfile", "ip-as-dns.cnf", cwd=d)
    # for a CA addressed by its IPv6 address, ::1
    with open(os.path.join(d, "ip6.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:::1\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "ip6.pem", "-days", "2", "-extfile", "ip6.cnf", cwd=d)
    for name in ("expired", "untrusted", "localhost-only", "ip-as-dns", "ip6"):
        shutil.copy(os.path.join(d, "tls.key"), os.path.join(d, name + ".key"))


class Suite:
    def __init__(self, binary, tmp):
        self.bin, self.tmp = binary, tmp
        self.keys = os.path.join(tmp, "keys")
        self.io = os.path.join(tmp, "io")
        self.cases = os.path.join(tmp, "cases")
        for d in (self.keys, self.io, self.cases):
            os.mkdir(d)
        make_certs(self.keys)
        self.ca_file = os.path.join(self.keys, "ca.pem")
        self.account_key = make_key(self.keys, "p256")
        self.csr = make_csr(self.keys, "evil", DOMAIN)   # its key is keys/domain.key
        # what the CA issues: a certificate for the CSR's key and name, by the test CA
        with open(os.path.join(self.keys, "leaf.ext"), "w") as f:
            f.write(f"subjectAltName=DNS:{DOMAIN}\nauthorityKeyIdentifier=keyid\n")
        openssl("x509", "-req", "-in", self.csr, "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext",
                cwd=self.keys)
        # the same, older: 12 hours of 60 left; 15 days of 30 left; expired; a
        # validity that ends before it begins; one that begins next year; and one that
        # begins in 2 days (by the clock of a CA 3 days ahead of ours, it has begun); reversed
        # again, but within the day's leeway of a start: valid now were it not reversed
        now = time.time()
        for name, start, end in (("leaf-expiring", now - 48 * 3600, now + 12 * 3600),
                                 ("leaf-half", now - 15 * 86400, now + 15 * 86400),
                                 ("leaf-expired", now - 60 * 86400, now - 86400),
                                 ("leaf-reversed", now + 365 * 86400, now + 30 * 86400),
                                 ("leaf-future", now + 365 * 86400, now + 400 * 86400),
                                 ("leaf-soon", now + 2 * 86400, now + 60 * 86400),
                                 ("leaf-reversed-soon", now + 2 * 3600, now + 3600)):
            openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
                    "-in", self.csr, "-out", name + ".pem", "-notext", "-extfile", "leaf.ext",
                    "-startdate", time.strftime("%Y%m%d%H%M%SZ", time.gmtime(start)),
                    "-enddate", time.strftime("%Y%m%d%H%M%SZ", time.gmtime(end)), cwd=self.keys)
        # as leaf-expiring, but without an Authority Key Identifier: no ARI certID
        with open(os.path.join(self.keys, "leaf-noaki.ext"), "w") as f:
            f.write(f"subjectAltName=DNS:{DOMAIN}\nauthorityKeyIdentifier=none\n")
        openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
                "-in", self.csr, "-out", "leaf-noaki.pem", "-notext", "-extfile", "leaf-noaki.ext",
                "-startdate", time.strftime("%Y%m%d%H%M%SZ", time.gmtime(now - 48 * 3600)),
                "-enddate", time.strftime("%Y%m%d%H%M%SZ", time.gmtime(now + 12 * 3600)),
                cwd=self.keys)
        # for the CSR's key too, but other names, or one name more
        for name, sans in (("leaf-other-names", "DNS:other.example.test"),
                           ("leaf-extra-name", f"DNS:{DOMAIN},DNS:extra.example.test")):
            with open(os.path.join(self.keys, name + ".ext"), "w") as f:
                f.write(f"subjectAltName={sans}\n")
            openssl("x509", "-req", "-in", self.csr, "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile",
                    name + ".ext", cwd=self.keys)
        # for --revoke (keys/leaf.pem, whose key is keys/domain.key) and key rollover
        self.leaf = os.path.join(self.keys, "leaf.pem")
        self.domain_key = os.path.join(self.keys, "domain.key")
        self.new_account_key = make_key(self.keys, "p256", "rollover-new")
        self.n = 0
        self.baseline_kib = None
        self.launcher = build_launcher(tmp)

    def run_client(self, ca, on_tick=None, prepare=None, args=()):
        """Runs the client against ca in a fresh directory, through the launcher
        (whose wait4 gives the exit status and the peak RSS). prepare(acme_dir)
        may put files there first; on_tick(pid, case_dir, ca) runs every 5 ms
        while the client runs."""
        self.n += 1
        case_dir = os.path.join(self.cases, f"case-{self.n}")
        os.makedirs(os.path.join(case_dir, ACME_DIR))
        # so that the traversal token ../../etc/x would land in an existing directory
        os.makedirs(os.path.join(case_dir, "www", "etc"))
        if prepare:
            prepare(os.path.join(case_dir, ACME_DIR))
        # --revoke and --new-account-key do that alone: without the issuance's flags
        issue = [] if {"--revoke", "--new-account-key"} & set(args) else \
            ["--csr", self.csr, "--acme-dir", ACME_DIR]
        argv = [self.bin, "--account-key", self.account_key, *issue, "--directory-url", ca.directory,
                "--ca-file", self.ca_file, "--disable-check", "--quiet",
                "--timeout", "5", "--max-wait", "4", *args]
        before = snapshot(case_dir)
        tmp_before, cases_before = os.listdir(self.tmp), set(os.listdir(self.cases))
        abs_before = {p: file_state(p) for p in ABS_TARGETS}
        out_path = os.path.join(self.io, f"{self.n}.out")
        err_path = os.path.join(self.io, f"{self.n}.err")
        report = os.path.join(self.io, f"{self.n}.rusage")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            start = time.monotonic()
            launcher = subprocess.Popen(([self.launcher, report] if self.launcher else []) + argv,
                                        cwd=case_dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            client = None if self.launcher else launcher.pid
            hung = False
            while True:
                pid, status, usage = os.wait4(launcher.pid, os.WNOHANG)
                if client is None:
                    client = read_report(report, 0)
                if pid:
                    break
                if time.monotonic() - start > DEADLINE:
                    hung = True
                    os.kill(client or launcher.pid, signal.SIGKILL)
                    pid, status, usage = os.wait4(launcher.pid, 0)
                    break
                if on_tick and client:
                    on_tick(client, case_dir, ca)
                time.sleep(0.005)
            end = time.monotonic()
        launcher.returncode = os.waitstatus_to_exitcode(status)
        if self.launcher:
            assert launcher.returncode == 0, f"the launcher failed: exit {launcher.returncode}"
            status, maxrss = read_report(report, 1)
            rc = os.waitstatus_to_exitcode(status)
        else:   # ru_maxrss of a direct child counts this Python process's RSS before exec
            rc, maxrss = launcher.returncode, None
        with open(out_path, "rb") as f:
            stdout = f.read()
        with open(err_path, "rb") as f:
            stderr = f.read()
        return SimpleNamespace(
            returncode=rc, stdout=stdout, stderr=stderr, elapsed=end - start, end=end,
            hung=hung, maxrss_kib=maxrss, case_dir=case_dir, prepared=prepare is not None,
            acme_dir=os.path.join(case_dir, ACME_DIR), before=before,
            after=snapshot(case_dir), tmp_before=tmp_before, tmp_after=os.listdir(self.tmp),
            cases_new=set(os.listdir(self.cases)) - cases_before - {f"case-{self.n}"},
            abs_before=abs_before, abs_after={p: file_state(p) for p in ABS_TARGETS})


def build_launcher(tmp):
    """tests/launcher.c, built with the compiler that builds acme-tiny (see there for why)."""
    src, exe = os.path.join(HERE, "launcher.c"), os.path.join(tmp, "launcher")
    for cc in filter(None, [os.environ.get("CC"), "cc", "gcc"]):
        try:
            if subprocess.run([cc, "-O1", "-o", exe, src], capture_output=True).returncode == 0:
                return exe
        except OSError:
            pass
    return None


def read_report(path, line):
    """Line 0 of the launcher's report: the client's pid; line 1: status and peak RSS."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return None
    if len(lines) <= line + 1:   # not written (whole) yet
        return None
    if line == 0:
        return int(lines[0])
    status, maxrss, _cpu = lines[1].split()
    return int(status), int(maxrss)


def file_state(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)


def snapshot(root):
    """Every path under root: a directory's mode; anything else's mode, size,
    mtime and content."""
    state = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            if os.path.isdir(p) and not os.path.islink(p):
                # a directory's mtime changes when the challenge file comes and goes
                state[os.path.relpath(p, root)] = (st.st_mode,)
                continue
            content = None
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    content = f.read()
            state[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, content)
    return state


# ---------------------------------------------------------------- the checks

def check_common(res, pattern, ca=None):
    """What must hold in every failing case; returns the stderr line."""
    err = res.stderr.decode(errors="replace")
    assert not res.hung, f"hangs: killed after {DEADLINE} s; stderr: {err[-500:]!r}"
    assert res.returncode >= 0, f"killed by signal {-res.returncode}; stderr: {err[-1000:]!r}"
    assert "AddressSanitizer" not in err and "runtime error:" not in err, f"sanitizer: {err[-3000:]}"
    bad = raw_control(res.stderr)
    assert not bad, f"raw control byte {bad!r} on stderr: {res.stderr[-600:]!r}"
    # files put in --acme-dir beforehand must stay as they were: the snapshot checks
    line = check_failure(res, None if res.prepared else res.acme_dir, pattern)
    added = sorted(set(res.after) - set(res.before))
    removed = sorted(set(res.before) - set(res.after))
    changed = sorted(k for k in res.before if k in res.after and res.before[k] != res.after[k])
    assert not (added or removed or changed), \
        f"files touched in the run's directory: added {added}, removed {removed}, changed {changed}"
    assert set(res.tmp_before) == set(res.tmp_after) and not res.cases_new, \
        f"files created next to the run's directory: {res.tmp_after}, {res.cases_new}"
    for p in ABS_TARGETS:
        assert res.abs_before[p] == res.abs_after[p], f"{p} was created or changed"
    if not sanitized() and res.maxrss_kib is not None:
        assert res.maxrss_kib < MEM_BOUND_KIB, \
            f"peak RSS {res.maxrss_kib} KiB >= bound {MEM_BOUND_KIB} KiB"
    if ca is not None:
        alive = ca.stop()
        assert not alive, f"{alive} server threads still running after stop()"
    return line


def never(*steps):
    """An after() for expect_failure: the CA saw none of these steps."""
    def after(ca, res):
        assert all(ca.count(step) == 0 for step in steps), ca.steps()
    return after


def expect_failure(suite, scenario, pattern, *, cert="tls", min_s=None, max_s=None,
                   after=None, on_tick=None, prepare=None, args=(), **opts):
    """Runs the client against scenario; everything must hold (check_common),
    the run must take between min_s and max_s, and after(ca, res) may check
    what the server saw."""
    with EvilCA(scenario, suite.keys, cert=cert, **opts) as ca:
        res = suite.run_client(ca, on_tick, prepare, args)
        if after:
            after(ca, res)
        check_common(res, pattern, ca)
    if min_s is not None:
        assert res.elapsed >= min_s, f"ended after {res.elapsed:.1f} s, before {min_s} s"
    if max_s is not None:
        assert res.elapsed < max_s, f"ended after {res.elapsed:.1f} s, not before {max_s} s"
    return res


def url(step_path):
    return r"https://localhost:\d+" + step_path


def get_dir(why):
    return r"^acme-tiny: directory: GET " + url("/dir") + ": " + why + "$"


def post(step, path, why):
    return rf"^acme-tiny: {step}: POST " + url(path) + ": " + why + "$"


NOT_JSON = "the server's answer is not a JSON object$"
TOKEN_REFUSED = (rf"^acme-tiny: {re.escape(DOMAIN)}: the challenge token is not 1 to 255 "
                 r"base64url characters; refusing it as a file name$")
TOO_LARGE = "response body larger than 128 KiB"


# ---------------------------------------------------------------- cases

def baseline(suite):
    """The normal flow works against this CA (else nothing below means much),
    and gives the normal peak RSS."""
    with EvilCA("normal", suite.keys) as ca:
        res = suite.run_client(ca)
        steps = ca.steps()
        agents = {req.headers.get("user-agent") for _, req in ca.requests}
        assert not ca.stop(), "server threads still running after stop()"
    check_success(res, res.acme_dir)
    # every request says who sends it (Pebble 2.10 and later refuse one that does not)
    version = subprocess.run([suite.bin, "--version"], capture_output=True).stdout.split()[-1]
    assert agents == {"acme-tiny/" + version.decode()}, agents
    assert res.stderr == b"", f"stderr with --quiet: {res.stderr!r}"
    for s in ("directory", "newNonce", "newAccount", "newOrder", "authz", "challenge",
              "readyPoll", "finalize", "orderPoll", "cert"):
        assert s in steps, f"the client never reached {s}: {steps}"
    suite.baseline_kib = res.maxrss_kib
    assert res.maxrss_kib is not None, "cannot measure the peak RSS: no C compiler for the launcher"
    print(f"evil: normal run peak RSS {res.maxrss_kib} KiB "
          f"(bound {MEM_BOUND_KIB} KiB{', not applied: sanitized build' if sanitized() else ''})",
          flush=True)
    if not sanitized():
        assert res.maxrss_kib < MEM_BOUND_KIB


def token_255(suite):
    # the longest token that is a file name: taken on, and removed at the end
    with EvilCA("token_255", suite.keys) as ca:
        res = suite.run_client(ca)
    check_success(res, res.acme_dir)


def token_case(scenario):
    def case(suite):
        expect_failure(suite, scenario, TOKEN_REFUSED)
    return case


EXISTS = (r"^acme-tiny: cannot create challenge file www/\.well-known/acme-challenge/{}: "
          r"a file of that name is there already$")


def token_existing_file(suite):
    # a token named after a file in --acme-dir: it is neither overwritten nor removed
    def prepare(d):
        with open(os.path.join(d, "index"), "w") as f:
            f.write("keep me\n")
    expect_failure(suite, "token_existing_file", EXISTS.format("index"), prepare=prepare)


def token_hardlink(suite):
    # ... nor is a file elsewhere that is hard-linked into --acme-dir
    def prepare(d):
        outside = os.path.join(d, "..", "..", "outside.txt")
        with open(outside, "w") as f:
            f.write("keep me\n")
        os.link(outside, os.path.join(d, "outside"))
    expect_failure(suite, "token_hardlink", EXISTS.format("outside"), prepare=prepare)


def token_fifo(suite):
    # a FIFO of that name must not hang the run
    expect_failure(suite, "token_fifo", EXISTS.format("fifo"), max_s=5,
                   prepare=lambda d: os.mkfifo(os.path.join(d, "fifo")))


def token_nul(suite):
    # the tokenizer refuses any string with NUL (escaped or not): the whole
    # authorization is refused before the token is looked at
    expect_failure(suite, "token_nul", r"^acme-tiny: authorization: " + NOT_JSON)


def http_header_line_1m(suite):
    expect_failure(suite, "http_header_line_1m", get_dir("header line too long"))


def http_headers_100000(suite):
    expect_failure(suite, "http_headers_100000", post("newAccount", "/acct", "too many header lines"))


def sent_less_than(limit):
    def after(ca, res):
        assert ca.bytes_sent < limit, f"the client read {ca.bytes_sent} bytes of the body"
    return after


def http_content_length_200m(suite):
    # refused from the header alone; what the server got out is what fits in
    # the socket buffers before the client closed
    expect_failure(suite, "http_content_length_200m", get_dir(TOO_LARGE), max_s=5,
                   after=sent_less_than(64 << 20))


def http_close_delimited_200m(suite):
    expect_failure(suite, "http_close_delimited_200m", post("newOrder", "/order", TOO_LARGE),
                   max_s=5, after=sent_less_than(64 << 20))


def http_chunked_endless(suite):
    expect_failure(suite, "http_chunked_endless", post("certificate download", "/cert/1", TOO_LARGE),
                   max_s=5, after=sent_less_than(64 << 20))


def http_chunk_size_overflow(suite):
    expect_failure(suite, "http_chunk_size_overflow",
                   post("authorization", "/authz/1", "malformed chunk size"))


def http_chunk_size_negative(suite):
    expect_failure(suite, "http_chunk_size_negative",
                   post("authorization", "/authz/1", "malformed chunk size"))


def http_short_body_close(suite):
    # Content-Length 1000, 17 bytes, close_notify: a clean end in the wrong place
    expect_failure(suite, "http_short_body_close",
                   post("order", "/order/1", "connection closed in the middle of the body"))


def http_reset_mid_body(suite):
    # at the challenge POST: the challenge file exists by then and must go
    expect_failure(suite, "http_reset_mid_body",
                   post("challenge", "/chal/1", "Connection reset by peer"))


def http_drip(suite):
    # only --timeout 5 may end it
    expect_failure(suite, "http_drip", get_dir("timed out"), min_s=4, max_s=15)


def http_silent_new_order(suite):
    # newOrder on the kept-alive connection, taken and never answered: --timeout 5
    # ends the exchange, and the signed request is not sent again on a new one
    def after(ca, res):
        assert ca.steps().count("newOrder") == 1, ca.steps()
    expect_failure(suite, "http_silent_new_order", post("newOrder", "/order", "timed out"),
                   min_s=4, max_s=9, after=after)


def http_garbage_status(suite):
    expect_failure(suite, "http_garbage_status",
                   post("newOrder", "/order", "malformed or unexpected status line"))


def http_close_delimited_directory(suite):
    # chosen: the close-delimited directory is fine and must be accepted; the
    # scenario then fails at the very last step, which shows the client got
    # past the directory and went on (on a new connection) to the end
    def after(ca, res):
        steps = ca.steps()
        assert steps.count("directory") == 1 and "cert" in steps, steps
        assert ca.connections >= 2, f"{ca.connections} connections"
    expect_failure(suite, "http_close_delimited_directory",
                   r"^acme-tiny: certificate download failed: HTTP 500 urn:ietf:params:acme:error:"
                   r"serverInternal: evil CA reached the end after a close-delimited directory$",
                   after=after)


def http_close_after_each(suite):
    # every answer is followed by a close without close_notify and without
    # "Connection: close": each next request finds its kept-alive connection
    # dead before any answer and must go again on a new one (once); the last
    # step fails on purpose, to show the client got through all of them
    def after(ca, res):
        steps = ca.steps()
        assert "cert" in steps, f"the client stopped early: {steps}"
        assert ca.connections >= len(steps), f"{ca.connections} connections for {len(steps)} requests"
    expect_failure(suite, "http_close_after_each",
                   r"^acme-tiny: certificate download failed: HTTP 500 urn:ietf:params:acme:error:"
                   r"serverInternal: evil CA reached the end, one connection per request$",
                   after=after)


def http_close_delimited_truncated(suite):
    # the same directory, but the connection ends without close_notify
    expect_failure(suite, "http_close_delimited_truncated", get_dir("connection closed"))


def json_case(scenario, step):
    def case(suite):
        expect_failure(suite, scenario, rf"^acme-tiny: {step}: " + NOT_JSON)
    return case


def no_usable(step, key):
    return rf'^acme-tiny: {step}: the server\'s answer has no usable "{key}"$'


def json_huge_number(suite):
    expect_failure(suite, "json_huge_number", no_usable("finalize", "status"))


def json_duplicate_keys(suite):
    expect_failure(suite, "json_duplicate_keys", no_usable("authorization", "status"))


def json_status_number(suite):
    expect_failure(suite, "json_status_number", no_usable("order", "status"))


def json_authorizations_string(suite):
    expect_failure(suite, "json_authorizations_string",
                   r"^acme-tiny: newOrder: the order has no list of authorizations$")


def proto_no_nonce(suite):
    expect_failure(suite, "proto_no_nonce", r"^acme-tiny: newNonce: the server sent no Replay-Nonce$")


def proto_bad_nonce_forever(suite):
    def after(ca, res):
        posts = ca.count(method="POST")
        assert posts == 16, f"{posts} POSTs for one request under badNonce, not 16"
    expect_failure(suite, "proto_bad_nonce_forever",
                   r"^acme-tiny: newAccount failed: HTTP 400 urn:ietf:params:acme:error:badNonce: "
                   r"evil CA: JWS has an invalid anti-replay nonce$", after=after)


def proto_account_http_location(suite):
    expect_failure(suite, "proto_account_http_location",
                   r"^acme-tiny: newAccount: the server sent no usable Location \(an https URL\)$")


def proto_challenge_other_host(suite):
    # the directory's port, but 127.0.0.1 for localhost: another host as written
    expect_failure(suite, "proto_challenge_other_host",
                   r"^acme-tiny: challenge: https://127\.0\.0\.1:\d+/chal/1 is not on the "
                   r"directory's host and port$")


def proto_identifier_type(suite):
    expect_failure(suite, "proto_identifier_type",
                   r"^acme-tiny: authorization " + url("/authz/1") + ": not for a name in the CSR$",
                   after=never("challenge"))


def proto_authz_twice(suite):
    def after(ca, res):
        assert ca.count("challenge") <= 1, ca.steps()
    expect_failure(suite, "proto_authz_twice",
                   r"^acme-tiny: newOrder: more authorizations than names, or one that is no URL$",
                   after=after)


def proto_authz_invalid(suite):
    # an authorization that is invalid gets no challenge file and no challenge POST
    expect_failure(suite, "proto_authz_invalid",
                   rf"^acme-tiny: authorization for {re.escape(DOMAIN)} is invalid$",
                   after=never("challenge"))


def proto_no_http01(suite):
    # only DNS challenges for a run with --acme-dir alone: no file, no challenge POST
    expect_failure(suite, "proto_no_http01",
                   rf"^acme-tiny: {re.escape(DOMAIN)}: the CA offers no http-01 challenge$",
                   after=never("challenge"))


def proto_new_nonce_500(suite):
    expect_failure(suite, "proto_new_nonce_500",
                   r"^acme-tiny: newNonce failed: HTTP 500 \(no problem document\)$")


def proto_invalid_after_finalize(suite):
    # the order's own error says why: after finalize, no authorization is to blame
    expect_failure(suite, "proto_invalid_after_finalize", r"^acme-tiny: order https://localhost:"
                   r"\d+/order/1 is invalid: urn:ietf:params:acme:error:badCSR: key too weak$")


def proto_order_no_authorizations(suite):
    expect_failure(suite, "proto_order_no_authorizations",
                   r"^acme-tiny: newOrder: the order has no list of authorizations$")


def proto_authz_not_string(suite):
    expect_failure(suite, "proto_authz_not_string",
                   r"^acme-tiny: newOrder: more authorizations than names, or one that is no URL$",
                   after=never("authz"))


def proto_authz_url_space(suite):
    # refused before it is sent: nothing reaches a request line but printable ASCII
    expect_failure(suite, "proto_authz_url_space",
                   post("authorization", "/authz/1 x", "malformed URL"),
                   after=never("authz", "other"))


def order_not_ready_always(suite):
    # orderNotReady to each finalize: polled and sent again MAX_FINALIZE_TRIES (4)
    # times in all, then the CA's problem
    def after(ca, res):
        assert ca.count("finalize") == 4, ca.steps()
    expect_failure(suite, "order_not_ready_always",
                   r"^acme-tiny: finalize failed: HTTP 403 urn:ietf:params:acme:error:orderNotReady:"
                   r" evil CA: the order is not ready$", max_s=20, after=after)


def problem_other_namespace(suite):
    # badNonce only in the ACME namespace: this one is not sent again
    def after(ca, res):
        assert ca.count("newAccount") == 1, ca.steps()
    expect_failure(suite, "problem_other_namespace",
                   r"^acme-tiny: newAccount failed: HTTP 400 urn:ietf:params:xxxx:error:badNonce: "
                   r"evil CA: not ACME's$", after=after)


def http_extra_response(suite):
    # a response nobody asked for, behind the directory on the same connection (in
    # its TLS record, or in one of its own): the client drops the connection, and
    # the planted nonce is never used
    for scenario in ("http_extra_response", "http_extra_record"):
        with EvilCA(scenario, suite.keys) as ca:
            res = suite.run_client(ca)
            check_success(res, res.acme_dir)
            nonces = [h.get("nonce") for _, _, _, h in ca.log if h]
            assert "plantedNonce0" not in nonces, (scenario, nonces)
            assert ca.connections == 2, f"{scenario}: {ca.connections} connections"


def http_cut_after_status(suite):
    # part of an answer to newAccount, then the end: the POST is not sent again
    def after(ca, res):
        assert ca.count("newAccount") == 1, ca.steps()
    expect_failure(suite, "http_cut_after_status",
                   post("newAccount", "/acct", "connection closed in the middle of the headers"),
                   after=after)


def http_record_cut(suite):
    # newOrder's answer begun on the kept-alive connection, then its first TLS record cut
    # short, or whole but not decrypting, and the end: the CA had the request, so it is not
    # sent again. Sent again, its nonce is spent: badNonce, and the retry with the fresh
    # nonce makes a second order (found by a network-fault run between acme-tiny and Pebble)
    def after(ca, res):
        assert ca.count("newOrder") == 1, ca.steps()
        assert ca.connections == 1, f"{ca.connections} connections"
    for scenario, why in (("http_record_cut", "connection closed"),
                          ("http_record_corrupt", r"TLS error 7 \(BearSSL's BR_ERR_\* codes\)")):
        expect_failure(suite, scenario, post("newOrder", "/order", why), after=after)


def http_request_dropped(suite):
    # the kept-alive connection ends as newOrder comes, without a byte of an answer (close_notify
    # alone, or a reset): the CA never had it, so it goes once more on a new connection, and the
    # run gets its certificate; the same check as http_record_cut's must not stop that
    for scenario in ("http_dropped_notify", "http_dropped_reset"):
        with EvilCA(scenario, suite.keys) as ca:
            res = suite.run_client(ca)
            check_success(res, res.acme_dir)
            assert ca.count("newOrder") == 2 and ca.connections == 2, \
                (scenario, ca.connections, ca.steps())


def proto_account_no_location(suite):
    expect_failure(suite, "proto_account_no_location",
                   r"^acme-tiny: newAccount: the server sent no usable Location \(an https URL\)$")


def proto_order_no_location(suite):
    expect_failure(suite, "proto_order_no_location",
                   r"^acme-tiny: newOrder: the server sent no usable Location \(an https URL\)$")


def proto_pending_retry_0(suite):
    def after(ca, res):
        polls = ca.count("readyPoll")
        assert 2 <= polls <= 20, f"{polls} polls of the order"
    expect_failure(suite, "proto_pending_retry_0",
                   r"^acme-tiny: order: still pending after --max-wait 4 s$",
                   max_s=8, after=after)


def proto_pending_retry_999999(suite):
    expect_failure(suite, "proto_pending_retry_999999",
                   r"^acme-tiny: order: still pending, and the server asks to wait "
                   r"999999 s \(Retry-After: 999999\), more than --max-wait 4$", max_s=2)


def proto_processing_forever(suite):
    def after(ca, res):
        polls = ca.count("orderPoll")
        assert 2 <= polls <= 20, f"{polls} polls of the order"
    expect_failure(suite, "proto_processing_forever",
                   r"^acme-tiny: order: still processing after --max-wait 4 s$", max_s=8,
                   after=after)


def poll_delay_cap(suite):
    # the wait between polls doubles from 20 ms up to 8 s, no more: an order processing for
    # ever under --max-wait 20 is polled at 10.2 s, then at 18.2 s, and the run ends there
    # (a wait doubled to 10.24 s after 10.2 s would end it then, one poll fewer)
    def after(ca, res):
        assert ca.count("orderPoll") == 10, f"{ca.count('orderPoll')} polls of the order"
    expect_failure(suite, "proto_processing_forever",
                   r"^acme-tiny: order: still processing after --max-wait 20 s$", min_s=18,
                   max_s=20, after=after, args=["--max-wait", "20"])


def max_time_polling(suite):
    # an order pending for ever, with --max-wait far off: --max-time
    # ends the run, and the challenge file goes with it
    expect_failure(suite, "proto_pending_retry_0",
                   r"^acme-tiny: gave up after --max-time 2 s; challenge file removed$",
                   min_s=1.9, max_s=4, args=["--max-wait", "100", "--max-time", "2"])


def max_time_signals_blocked(suite):
    # started with its signals blocked (a mask survives exec, as from a
    # daemon's thread): --max-time still ends the run, challenge file removed
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
    try:
        max_time_polling(suite)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def signals_ignored(suite):
    # started with SIGHUP and SIGINT ignored (nohup; a script's job in the background):
    # they stay ignored, while SIGALRM ignored too still ends the run at --max-time
    sent = {}

    def tick(pid, case_dir, ca):
        if not sent and os.listdir(os.path.join(case_dir, ACME_DIR)):
            os.kill(pid, signal.SIGHUP)
            os.kill(pid, signal.SIGINT)
            sent["at"] = time.monotonic()
    ignored = (signal.SIGHUP, signal.SIGINT, signal.SIGALRM)
    old = [signal.signal(sig, signal.SIG_IGN) for sig in ignored]
    try:
        expect_failure(suite, "proto_pending_retry_0",
                       r"^acme-tiny: gave up after --max-time 2 s; challenge file removed$",
                       min_s=1.9, max_s=4, args=["--max-wait", "100", "--max-time", "2"],
                       on_tick=tick)
    finally:
        for sig, handler in zip(ignored, old):
            signal.signal(sig, handler)
    assert sent, "the challenge file never appeared"


def max_time_busy(suite):
    # a CA that is busy for ever, each answer asking for another second: 16
    # sends would take 16 s, --max-time ends the run after 2
    expect_failure(suite, "busy_forever", r"^acme-tiny: gave up after --max-time 2 s$",
                   min_s=1.9, max_s=4, args=["--max-wait", "100", "--max-time", "2"])


def proto_retry_date_ca_clock(suite):
    # a Retry-After date counts from the CA's Date, not our clock: a day ahead of us, the
    # CA still means 2 s (not a day, past --max-wait); a day behind, 2 s (not none)
    for days in (1, -1):
        with EvilCA("proto_retry_date_ca_clock", suite.keys, date_offset=days * 86400) as ca:
            res = suite.run_client(ca)
            check_success(res, res.acme_dir)
            assert ca.count("readyPoll") == 2, ca.steps()
            assert 1.5 <= res.elapsed < 4, f"{days} day(s): {res.elapsed:.2f} s"


def proto_retry_date_c1(suite):
    # a Retry-After date whose day name is raw C1 bytes is no Retry-After at
    # all: the client ignores it and polls on until --max-wait
    expect_failure(suite, "proto_retry_date_c1",
                   r"^acme-tiny: order: still pending after --max-wait 4 s$", max_s=8)


def proto_challenge_invalid(suite):
    expect_failure(suite, "proto_challenge_invalid",
                   rf"^acme-tiny: {re.escape(DOMAIN)}: challenge did not pass \(invalid\): "
                   r"urn:ietf:params:acme:error:connection: "
                   r"evil CA could not connect to 192\.0\.2\.1:80$")


def proto_order_status_unknown(suite):
    # the order ends up neither ready nor valid after the challenges: the run fails, and the
    # hook hears failed for its challenge, never done
    log, hook = os.path.join(suite.io, "status-hook.log"), os.path.join(suite.io, "status-hook")
    with open(hook, "w") as f:
        f.write(f'#!/bin/sh\necho "$1 $2 $3" >> {log}\n')
    os.chmod(hook, 0o755)
    expect_failure(suite, "proto_order_status_unknown", r"^acme-tiny: order https://localhost:"
                   r"\d+/order/1 is expired: \(no problem type\)$", args=("--hook", hook))
    with open(log) as f:
        calls = f.read().splitlines()
    assert calls == [f"begin dns-01 {DOMAIN}", f"failed dns-01 {DOMAIN}"], calls


def proto_invalid_long_list(suite):
    # looking for the failed authorization fetches one per name, not the CA's thousand
    def after(ca, res):
        assert ca.count("authzPoll") == 1, f"{ca.count('authzPoll')} authorization fetches"
    expect_failure(suite, "proto_invalid_long_list", r"^acme-tiny: order https://localhost:\d+/"
                   r"order/1 is invalid: \(no problem type\)$", after=after)


def proto_cert_empty(suite):
    expect_failure(suite, "proto_cert_empty",
                   r"^acme-tiny: certificate download: the answer is not a PEM certificate chain$")


def proto_cert_trailing_escape(suite):
    # a chain with terminal escapes after the last block must not reach stdout
    expect_failure(suite, "proto_cert_trailing_escape",
                   r"^acme-tiny: certificate download: the answer is not a PEM certificate chain$")


def proto_slow_polls(suite):
    # each poll answers after 2 s with badNonce many times: the polls themselves
    # count against --max-wait 4, so the run ends in about 4 s, not 16 x 2 s
    expect_failure(suite, "proto_slow_polls",
                   r"^acme-tiny: order: POST https://localhost:\d+/order/\S+: timed out$",
                   max_s=8)


def proto_cert_other_key(suite):
    expect_failure(suite, "proto_cert_other_key",
                   r"^acme-tiny: certificate download: the certificate of order "
                   r"https://localhost:\d+/order/1 is not for the CSR's key and names, "
                   r"or is not valid now \(our clock says \d{4}-\d\d-\d\d \d\d:\d\d UTC, "
                   r"the CA's none\)$")


def proto_cert_not_ours(suite):
    # a certificate for the CSR's key that is still not the one asked for: the
    # good one in --output stays as it was (the snapshot of the run's directory)
    for scenario in ("proto_cert_other_names", "proto_cert_extra_name", "proto_cert_expired",
                     "proto_cert_reversed", "proto_cert_future"):
        expect_failure(suite, scenario, r"^acme-tiny: certificate download: the certificate of "
                       r"order https://localhost:\d+/order/1 is not for the CSR's key and names, "
                       r"or is not valid now \(our clock says [^)]+\)$", prepare=output_holds(suite, "leaf-expiring.pem"),
                       args=["--output", "out.pem"])


def cert_by_the_cas_clock(suite):
    # our clock 3 days behind the CA's (a router before NTP): a certificate that begins in 2
    # days by ours has begun by the CA's (its Date), and is taken; in --output, it is not due
    with EvilCA("proto_cert_soon", suite.keys, date_offset=3 * 86400) as ca:
        res = suite.run_client(ca)
    check_success(res, res.acme_dir)
    not_due(renew(suite, "normal", "leaf-soon.pem", date_offset=3 * 86400),
            os.path.join(suite.keys, "leaf-soon.pem"))
    # ours a month ahead: one that ended yesterday by ours is valid by the CA's
    with EvilCA("proto_cert_expired", suite.keys, date_offset=-30 * 86400) as ca:
        res = suite.run_client(ca)
    check_success(res, res.acme_dir)
    # the CA's clock agrees with ours: not begun, so refused, and --output's renewed
    expect_failure(suite, "proto_cert_soon", r"^acme-tiny: certificate download: the "
                   r"certificate of order https://localhost:\d+/order/1 is not for the CSR's "
                   r"key and names, or is not valid now \(our clock says [^,]+, the CA's "
                   r"\d{4}-\d\d-\d\d \d\d:\d\d UTC\)$", date_offset=0)
    issued(renew(suite, "normal", "leaf-soon.pem", date_offset=0))
    # a Date of raw C1 bytes is none at all (as Retry-After's): no CA clock to go by
    expect_failure(suite, "proto_cert_soon", r"^acme-tiny: certificate download: the "
                   r"certificate of order https://localhost:\d+/order/1 is not for the CSR's "
                   r"key and names, or is not valid now \(our clock says [^,]+, the CA's none\)$",
                   date_offset=3 * 86400, date_c1=True)


def due_by_the_cas_clock(suite):
    # our clock 12 and 20 days behind the CA's (a router whose NTP fails): leaf-half, 15 days
    # of 30 left by ours, is due by the CA's clock (and then expired), so renewed, not kept
    for days in (12, 20):
        issued(renew(suite, "normal", "leaf-half.pem", date_offset=days * 86400))
    # the CA's clock 3 days behind ours changes nothing: 12 days left by ours, not due
    not_due(renew(suite, "normal", "leaf-half.pem", date_offset=-3 * 86400),
            os.path.join(suite.keys, "leaf-half.pem"))


def proto_cert_html(suite):
    expect_failure(suite, "proto_cert_html",
                   r"^acme-tiny: certificate download: the answer is not a PEM certificate chain$")


def proto_redirect_new_order(suite):
    def after(ca, res):
        assert "other" not in ca.steps(), f"the redirect was followed: {ca.log}"
    expect_failure(suite, "proto_redirect_new_order",
                   r"^acme-tiny: newOrder failed: HTTP 302 \(no problem document\)$", after=after)


def proto_http_new_order(suite):
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen(4)
        target = f"http://127.0.0.1:{plain.getsockname()[1]}/order"
        expect_failure(suite, "proto_http_new_order",
                       rf"^acme-tiny: newOrder: POST {re.escape(target)}: not an https URL$",
                       http_order=target)
        ready, _, _ = select.select([plain], [], [], 0)
        assert not ready, "the client connected to the http:// newOrder URL"


def url_elsewhere(scenario, step):
    def case(suite):
        # a listener on another port of the same host: the client must not connect to it
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen(4)
            elsewhere = f"https://localhost:{other.getsockname()[1]}"
            expect_failure(suite, scenario, rf"^acme-tiny: {step}: {re.escape(elsewhere)}/\S+ "
                           r"is not on the directory's host and port$", elsewhere=elsewhere)
            ready, _, _ = select.select([other], [], [], 0)
            assert not ready, f"the client connected to {elsewhere}"
    return case


def retrying_with_error(suite):
    # two polls show the order pending while its challenge retries (erratum 5732): not a failure
    with EvilCA("retrying_with_error", suite.keys) as ca:
        res = suite.run_client(ca)
        check_success(res, res.acme_dir)
        assert ca.count("readyPoll") == 3, ca.steps()


def succeeds(scenario, check=None, args=(), **opts):
    """A scenario the client must get through, with these arguments: check(ca, res) says how."""
    def case(suite):
        with EvilCA(scenario, suite.keys, **opts) as ca:
            res = suite.run_client(ca, args=args)
            check_success(res, res.acme_dir)
            if check:
                check(ca, res)
    return case


def order_not_ready_once(ca, res):
    # orderNotReady: the order polled, then finalize sent again
    steps = ca.steps()
    assert steps.count("finalize") == 2 and "readyPoll" in steps[steps.index("finalize"):], steps


def order_reused(*absent):
    def check(ca, res):
        steps = ca.steps()
        for s in absent:
            assert s not in steps, f"{s} in {steps}"
    return check


def eab_single_use(exists, **opts):
    """EAB keys that are single-use (Google's): the key's account is looked for
    first (onlyReturnExisting), and only a new account is sent the binding, once."""
    def check(ca, res):
        sent = [json.loads(req.payload) for step, req in ca.requests if step == "newAccount"]
        assert sent[0] == {"onlyReturnExisting": True}, sent
        assert sum("externalAccountBinding" in p for p in sent) == (0 if exists else 1), sent
    key = base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")
    args = ("--eab-kid", "kid-1", "--eab-hmac-key", key)
    return succeeds("eab_single_use", check, args=args, exists=exists, **opts)


def eab_required_with_eab(suite):
    key = base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")
    expect_failure(suite, "eab_required_with_eab", r"^acme-tiny: newAccount failed: HTTP 403 "
                   r"urn:ietf:params:acme:error:externalAccountRequired: evil CA: that binding "
                   r"is no good$", args=["--eab-kid", "kid-1", "--eab-hmac-key", key])


def authz_valid(ca, res):
    steps = ca.steps()
    assert "challenge" not in steps and steps.count("readyPoll") == 1, steps


def polled_once(ca, res):
    assert ca.count("readyPoll") == 1, ca.steps()


def valid_after_challenge(ca, res):
    # the valid order is not taken for a failed one: no finalize, the certificate fetched
    steps = ca.steps()
    assert "challenge" in steps and "finalize" not in steps and steps[-1] == "cert", steps


def nonce_head_204(ca, res):
    assert ca.count("newNonce", "HEAD") >= 1, ca.steps()


def order_invalid(suite):
    expect_failure(suite, "order_invalid", r"^acme-tiny: order https://localhost:\d+/order/1 is "
                   r"invalid: urn:ietf:params:acme:error:unauthorized: evil CA: no$")


def finalize_still_ready(suite):
    # finalize sent MAX_FINALIZE_TRIES (4) times, then one line
    def after(ca, res):
        assert ca.count("finalize") == 4, ca.steps()
    expect_failure(suite, "finalize_still_ready", r"^acme-tiny: finalize: the order is still "
                   r"ready after 4 finalize requests$", max_s=5, after=after)


def user_action_required(suite):
    expect_failure(suite, "user_action_required",
                   r"^acme-tiny: newOrder failed: HTTP 403 urn:ietf:params:acme:error:"
                   r"userActionRequired: evil CA: agree to the new terms; see "
                   r"https://localhost:\d+/terms/agree; terms of service: "
                   r"https://localhost:\d+/terms/v2$")


def subproblems(suite):
    # each subproblem with its identifier, after the problem
    expect_failure(suite, "subproblems",
                   r"^acme-tiny: newOrder failed: HTTP 400 urn:ietf:params:acme:error:"
                   r"rejectedIdentifier: evil CA: cannot issue for 2 identifiers; bad\.example: "
                   r"urn:ietf:params:acme:error:rejectedIdentifier: evil CA: forbidden name; "
                   r"\(no identifier\): urn:ietf:params:acme:error:caa: evil CA: CAA forbids it$")


def subproblems_not_list(suite):
    # "subproblems" that is an object: the problem alone
    expect_failure(suite, "subproblems_not_list",
                   r"^acme-tiny: newOrder failed: HTTP 400 urn:ietf:params:acme:error:"
                   r"rejectedIdentifier: evil CA: cannot issue for 1 identifier$")


def ca_by_ip(suite):
    # https://127.0.0.1:PORT/dir: no SNI, and the address checked against the
    # certificate's iPAddress names; a certificate without it is refused
    with EvilCA("normal", suite.keys) as ca:
        ca.directory = ca.directory.replace("localhost", "127.0.0.1")
        ca.base = ca.base.replace("localhost", "127.0.0.1")
        res = suite.run_client(ca)
        check_success(res, res.acme_dir)
    for cert in ("otherhost", "localhost-only"):
        with EvilCA("tls", suite.keys, cert=cert) as ca:
            ca.directory = ca.directory.replace("localhost", "127.0.0.1")
            res = suite.run_client(ca)
            check_common(res, r"^acme-tiny: directory: GET https://127\.0\.0\.1:\d+/dir: "
                         r"TLS: server certificate is for another host name$", ca)


def ca_by_ipv6(suite):
    # https://[::1]:PORT/dir: the address in brackets in every URL and Host header, no SNI,
    # and ::1 checked against the certificate's iPAddress names (16 bytes); tls.pem has
    # 127.0.0.1 but not ::1, and is refused
    with EvilCA("normal", suite.keys, cert="ip6", v6=True) as ca:
        res = suite.run_client(ca)
        check_success(res, res.acme_dir)
        hosts = {req.headers.get("host") for _, req in ca.requests}
        assert hosts == {f"[::1]:{ca.port}"}, hosts
        assert "newOrder" in ca.steps() and "cert" in ca.steps(), ca.steps()
    with EvilCA("tls", suite.keys, v6=True) as ca:
        res = suite.run_client(ca)
        check_common(res, r"^acme-tiny: directory: GET https://\[::1\]:\d+/dir: "
                     r"TLS: server certificate is for another host name$", ca)


def ca_by_ip_as_dns_name(suite):
    # https://127.0.0.1:PORT/dir with a certificate that has 127.0.0.1 as a dNSName only:
    # a DNS name, not the address (RFC 5280 4.2.1.6), as BearSSL and every TLS client has it
    with EvilCA("tls", suite.keys, cert="ip-as-dns") as ca:
        ca.directory = ca.directory.replace("localhost", "127.0.0.1")
        res = suite.run_client(ca)
        check_common(res, r"^acme-tiny: directory: GET https://127\.0\.0\.1:\d+/dir: "
                     r"TLS: server certificate is for another host name$", ca)


@contextlib.contextmanager
def answering_once(reply):
    """A TCP server on 127.0.0.1 that reads what comes first and answers reply, raw;
    as a CA whose directory is https:// on its port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)

        def answer():
            conn, _ = s.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(reply)
        threading.Thread(target=answer, daemon=True).start()
        yield SimpleNamespace(directory=f"https://localhost:{s.getsockname()[1]}/dir")


def tls_plain_port(suite):
    # an https:// directory on a port that speaks plain HTTP
    with answering_once(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n") as fake:
        res = suite.run_client(fake)
        check_common(res, r"^acme-tiny: directory: GET https://localhost:\d+/dir: TLS: the server "
                     r"does not answer in TLS 1\.2 \(TLS 1\.3 only\? plain HTTP\?\)$")


def tls_nothing_in_common(suite):
    # a server of TLS 1.3 only, of ChaCha20 only, or that ends the handshake with an alert
    # acme-tiny has no name for: the line says what the server said
    def line(why):
        return r"^acme-tiny: directory: GET https://localhost:\d+/dir: TLS: the server " + why + "$"
    for tls, why in (("1.3", r"does not answer in TLS 1\.2 \(TLS 1\.3 only\? plain HTTP\?\)"),
                     ("chacha", r"refused the handshake \(alert 40: none of our cipher suites, "
                                r"ECDHE with AES-GCM, or curves\? a client certificate wanted\?\)")):
        expect_failure(suite, "normal", line(why), tls=tls)
    # a fatal access_denied (49) record for the ClientHello
    with answering_once(bytes([0x15, 3, 3, 0, 2, 2, 49])) as fake:
        res = suite.run_client(fake)
        check_common(res, line("sent alert 49"))


# ---------------------------------------------------------------- revokeCert and keyChange (RFC 8555)

def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def der_of(pem_path):
    return subprocess.run(["openssl", "x509", "-in", pem_path, "-outform", "DER"],
                          capture_output=True, check=True).stdout


def public_jwk(key_path):
    """The P-256 key's public JWK, computed here with openssl."""
    text = subprocess.run(["openssl", "pkey", "-in", key_path, "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    hexes = re.search(r"pub:\s*\n((?:\s+[0-9a-f:]+\n)+)", text)[1]
    point = bytes.fromhex(re.sub(r"[^0-9a-f]", "", hexes))
    assert point[0] == 4 and len(point) == 65, point.hex()
    return {"crv": "P-256", "kty": "EC", "x": b64u(point[1:33]), "y": b64u(point[33:])}


def verify_es256(jws, jwk):
    """True if the flattened JWS (a dict) is signed by the P-256 key jwk, as
    the openssl CLI finds (no Python module that Debian 12 lacks)."""
    sig = b64u_decode(jws["signature"])
    assert len(sig) == 64, f"an ES256 signature of {len(sig)} bytes"

    def der_int(b):         # a DER INTEGER from unsigned big-endian bytes
        b = b.lstrip(b"\0") or b"\0"
        b = b"\0" + b if b[0] & 0x80 else b
        return bytes([2, len(b)]) + b
    rs = der_int(sig[:32]) + der_int(sig[32:])
    point = b"\4" + b64u_decode(jwk["x"]) + b64u_decode(jwk["y"])
    # SubjectPublicKeyInfo of an id-ecPublicKey on prime256v1: a fixed 26-byte head
    spki = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + point
    with tempfile.TemporaryDirectory() as d:
        for name, data in (("key", spki), ("sig", bytes([0x30, len(rs)]) + rs),
                           ("data", f"{jws['protected']}.{jws['payload']}".encode())):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        res = subprocess.run(["openssl", "dgst", "-sha256", "-keyform", "DER", "-verify",
                              os.path.join(d, "key"), "-signature", os.path.join(d, "sig"),
                              os.path.join(d, "data")], capture_output=True, text=True)
    assert res.stdout.strip() in ("Verified OK", "Verification failure"), res
    return res.stdout.strip() == "Verified OK"


def managed(suite, scenario, args):
    """A run for the account's life (--revoke, --new-account-key) that must
    succeed, silently (--quiet): what the CA got, by step, in order."""
    with EvilCA(scenario, suite.keys) as ca:
        res = suite.run_client(ca, args=args)
        assert not ca.stop(), "server threads still running after stop()"
    assert res.returncode == 0 and res.stdout == res.stderr == b"", \
        (res.returncode, res.stdout[:200], res.stderr[-1500:])
    assert res.after == res.before, "files touched in the run's directory"
    return ca, [(step, req) for step, req in ca.requests]


def revoke_ok(suite):
    """--revoke with the account key: the account found (onlyReturnExisting),
    then revokeCert signed with its kid: the certificate's DER, the reason only
    if given, as a JSON number; with --revoke-key: no account, signed with the
    certificate's own key as a jwk."""
    cert = b64u(der_of(suite.leaf))
    for extra, reason in (([], None), (["--reason", "4"], 4), (["--reason", "0"], 0)):
        ca, reqs = managed(suite, "normal", ["--revoke", suite.leaf, *extra])
        steps = [step for step, _ in reqs]
        assert steps == ["directory", "newNonce", "newAccount", "revokeCert"], steps
        assert json.loads(reqs[2][1].payload) == {"onlyReturnExisting": True}, reqs[2][1].payload
        prot, payload = reqs[3][1].protected, json.loads(reqs[3][1].payload)
        assert prot["kid"] == ca.base + "/acct/1" and "jwk" not in prot, prot
        assert prot["url"] == ca.base + "/revoke", prot
        want = {"certificate": cert, **({} if reason is None else {"reason": reason})}
        assert payload == want, (payload, want)
    ca, reqs = managed(suite, "normal", ["--revoke", suite.leaf, "--revoke-key", suite.domain_key,
                                         "--reason", "1"])
    steps = [step for step, _ in reqs]
    assert steps == ["directory", "newNonce", "revokeCert"], steps
    req = reqs[2][1]
    assert "kid" not in req.protected and req.protected["url"] == ca.base + "/revoke", req.protected
    assert req.protected["jwk"] == public_jwk(suite.domain_key), req.protected
    assert json.loads(req.payload) == {"certificate": cert, "reason": 1}, req.payload
    assert verify_es256(json.loads(req.body), req.protected["jwk"]), \
        "not signed by the certificate's key"


def key_change_ok(suite):
    """--new-account-key: the account found with the old key; keyChange
    signed with its kid, whose payload is a JWS signed by the new key, with
    its jwk, no nonce, the keyChange URL; {"account", "oldKey"} inside, oldKey
    the jwk the old key was found with."""
    ca, reqs = managed(suite, "normal", ["--new-account-key", suite.new_account_key])
    steps = [step for step, _ in reqs]
    assert steps == ["directory", "newNonce", "newAccount", "keyChange"], steps
    old_jwk = reqs[2][1].protected["jwk"]
    assert old_jwk == public_jwk(suite.account_key), old_jwk
    outer = reqs[3][1]
    assert outer.protected["kid"] == ca.base + "/acct/1" and "jwk" not in outer.protected
    assert outer.protected["url"] == ca.base + "/key-change", outer.protected
    inner = json.loads(outer.payload)
    assert set(inner) == {"protected", "payload", "signature"}, inner
    prot = json.loads(b64u_decode(inner["protected"]))
    new_jwk = public_jwk(suite.new_account_key)
    assert prot == {"alg": "ES256", "jwk": new_jwk, "url": ca.base + "/key-change"}, prot
    assert json.loads(b64u_decode(inner["payload"])) == {"account": ca.base + "/acct/1",
                                                          "oldKey": old_jwk}, inner["payload"]
    assert verify_es256(inner, new_jwk), "the inner JWS is not the new key's"
    assert not verify_es256(inner, old_jwk), "the inner JWS is the old key's"


MANAGE = {"revoke": ("revokeCert", "/revoke", lambda s: ["--revoke", s.leaf]),
          "key_change": ("keyChange", "/key-change",
                         lambda s: ["--new-account-key", s.new_account_key])}


def manage_case(name, kind):
    """scenario name_kind (evil_ca.py): the step's answer is an error, garbage
    or endless; the run fails at that step, sent once, with one line."""
    step, path, args = MANAGE[name]
    patterns = {
        "unauthorized": (rf"^acme-tiny: {step} failed: HTTP 403 urn:ietf:params:acme:error:"
                         r"unauthorized: evil CA: not yours to change$", {}),
        "not_json": (rf"^acme-tiny: {step} failed: HTTP 502 \(no problem document\)$", {}),
        "garbage_status": (post(step, path, "malformed or unexpected status line"), {}),
        "endless_chunked": (post(step, path, TOO_LARGE),
                            {"max_s": 5, "after": sent_less_than(64 << 20)}),
        "drip": (post(step, path, "timed out"), {"min_s": 4, "max_s": 15}),
    }
    pattern, kw = patterns[kind]

    def case(suite):
        checks = kw.get("after")

        def after(ca, res):
            assert ca.count(step) == 1, f"{step} sent {ca.count(step)} times: {ca.steps()}"
            if checks:
                checks(ca, res)
        expect_failure(suite, f"{name}_{kind}", pattern, args=args(suite),
                       **dict(kw, after=after))
    return case


def dir_without(scenario, step, name):
    """A directory without the step's URL: the run fails before it, with a
    line that names the step, and nothing is POSTed there."""
    def case(suite):
        # the whole line: without the check, the run goes on to the empty URL and fails
        # there ("revokeCert: POST : malformed URL"), naming the step and POSTing nothing
        expect_failure(suite, scenario, rf"^acme-tiny: directory: the CA has no {step}$",
                       args=MANAGE[name][2](suite), after=never("other", step))
    return case


# ---------------------------------------------------------------- renewal (RFC 9773)

def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


PAST = (iso(time.time() - 3 * 86400), iso(time.time() - 2 * 86400))
FUTURE = (iso(time.time() + 86400), iso(time.time() + 2 * 86400))


def cert_id(path):
    """The ARI certID of a certificate, computed here with openssl: base64url
    of the AKI keyIdentifier, ".", base64url of the serial's DER bytes."""
    def out(*args):
        return subprocess.run(["openssl", "x509", "-in", path, "-noout", *args],
                              capture_output=True, text=True, check=True).stdout
    aki = re.search(r"([0-9A-F]{2}(:[0-9A-F]{2})+)", out("-ext", "authorityKeyIdentifier"))[1]
    serial = int(out("-serial").split("=")[1], 16)
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    return (b64(bytes.fromhex(aki.replace(":", ""))) + "." +
            b64(serial.to_bytes((serial.bit_length() + 8) // 8, "big")))


def output_holds(suite, have):
    """A prepare(acme_dir) that puts keys/HAVE where --output out.pem names it."""
    def prepare(d):
        shutil.copy(os.path.join(suite.keys, have), os.path.join(d, "..", "..", "..", "out.pem"))
    return prepare


def renew(suite, scenario, have, *args, **opts):
    """Runs the client with --output out.pem holding the chain have (a file of
    keys/): what it said, the CA's steps, and what out.pem holds afterwards."""
    with EvilCA(scenario, suite.keys, **opts) as ca:
        res = suite.run_client(ca, prepare=output_holds(suite, have),
                               args=["--output", "out.pem", *args])
        assert not ca.stop(), "server threads still running after stop()"
    with open(os.path.join(res.case_dir, "out.pem")) as f:
        res.out = f.read()
    res.steps, res.ca = ca.steps(), ca
    assert res.stdout == b"" and res.stderr == b"", (res.stdout, res.stderr)
    return res


def issued(res):
    assert res.returncode == 0 and "newOrder" in res.steps and "cert" in res.steps, \
        (res.returncode, res.steps)


def not_due(res, have, *steps):
    # exit 1, the file as it was, and nothing asked of the CA but what steps says
    assert res.returncode == 1, (res.returncode, res.steps)
    with open(have) as f:
        assert res.out == f.read(), "the certificate file changed"
    assert res.steps == ["directory", *steps], res.steps


def ari_window(suite):
    leaf = os.path.join(suite.keys, "leaf.pem")
    # the window has passed: renewed, as the replacement of the old one
    res = renew(suite, "normal", "leaf.pem", window=PAST)
    issued(res)
    assert res.ca.cert_id == cert_id(leaf), (res.ca.cert_id, cert_id(leaf))
    assert json.loads(res.ca.order_payload).get("replaces") == cert_id(leaf), res.ca.order_payload
    # fractional seconds and offsets: the same past window, written otherwise
    res = renew(suite, "normal", "leaf.pem", window=(
        PAST[0].replace("Z", ".123456+02:00").replace("T", "t"), PAST[1].replace("Z", "-05:30")))
    issued(res)
    # the window is ahead: not due, nothing sent but the directory and the ARI GET
    not_due(renew(suite, "normal", "leaf.pem", window=FUTURE), leaf, "renewalInfo")
    # a window around now: the point in it is the same on every run
    around = (iso(time.time() - 86400), iso(time.time() + 86400))
    codes = {renew(suite, "normal", "leaf.pem", window=around).returncode for _ in range(3)}
    assert len(codes) == 1, codes


def ari_unusable(suite):
    # an answer that cannot be used (each would say "due" if misread): by the
    # lifetime, 2 days of 2 left is not due
    leaf = os.path.join(suite.keys, "leaf.pem")
    for scenario in ("ari_malformed", "ari_wrong_types", "ari_no_window", "ari_bad_date",
                     "ari_end_before_start", "ari_end_is_start", "ari_error", "ari_not_200",
                     "ari_garbage_status", "ari_endless"):
        not_due(renew(suite, scenario, "leaf.pem", window=PAST), leaf, "renewalInfo")
    # ...as is none within --timeout; nor can that stop a renewal the lifetime makes due
    not_due(renew(suite, "ari_drip", "leaf.pem", "--timeout", "2", window=PAST), leaf,
            "renewalInfo")
    issued(renew(suite, "ari_drip", "leaf-expiring.pem", "--timeout", "2", window=PAST))


def ari_point(suite):
    # the point in the window is fixed by the certificate: start + (end - start) * k / 65536,
    # k the first two bytes of the SHA-256 of its DER. In a window of 65536 hours it is k
    # hours after the start: due ten minutes after it, not due ten minutes before
    leaf = os.path.join(suite.keys, "leaf.pem")
    digest = hashlib.sha256(der_of(leaf)).digest()
    k = digest[0] << 8 | digest[1]
    for since, due in ((600, True), (-600, False)):
        start = int(time.time()) - since - 3600 * k
        res = renew(suite, "normal", "leaf.pem", window=(iso(start), iso(start + 65536 * 3600)))
        if due:
            issued(res)
        else:
            not_due(res, leaf, "renewalInfo")


def ari_and_lifetime(suite):
    keys, day = suite.keys, 86400
    # a window that ends after the certificate does would let it expire: the
    # lifetime rule instead (12 h of 60 left: due), still as a replacement
    res = renew(suite, "normal", "leaf-expiring.pem", window=FUTURE)
    issued(res)
    assert json.loads(res.ca.order_payload).get("replaces"), res.ca.order_payload
    # ...as would one whose point is the certificate's last second: a 65536-hour window put
    # k hours before its end (k as in ari_point)
    expiring = os.path.join(keys, "leaf-expiring.pem")
    digest = hashlib.sha256(der_of(expiring)).digest()
    end = subprocess.run(["openssl", "x509", "-in", expiring, "-noout", "-enddate"],
                         capture_output=True, text=True, check=True).stdout.split("=", 1)[1]
    start = calendar.timegm(time.strptime(end.strip(), "%b %d %H:%M:%S %Y GMT")) - \
        3600 * (digest[0] << 8 | digest[1])
    issued(renew(suite, "normal", "leaf-expiring.pem",
                 window=(iso(start), iso(start + 65536 * 3600))))
    # --days N: due with N days left whatever ARI says (15 days of 30 left; the
    # window 10 to 12 days ahead), and sooner when ARI says so (a past window)
    ahead = (iso(time.time() + 10 * day), iso(time.time() + 12 * day))
    half = os.path.join(keys, "leaf-half.pem")
    not_due(renew(suite, "normal", "leaf-half.pem", window=ahead), half, "renewalInfo")
    issued(renew(suite, "normal", "leaf-half.pem", "--days", "16", window=ahead))
    not_due(renew(suite, "normal", "leaf-half.pem", "--days", "14", window=ahead), half,
            "renewalInfo")
    issued(renew(suite, "normal", "leaf-half.pem", "--days", "14", window=PAST))


def ari_already_replaced(suite):
    # the CA refuses the replacement: newOrder once more, without "replaces"
    res = renew(suite, "ari_already_replaced", "leaf.pem", window=PAST)
    issued(res)
    assert res.steps.count("newOrder") == 2, res.steps
    assert "replaces" not in json.loads(res.ca.order_payload), res.ca.order_payload


def ari_already_replaced_always(suite):
    # refused as a replacement, then refused without "replaces" too: no third try
    def after(ca, res):
        assert ca.count("newOrder") == 2, ca.steps()
    expect_failure(suite, "ari_already_replaced_always",
                   r"^acme-tiny: newOrder failed: HTTP 409 urn:ietf:params:acme:error:"
                   r"alreadyReplaced: evil CA: replaced already$",
                   prepare=output_holds(suite, "leaf.pem"), args=["--output", "out.pem"],
                   after=after, window=PAST)


def ari_replaces_refused(suite):
    # a refusal in any words (any 4xx), or a CA that fails on the replacement (a 500, as
    # Pebble 2.6 for one serial in 256, the same a second later), is ordered again without
    # "replaces": else the certificate would expire, every daily run failing...
    for scenario in ("ari_replaces_unauthorized", "ari_replaces_server_error"):
        res = renew(suite, scenario, "leaf.pem", window=PAST)
        issued(res)
        assert res.steps.count("newOrder") == 2, (scenario, res.steps)
        assert "replaces" not in json.loads(res.ca.order_payload), res.ca.order_payload
    # ...but a rate limit is not: an order without "replaces" counts against it the more
    def after(ca, res):
        assert ca.count("newOrder") == 1, ca.steps()
    for scenario, status in (("ari_replaces_rate_limited", 429),
                             ("ari_replaces_rate_limited_403", 403)):
        expect_failure(suite, scenario,
                       rf"^acme-tiny: newOrder failed: HTTP {status} urn:ietf:params:acme:error:"
                       r"rateLimited: evil CA: too many certificates$",
                       prepare=output_holds(suite, "leaf.pem"), args=["--output", "out.pem"],
                       after=after, window=PAST)


def ari_replaces_kept(suite):
    # a rate limit by no name (429), or a busy CA (503), ends the run as it is: no order
    # without "replaces", which would count against the limit the more
    def after(ca, res):
        assert ca.count("newOrder") == 1, ca.steps()
    for scenario, why in (("ari_replaces_busy", r"HTTP 503 \(no problem document\)"),
                          ("ari_replaces_429_unnamed", r"HTTP 429 \(no problem document\)")):
        expect_failure(suite, scenario, rf"^acme-tiny: newOrder failed: {why}$",
                       prepare=output_holds(suite, "leaf.pem"), args=["--output", "out.pem"],
                       after=after, window=PAST)


def lifetime_rule(suite):
    keys = suite.keys
    # no renewalInfo: a third of the lifetime left (half under 10 days)
    not_due(renew(suite, "normal", "leaf.pem"), os.path.join(keys, "leaf.pem"))
    issued(renew(suite, "normal", "leaf-expiring.pem"))            # 12 h of 60 left
    not_due(renew(suite, "normal", "leaf-half.pem"), os.path.join(keys, "leaf-half.pem"))
    # --days N: due with N days left or less
    issued(renew(suite, "normal", "leaf-half.pem", "--days", "16"))
    not_due(renew(suite, "normal", "leaf-half.pem", "--days", "14"),
            os.path.join(keys, "leaf-half.pem"))
    # ... unless N is the whole lifetime or more: then the lifetime rule
    not_due(renew(suite, "normal", "leaf-half.pem", "--days", "30"),
            os.path.join(keys, "leaf-half.pem"))
    # expired, or a validity that ends before it begins (never due by the lifetime
    # rule): now, whatever ARI says
    issued(renew(suite, "normal", "leaf-expired.pem", window=FUTURE))
    issued(renew(suite, "normal", "leaf-reversed.pem"))
    issued(renew(suite, "normal", "leaf-reversed.pem", "--days", "10", window=FUTURE))
    issued(renew(suite, "normal", "leaf-reversed-soon.pem"))
    # one that begins next year: no server takes it till then
    issued(renew(suite, "normal", "leaf-future.pem", window=FUTURE))
    # --force: now; another name or key: now, and no ARI GET for it
    issued(renew(suite, "normal", "leaf.pem", "--force"))
    res = renew(suite, "normal", "otherhost.pem", window=FUTURE)
    issued(res)
    assert "renewalInfo" not in res.steps and res.ca.order_payload and \
        "replaces" not in json.loads(res.ca.order_payload), res.steps


def ari_no_aki(suite):
    # a certificate without an Authority Key Identifier has no ARI certID: though the CA
    # offers renewalInfo, none is asked for, and newOrder has no "replaces" (12 h of 60 left:
    # due by the lifetime)
    aki = subprocess.run(["openssl", "x509", "-in", os.path.join(suite.keys, "leaf-noaki.pem"),
                          "-noout", "-text"], capture_output=True, text=True, check=True).stdout
    assert "Authority Key Identifier" not in aki, "keys/leaf-noaki.pem has an AKI"
    res = renew(suite, "normal", "leaf-noaki.pem", window=PAST)
    issued(res)
    assert "renewalInfo" not in res.steps, res.steps
    assert "replaces" not in json.loads(res.ca.order_payload), res.ca.order_payload


def profile_sent(suite):
    # --profile NAME that the directory lists goes into newOrder; without it, no field
    for args, want in ((["--profile", "shortlived"], "shortlived"), ([], None)):
        with EvilCA("profiles", suite.keys) as ca:
            res = suite.run_client(ca, args=args)
            check_success(res, res.acme_dir)
            assert json.loads(ca.order_payload).get("profile") == want, ca.order_payload


def profile_not_offered(suite):
    # a profile the directory does not list fails before any account or order
    def after(ca, res):
        assert ca.count(method="POST") == 0, ca.steps()
    expect_failure(suite, "profiles", r"^acme-tiny: --profile tlsserver: the CA offers only "
                   r"classic, shortlived$", args=["--profile", "tlsserver"], after=after)
    expect_failure(suite, "normal", r"^acme-tiny: --profile shortlived: the CA offers no profiles$",
                   args=["--profile", "shortlived"], after=after)
    # profiles as a list, not the object of names the draft has: none offered
    expect_failure(suite, "profiles_list", r"^acme-tiny: --profile classic: the CA offers no "
                   r"profiles$", args=["--profile", "classic"], after=after)


def busy_once(scenario, step):
    # 503 (or 429, a rate limit on this endpoint) with Retry-After: 1 from step: the
    # client waits a second and asks again
    def case(suite):
        with EvilCA(scenario, suite.keys) as ca:
            res = suite.run_client(ca)
            check_success(res, res.acme_dir)
            assert ca.count(step) == 2, f"{ca.count(step)} {step} requests"
            assert res.elapsed >= 1, f"no wait: {res.elapsed:.2f} s"
    return case


def busy_fails(scenario, step, sends, retry="", **bounds):
    """503s from step to the end: the run fails with the last one, after a number
    of sends of step in sends, within bounds (min_s, max_s)."""
    def case(suite):
        def after(ca, res):
            assert ca.count(step) in sends, f"{ca.count(step)} {step} requests"
        expect_failure(suite, scenario, rf"^acme-tiny: {step} failed: HTTP 503 urn:ietf:params:"
                       rf"acme:error:serverInternal: evil CA: busy{retry}$", after=after, **bounds)
    return case


def busy_while_polling(suite):
    # a 503 whose Retry-After would take a poll past --max-wait fails as that 503, at once
    expect_failure(suite, "busy_while_polling",
                   r"^acme-tiny: order failed: HTTP 503 urn:ietf:params:acme:error:"
                   r"serverInternal: evil CA: busy; retry after 4$", min_s=2.5, max_s=4.5)


def problem_rate_limited(suite):
    # Retry-After beyond --max-wait: fails at once, saying when to come back
    expect_failure(suite, "problem_rate_limited",
                   r"^acme-tiny: newOrder failed: HTTP 429 urn:ietf:params:acme:error:rateLimited: "
                   r"evil CA: too many new orders recently; retry after 3600$", max_s=2)


def problem_unauthorized(suite):
    expect_failure(suite, "problem_unauthorized",
                   r"^acme-tiny: newAccount failed: HTTP 403 urn:ietf:params:acme:error:unauthorized: "
                   r"evil CA: this account key is refused$")


def problem_malformed(suite):
    expect_failure(suite, "problem_malformed",
                   r"^acme-tiny: finalize failed: HTTP 400 urn:ietf:params:acme:error:malformed: "
                   r"evil CA: the CSR is refused$")


def problem_control_chars(suite):
    # every control character (escaped in JSON: ESC, BEL, CR, LF, BS, C1 U+009B;
    # raw in JSON: DEL and U+009B; raw ESC and BS in the Retry-After header)
    # must come out as something inert (acme-tiny writes "?"); check_common
    # asserts no byte < 0x20 but the final newline, no 0x7f, no C2 80..9F
    c = ".{1,8}?"   # whatever stands for one control character
    res = expect_failure(
        suite, "problem_control_chars",
        rf"^acme-tiny: newAccount failed: HTTP 403 urn:ietf:params:acme:error:unauthorized{c}\[0m: "
        rf"red{c}\[31mRED {c}\]0;title{c} CR{c}LF{c}BS{c} C1esc{c}31m rawC1{c}31m rawDEL{c} end$")
    assert b"\x1b" not in res.stderr and b"\x9b" not in res.stderr


def problem_raw_c1_header(suite):
    # Retry-After of a 429 with raw 8-bit C1 bytes (0x9B CSI, 0x85 NEL) and ESC:
    # a header is not JSON, so nothing checked it on the way in; the client
    # keeps a Retry-After only if it is printable ASCII, so it is not echoed
    expect_failure(suite, "problem_raw_c1_header",
                   r"^acme-tiny: newOrder failed: HTTP 429 urn:ietf:params:acme:error:rateLimited: "
                   r"evil CA: slow down$")


def tls_other_host(suite):
    expect_failure(suite, "tls", get_dir("TLS: server certificate is for another host name"),
                   cert="otherhost")


def tls_expired(suite):
    expect_failure(suite, "tls", get_dir(r"TLS: server certificate expired or not yet valid "
                                         r"\(is the clock right\? it says \d{4}-\d\d-\d\d \d\d:\d\d UTC\)"),
                   cert="expired")


def tls_untrusted(suite):
    expect_failure(suite, "tls", get_dir("TLS: server certificate is not from a CA in --ca-file"),
                   cert="untrusted")


def signal_case(sig):
    def case(suite):
        sent = {}

        def tick(pid, case_dir, ca):
            if not sent and os.listdir(os.path.join(case_dir, ACME_DIR)):
                os.kill(pid, sig)
                sent["at"] = time.monotonic()
        # as from a terminal, even when the tests run as a background job, where a shell
        # starts them with SIGINT and SIGQUIT ignored (which acme-tiny keeps so: signals_ignored)
        old = signal.signal(sig, signal.SIG_DFL)
        try:
            res = expect_failure(suite, "signal_pending",
                                 r"^acme-tiny: interrupted; challenge file removed$",
                                 on_tick=tick)
        finally:
            signal.signal(sig, old)
        assert sent, "the challenge file never appeared"
        assert res.end - sent["at"] < 2, f"exited {res.end - sent['at']:.1f} s after the signal"
    return case


def signal_before_challenge(args=()):
    # SIGTERM while the directory drips in (no challenge file exists yet):
    # the message must not say that a challenge was removed or undone; with args
    # that make a key first, whose writing holds signals off until it is done
    def case(suite):
        sent = {}

        def tick(pid, case_dir, ca):
            if not sent and ca.count("directory"):
                os.kill(pid, signal.SIGTERM)
                sent["at"] = time.monotonic()
        with tempfile.TemporaryDirectory() as keys:     # KEYS: outside the watched files
            res = expect_failure(suite, "http_drip", r"^acme-tiny: interrupted$",
                                 on_tick=tick, args=[a.replace("KEYS", keys) for a in args])
        assert sent and res.end - sent["at"] < 2, "no prompt exit after the signal"
    return case


CASES = [
    ("evil_baseline_success", baseline),
    ("evil_token_dotdot", token_case("token_dotdot")),
    ("evil_token_existing_file", token_existing_file),
    ("evil_token_hardlink", token_hardlink),
    ("evil_token_fifo", token_fifo),
    ("evil_token_dotdot2", token_case("token_dotdot2")),
    ("evil_token_absolute", token_case("token_absolute")),
    ("evil_token_slash", token_case("token_slash")),
    ("evil_token_percent", token_case("token_percent")),
    ("evil_token_nul", token_nul),
    ("evil_token_empty", token_case("token_empty")),
    ("evil_token_5000", token_case("token_5000")),
    ("evil_token_256", token_case("token_256")),
    ("evil_token_255", token_255),
    ("evil_http_header_line_1m", http_header_line_1m),
    ("evil_http_headers_100000", http_headers_100000),
    ("evil_http_content_length_200m", http_content_length_200m),
    ("evil_http_close_delimited_200m", http_close_delimited_200m),
    ("evil_http_chunked_endless", http_chunked_endless),
    ("evil_http_chunk_size_overflow", http_chunk_size_overflow),
    ("evil_http_chunk_size_negative", http_chunk_size_negative),
    ("evil_http_short_body_close", http_short_body_close),
    ("evil_http_reset_mid_body", http_reset_mid_body),
    ("evil_http_drip", http_drip),
    ("evil_http_silent_new_order", http_silent_new_order),
    ("evil_http_garbage_status", http_garbage_status),
    ("evil_http_close_delimited_directory", http_close_delimited_directory),
    ("evil_http_close_after_each", http_close_after_each),
    ("evil_http_close_delimited_truncated", http_close_delimited_truncated),
    ("evil_json_nested_100000", json_case("json_nested_100000", "directory")),
    ("evil_json_nested_65000_balanced", json_case("json_nested_65000_balanced", "directory")),
    ("evil_json_invalid_utf8", json_case("json_invalid_utf8", "newOrder")),
    ("evil_json_lone_surrogate", json_case("json_lone_surrogate", "authorization")),
    ("evil_json_nul_in_string", json_case("json_nul_in_string", "directory")),
    ("evil_json_huge_number", json_huge_number),
    ("evil_json_duplicate_keys", json_duplicate_keys),
    ("evil_json_trailing_garbage", json_case("json_trailing_garbage", "order")),
    ("evil_json_not_json", json_case("json_not_json", "finalize")),
    ("evil_json_status_number", json_status_number),
    ("evil_json_authorizations_string", json_authorizations_string),
    ("evil_proto_no_nonce", proto_no_nonce),
    ("evil_proto_bad_nonce_forever", proto_bad_nonce_forever),
    ("evil_proto_account_no_location", proto_account_no_location),
    ("evil_proto_order_no_location", proto_order_no_location),
    ("evil_proto_pending_retry_0", proto_pending_retry_0),
    ("evil_busy_once_429", busy_once("busy_once_429", "newOrder")),
    # 503 without Retry-After: fails at once, the request sent once
    ("evil_busy_no_retry_after", busy_fails("busy_no_retry_after", "newOrder", [1], max_s=2)),
    ("evil_proto_account_http_location", proto_account_http_location),
    ("evil_proto_challenge_other_host", proto_challenge_other_host),
    ("evil_proto_identifier_type", proto_identifier_type),
    ("evil_proto_authz_twice", proto_authz_twice),
    ("evil_proto_authz_invalid", proto_authz_invalid),
    ("evil_proto_no_http01", proto_no_http01),
    ("evil_proto_new_nonce_500", proto_new_nonce_500),
    ("evil_proto_invalid_after_finalize", proto_invalid_after_finalize),
    ("evil_proto_order_no_authorizations", proto_order_no_authorizations),
    ("evil_proto_authz_not_string", proto_authz_not_string),
    ("evil_proto_authz_url_space", proto_authz_url_space),
    ("evil_proto_order_array", json_case("proto_order_array", "newOrder")),
    ("evil_proto_wildcard_false", succeeds("proto_wildcard_false")),
    ("evil_order_not_ready_always", order_not_ready_always),
    ("evil_problem_other_namespace", problem_other_namespace),
    ("evil_http_extra_response", http_extra_response),
    ("evil_http_cut_after_status", http_cut_after_status),
    ("evil_http_record_cut", http_record_cut),
    ("evil_http_request_dropped", http_request_dropped),
    ("evil_max_time_polling", max_time_polling),
    ("evil_max_time_busy", max_time_busy),
    ("evil_max_time_signals_blocked", max_time_signals_blocked),
    ("evil_signals_ignored", signals_ignored),
    ("evil_proto_pending_retry_999999", proto_pending_retry_999999),
    ("evil_proto_retry_date_ca_clock", proto_retry_date_ca_clock),
    ("evil_proto_processing_forever", proto_processing_forever),
    ("evil_poll_delay_cap", poll_delay_cap),
    ("evil_proto_retry_date_c1", proto_retry_date_c1),
    ("evil_proto_challenge_invalid", proto_challenge_invalid),
    ("evil_proto_order_status_unknown", proto_order_status_unknown),
    ("evil_proto_invalid_long_list", proto_invalid_long_list),
    ("evil_proto_cert_empty", proto_cert_empty),
    ("evil_proto_cert_html", proto_cert_html),
    ("evil_proto_cert_other_key", proto_cert_other_key),
    ("evil_proto_cert_not_ours", proto_cert_not_ours),
    ("evil_cert_by_the_cas_clock", cert_by_the_cas_clock),
    ("evil_due_by_the_cas_clock", due_by_the_cas_clock),
    ("evil_proto_cert_trailing_escape", proto_cert_trailing_escape),
    ("evil_proto_slow_polls", proto_slow_polls),
    ("evil_proto_redirect_new_order", proto_redirect_new_order),
    ("evil_proto_http_new_order", proto_http_new_order),
    ("evil_challenge_elsewhere", url_elsewhere("proto_challenge_elsewhere", "challenge")),
    ("evil_certificate_elsewhere", url_elsewhere("proto_certificate_elsewhere",
                                                 "certificate download")),
    ("evil_retrying_with_error", retrying_with_error),
    ("evil_order_not_ready_once", succeeds("order_not_ready_once", order_not_ready_once)),
    ("evil_order_ready", succeeds("order_ready", order_reused("authz", "challenge"))),
    ("evil_order_processing", succeeds("order_processing",
                                       order_reused("authz", "challenge", "finalize"))),
    ("evil_order_valid", succeeds("order_valid",
                                  order_reused("authz", "challenge", "finalize", "orderPoll"))),
    ("evil_order_invalid", order_invalid),
    ("evil_finalize_still_ready", finalize_still_ready),
    ("evil_authz_valid", succeeds("authz_valid", authz_valid)),
    ("evil_eab_account_exists", eab_single_use(exists=True)),
    ("evil_eab_account_new", eab_single_use(exists=False)),
    ("evil_eab_account_new_eab_first", eab_single_use(exists=False, none="externalAccountRequired")),
    ("evil_eab_required_with_eab", eab_required_with_eab),
    ("evil_challenge_valid", succeeds("challenge_valid", polled_once)),
    ("evil_order_valid_after_challenge", succeeds("order_valid_after_challenge",
                                                  valid_after_challenge)),
    ("evil_nonce_head_204", succeeds("nonce_head_204", nonce_head_204)),
    ("evil_user_action_required", user_action_required),
    ("evil_subproblems", subproblems),
    ("evil_subproblems_not_list", subproblems_not_list),
    ("evil_ca_by_ip", ca_by_ip),
    ("evil_ca_by_ipv6", ca_by_ipv6),
    ("evil_ca_by_ip_as_dns_name", ca_by_ip_as_dns_name),
    ("evil_tls_plain_port", tls_plain_port),
    ("evil_tls_nothing_in_common", tls_nothing_in_common),
    ("evil_ari_window", ari_window),
    ("evil_ari_unusable", ari_unusable),
    ("evil_ari_already_replaced", ari_already_replaced),
    ("evil_ari_already_replaced_always", ari_already_replaced_always),
    ("evil_ari_replaces_refused", ari_replaces_refused),
    ("evil_ari_replaces_kept", ari_replaces_kept),
    ("evil_ari_point", ari_point),
    ("evil_ari_and_lifetime", ari_and_lifetime),
    ("evil_lifetime_rule", lifetime_rule),
    ("evil_ari_no_aki", ari_no_aki),
    ("evil_profile_sent", profile_sent),
    ("evil_profile_not_offered", profile_not_offered),
    ("evil_busy_once", busy_once("busy_once", "newOrder")),
    ("evil_busy_once_directory", busy_once("busy_once_directory", "directory")),
    ("evil_busy_once_nonce", busy_once("busy_once_nonce", "newNonce")),
    # 503 with Retry-After: 1 each time: the waits stop at --max-wait (4 s)
    ("evil_busy_forever", busy_fails("busy_forever", "newOrder", range(4, 7),
                                     "; retry after 1", min_s=3.5, max_s=8)),
    # GETs are bounded as POSTs are: MAX_POST_TRIES (16) sends, then the failure
    ("evil_busy_forever_directory", busy_fails("busy_forever_directory", "directory", [16],
                                               "; retry after 0", max_s=8)),
    ("evil_busy_while_polling", busy_while_polling),
    ("evil_problem_rate_limited", problem_rate_limited),
    ("evil_problem_unauthorized", problem_unauthorized),
    ("evil_problem_malformed", problem_malformed),
    ("evil_problem_control_chars", problem_control_chars),
    ("evil_problem_raw_c1_header", problem_raw_c1_header),
    ("evil_tls_other_host", tls_other_host),
    ("evil_tls_expired", tls_expired),
    ("evil_tls_untrusted", tls_untrusted),
    ("evil_signal_term", signal_case(signal.SIGTERM)),
    ("evil_signal_int", signal_case(signal.SIGINT)),
    ("evil_signal_quit", signal_case(signal.SIGQUIT)),
    ("evil_signal_usr1", signal_case(signal.SIGUSR1)),
    # signals no list of names would think of: every one whose default ends the process
    ("evil_signal_pwr", signal_case(signal.SIGPWR)),
    ("evil_signal_vtalrm", signal_case(signal.SIGVTALRM)),
    ("evil_signal_rtmin_1", signal_case(signal.SIGRTMIN + 1)),
    ("evil_signal_term_before_challenge", signal_before_challenge()),
    ("evil_signal_term_after_new_key", signal_before_challenge(
        ["--account-key", "KEYS/new-account.key", "--create-account-key"])),
    ("evil_revoke_ok", revoke_ok),
    ("evil_key_change_ok", key_change_ok),
    *[(f"evil_{name}_{kind}", manage_case(name, kind)) for name in MANAGE
      for kind in ("unauthorized", "not_json", "garbage_status", "endless_chunked", "drip")],
    ("evil_dir_no_revoke", dir_without("dir_no_revoke", "revokeCert", "revoke")),
    ("evil_dir_no_key_change", dir_without("dir_no_key_change", "keyChange", "key_change")),
]


def run(binary, report, only=None):
    run_cases(CASES, report, only, "test_evil", lambda tmp: Suite(binary, tmp))
