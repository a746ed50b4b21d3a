"""Renewal against real Pebbles, on loopback: Debian 13's pebble (2.6.0, which
serves ARI, RFC 9773; tests/fetch-pebble-trixie.sh unpacks it), Debian 12's
(2.4.0, no ARI: the lifetime rule, with short certificates), and README's
cron example run under busybox sh."""
import os
import re
import subprocess
import tempfile
import time

from helpers import check_success, make_csr, make_key, openssl, picked, scratch_dir
from pebble_env import PEBBLE_ARI, Pebble

HERE = os.path.dirname(os.path.abspath(__file__))


def issue_to(binary, p, key, csr, out, *extra):
    argv = [binary, "--account-key", key, "--csr", csr, "--acme-dir", p.acme_dir,
            "--directory-url", p.directory, "--ca-file", p.ca_file, "--disable-check",
            "--output", out, "--stats", *extra]
    return subprocess.run(argv, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


def stats(res):
    m = re.search(rb"stats: (\d+) HTTP requests, (\d+) connections", res.stderr)
    assert m, res.stderr[-500:]
    return int(m[1]), int(m[2])


def new_orders(p):
    with open(p.log_path) as f:
        return len(re.findall(r"POST /order-plz -> calling handler", f.read()))


def read(path):
    with open(path, "rb") as f:
        return f.read()


class PebbleCannotFind(Exception):
    """A certificate whose serial Pebble 2.6 cannot look up by its ARI certID (see below)."""


def check_findable(path):
    """Pebble 2.6 indexes a certificate by the hex of its serial without DER's leading 0x00,
    but looks up an ARI certID's serial with it (RFC 9773 keeps it, and so does acme-tiny):
    a serial whose first byte has its high bit set (about 1 in 256 of Pebble's) is never
    found, and Pebble answers 500 to a "replaces" naming it. Raises PebbleCannotFind for
    such a certificate, which is told from the certificate alone, not from the run."""
    serial = openssl("x509", "-in", path, "-noout", "-serial").stdout.decode()
    serial = serial.strip().split("=", 1)[1]
    if len(serial) % 2 == 0 and int(serial[:2], 16) >= 0x80:
        raise PebbleCannotFind(serial)


def ari_daily(binary, tmp):
    """A daily job against Debian 13's Pebble: issued once, then not due (two
    requests, one connection, the file untouched, no order); once the
    certificate is revoked, ARI's window has passed and the job renews it; a
    forced renewal is accepted as the replacement of the old certificate, and
    replacing the same certificate twice (alreadyReplaced) is ordered again
    without it. A certificate that Pebble 2.6 could not find by its serial
    (check_findable) starts it all again with a new Pebble, three times at most."""
    for attempt in range(4):
        d = tempfile.mkdtemp(dir=tmp)
        try:
            return ari_daily_once(binary, d)
        except PebbleCannotFind as e:
            serial = e.args[0]
    raise AssertionError(f"four times a serial Pebble cannot find, the last {serial}")


def ari_daily_once(binary, tmp):
    with Pebble(binary=PEBBLE_ARI, config={"certificateValidityPeriod": 90 * 86400}) as p:
        key, csr = make_key(tmp, "p256", "ari"), make_csr(tmp, "ari", "ari.example.test")
        out = os.path.join(tmp, "ari.pem")
        res = issue_to(binary, p, key, csr, out)
        assert res.returncode == 0, res.stderr[-1500:]
        check_findable(out)     # its certID is asked about, and named in "replaces"
        first, orders = read(out), new_orders(p)
        res = issue_to(binary, p, key, csr, out)
        err = res.stderr.decode()
        assert res.returncode == 1 and res.stdout == b"", (res.returncode, err[-1500:])
        assert re.search(r"ari\.pem is good until \d{4}-\d\d-\d\d \d\d:\d\d UTC; it is due "
                         r"for renewal from \d{4}-\d\d-\d\d \d\d:\d\d UTC\n", err), err[-800:]
        assert stats(res) == (2, 1), stats(res)
        assert read(out) == first and new_orders(p) == orders
        # revoked: Pebble's window for it has passed, so the daily job renews it
        res = subprocess.run([binary, "--account-key", key, "--revoke", out, "--directory-url",
                              p.directory, "--ca-file", p.ca_file, "--quiet"], capture_output=True,
                             timeout=60)
        assert res.returncode == 0, res.stderr[-1000:]
        res = issue_to(binary, p, key, csr, out)
        assert res.returncode == 0 and read(out) != first, (res.returncode, res.stderr[-1500:])
        check_findable(out)     # named in "replaces" by the next two runs
        first = read(out)
        res = issue_to(binary, p, key, csr, out, "--force")
        assert res.returncode == 0 and b"refuses" not in res.stderr, res.stderr[-1500:]
        with open(p.log_path) as f:
            assert re.search(r'ARI: order "\S+" is a replacement of', f.read()), \
                "Pebble took no order for a replacement (was \"replaces\" sent?)"
        with open(out, "wb") as f:
            f.write(first)      # the first certificate again: replaced already
        res = issue_to(binary, p, key, csr, out, "--force")
        assert res.returncode == 0, res.stderr[-1500:]
        assert (b'The CA refuses this order (HTTP 409): ordering once more without "replaces"'
                in res.stderr), res.stderr[-1500:]


def lifetime_short(binary, tmp):
    """Debian 12's Pebble (no ARI), 20-second certificates: not due while more
    than half is left, due after (a shortlived profile's rule, sped up)."""
    with Pebble(config={"certificateValidityPeriod": 20}) as p:
        key, csr = make_key(tmp, "p256", "short"), make_csr(tmp, "short", "short.example.test")
        out = os.path.join(tmp, "short.pem")
        res = issue_to(binary, p, key, csr, out, "--quiet")
        issued = time.time()
        assert res.returncode == 0, res.stderr[-1500:]
        first = read(out)
        res = issue_to(binary, p, key, csr, out, "--quiet")
        assert res.returncode == 1 and read(out) == first, res.stderr
        assert res.stderr.count(b"\n") == 1 and stats(res) == (1, 1), res.stderr   # --stats alone
        time.sleep(max(0, issued + 12 - time.time()))
        res = issue_to(binary, p, key, csr, out, "--quiet")
        assert res.returncode == 0 and read(out) != first, (res.returncode, res.stderr)


def cron_example(binary, tmp):
    """README's cron job, run by busybox sh as crond would: the first run writes
    the certificate and reloads the web server; the second is not due: exit 1,
    the file byte for byte as it was, no order sent, no reload."""
    with open(os.path.join(HERE, "..", "README.md")) as f:
        script = re.search(r"```sh\n(#!/bin/sh\n# /etc/acme-tiny/renew\.sh.*?)```", f.read(), re.S)[1]
    d = tempfile.mkdtemp(dir=tmp)
    with Pebble() as p:
        make_key(d, "p256", "account")
        make_csr(d, "domain", "cron.example.test")      # domain.csr
        wrapper, events = os.path.join(d, "acme-tiny"), os.path.join(d, "events")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec {binary} --directory-url {p.directory} --ca-file '
                    f'{p.ca_file} --disable-check "$@"\n')
        os.chmod(wrapper, 0o755)
        for old, new in (("/usr/local/bin/acme-tiny", wrapper), ("/etc/acme-tiny", d),
                         ("/www/.well-known/acme-challenge", p.acme_dir),
                         ("/etc/init.d/uhttpd reload", f"echo reload >> {events}"),
                         ("logger -t acme-tiny", f"echo failed >> {events};")):
            assert old in script, f"README's cron example lost {old}"
            script = script.replace(old, new)
        with open(os.path.join(d, "renew.sh"), "w") as f:
            f.write(script)
        runs = []
        for _ in range(2):
            res = subprocess.run(["busybox", "sh", os.path.join(d, "renew.sh")],
                                 capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                                 env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            runs.append((res.returncode, read(os.path.join(d, "chain.pem")), new_orders(p)))
        assert runs[0][0] == 0 and runs[1][0] == 1, (runs[0][0], runs[1][0], res.stderr)
        assert runs[1][1] == runs[0][1] and runs[1][2] == runs[0][2], "the second run changed something"
        assert read(events) == b"reload\n", read(events)


TESTS = [(f"renewal_{f.__name__}", f) for f in (ari_daily, lifetime_short, cron_example)]


def run(binary, report, only=None):
    with scratch_dir("acme-tiny-renewal-") as tmp:
        for name, fn in TESTS:
            if picked(only, name, "test_renewal"):
                report.check(name, fn, binary, tmp)
