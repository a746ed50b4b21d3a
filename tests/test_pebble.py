"""Issuance against a real Pebble (Debian's pebble package), on loopback."""
import contextlib
import http.server
import os
import re
import resource
import shlex
import shutil
import subprocess
import tempfile
import threading
import zlib

from helpers import (check_failure, check_success, make_csr, make_key, openssl, picked,
                     scratch_dir, split_pem)
from pebble_env import Pebble


class Env:
    def __init__(self, binary, pebble, tmp):
        # binary may be a command, e.g. "qemu-mipsel-static ./acme-tiny-mipsel"
        self.bin, self.cmd, self.p, self.tmp = binary, shlex.split(binary), pebble, tmp

    def run(self, key, csr, *extra, acme_dir=None, check=False, quiet=False, timeout=120,
            **kw):
        argv = [*self.cmd, "--account-key", key, "--csr", csr,
                "--acme-dir", acme_dir or self.p.acme_dir,
                "--directory-url", self.p.directory, "--ca-file", self.p.ca_file, *extra]
        if not check:
            argv.append("--disable-check")
        if quiet:
            argv.append("--quiet")
        out = kw.pop("stdout", subprocess.PIPE)
        return subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, timeout=timeout,
                              stdin=subprocess.DEVNULL, **kw)

    def verify_chain(self, chain, names):
        """openssl verify against Pebble's root and intermediate, and the names."""
        certs = split_pem(chain)
        assert len(certs) >= 2, f"chain has {len(certs)} certificates"
        files = {}
        for name, text in (("leaf", certs[0]), ("root", self.p.management("/roots/0")),
                           ("inter", self.p.management("/intermediates/0"))):
            files[name] = os.path.join(self.tmp, name + ".pem")
            with open(files[name], "w") as f:
                f.write(text)
        r = subprocess.run(["openssl", "verify", "-CAfile", files["root"], "-untrusted",
                            files["inter"], files["leaf"]], capture_output=True, text=True)
        assert r.returncode == 0, f"openssl verify: {r.stdout}{r.stderr}"
        san = openssl("x509", "-in", files["leaf"], "-noout", "-ext", "subjectAltName").stdout.decode()
        for n in names:
            assert n in san, f"{n} not in the certificate's names: {san}"

    def issue(self, key_kind, names, *extra, check=False):
        key = make_key(self.tmp, key_kind)
        csr = make_csr(self.tmp, "csr-" + names[0], names[0], names)
        res = self.run(key, csr, *extra, check=check)
        chain = check_success(res, self.p.acme_dir)
        self.verify_chain(chain, names)
        return res


def run(binary, report, only=None):
    with scratch_dir("acme-tiny-test-") as tmp:
        # no nonce refused here, so that request counts are exact; the Pebbles
        # below refuse Pebble's default 5% and half of them: badNonce is retried
        with Pebble() as p:
            env = Env(binary, p, tmp)
            for name, fn in TESTS:
                if picked(only, name, "test_pebble"):
                    report.check(name, fn, env)
        if not only or "nonce" in only or only in "test_pebble":
            with Pebble(nonce_reject=None) as p:
                report.check("pebble_nonce_reject_default", nonce_reject_default,
                             Env(binary, p, tmp))
            with Pebble(nonce_reject=50) as p:
                report.check("pebble_nonce_reject_50", nonce_reject_50, Env(binary, p, tmp))
        if not only or "reuse" in only or only in "test_pebble":
            with Pebble(env={"PEBBLE_AUTHZREUSE": "100"}) as p:
                report.check("pebble_authz_reused", authz_reused, Env(binary, p, tmp))
                report.check("pebble_authz_reused_fd_limit", authz_reused_fd_limit,
                             Env(binary, p, tmp))


def run_valgrind(binary, report):
    """One issuance under valgrind: no memory errors, every heap block freed."""
    def issue_under_valgrind(env):
        vg = ["valgrind", "--error-exitcode=99", "--leak-check=full", "--show-leak-kinds=all",
              "--errors-for-leak-kinds=all", *shlex.split(binary)]
        key = make_key(env.tmp, "rsa2048")
        csr = make_csr(env.tmp, "valgrind", "valgrind.example.test")
        argv = vg + ["--account-key", key, "--csr", csr, "--acme-dir", env.p.acme_dir,
                     "--directory-url", env.p.directory, "--ca-file", env.p.ca_file,
                     "--disable-check"]
        res = subprocess.run(argv, capture_output=True, timeout=300)
        err = res.stderr.decode()
        assert res.returncode == 0, f"exit {res.returncode}: {err[-3000:]}"
        assert "ERROR SUMMARY: 0 errors" in err and "All heap blocks were freed" in err, err[-3000:]
        check_success(res, env.p.acme_dir)

    def hook_under_valgrind(env):
        """The same by --hook (tests/dns-hook.py's dns-01), a name and its wildcard."""
        from test_dns import HOOK, Env as DnsEnv
        dns = DnsEnv(binary, env.p, env.tmp)
        names = ["*.valgrind-dns.example.test", "valgrind-dns.example.test"]
        argv = dns.argv(names, "--hook", HOOK)
        vg = ["valgrind", "--error-exitcode=99", "--leak-check=full", "--show-leak-kinds=all",
              "--errors-for-leak-kinds=all", *shlex.split(binary)]
        res = subprocess.run(vg + argv[1:], capture_output=True, timeout=300, env=dns.env(),
                             stdin=subprocess.DEVNULL)
        err = res.stderr.decode()
        assert res.returncode == 0, f"exit {res.returncode}: {err[-3000:]}"
        assert "ERROR SUMMARY: 0 errors" in err and "All heap blocks were freed" in err, err[-3000:]
        assert [c[0] for c in dns.calls() if c[1] == "dns-01"] == ["begin"] * 2 + ["done"] * 2

    def persist_under_valgrind(tmp):
        """--print-dns-persist, then --dns-persist with its records (tests/persist_ca.py)."""
        from persist_ca import DRAFT02, PersistCA
        from test_dns_persist import Suite, issue, ok_print, paste
        log = os.path.join(tmp, "valgrind-persist.log")
        wrapper = os.path.join(tmp, "valgrind-acme-tiny")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec valgrind --log-file={log} --error-exitcode=99 '
                    f'--leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all '
                    f'{binary} "$@"\n')
        os.chmod(wrapper, 0o755)
        suite = Suite(wrapper, tempfile.mkdtemp(dir=tmp))

        def check_log(what):
            text = open(log).read()
            assert "ERROR SUMMARY: 0 errors" in text and "All heap blocks were freed" in text, \
                f"{what}: {text[-3000:]}"

        with PersistCA(suite.keys, mode=DRAFT02) as ca:
            paste(ca, ok_print(suite.run(ca, "--print-dns-persist")))
            check_log("--print-dns-persist")
            issue(suite, ca, suite.csr_both)
            check_log("--dns-persist")
            ca.stop()

    with scratch_dir("acme-tiny-test-") as tmp:
        with Pebble() as p:
            report.check("valgrind_issuance", issue_under_valgrind, Env(binary, p, tmp))
            report.check("valgrind_hook", hook_under_valgrind, Env(binary, p, tmp))
        report.check("valgrind_dns_persist", persist_under_valgrind, tmp)


def run_cross(name, command, report):
    """A build for another architecture, run under qemu-user: issuance with a
    CSR and an RSA account key, and with keys and CSR made by the binary."""
    def cross_issuance(env):
        env.issue("rsa2048", [f"{name}.cross.example.test", "127.0.0.1"])
        from_nothing(env)

    with scratch_dir("acme-tiny-test-") as tmp, Pebble() as p:
        report.check(f"{name}_issuance", cross_issuance, Env(command, p, tmp))


def issue_rsa2048(env):
    env.issue("rsa2048", ["rsa2048.example.test"])


def issue_rsa4096(env):
    env.issue("rsa4096", ["rsa4096.example.test"])


def issue_p256(env):
    env.issue("p256", ["p256.example.test"])


def issue_p384(env):
    env.issue("p384", ["p384.example.test"])


def three_names_one_ip(env):
    res = env.issue("p256", ["three.example.test", "www.three.example.test", "127.0.0.1"])
    err = res.stderr.decode()
    assert "Found domains: three.example.test, www.three.example.test, 127.0.0.1" in err, err


def der_csr(env):
    key = make_key(env.tmp, "p256")
    csr = make_csr(env.tmp, "der", "der.example.test", der=True)
    check_success(env.run(key, csr), env.p.acme_dir)


def existing_account(env):
    env.issue("rsa2048", ["first.example.test"])       # makes sure the account exists
    res = env.issue("rsa2048", ["again.example.test"])
    # the account's URL, as acme_tiny.py prints it: for CAA's accounturi
    assert re.search(r"^Already registered! Account ID: https://\S+$",
                     res.stderr.decode(), re.M), res.stderr.decode()


def existing_account_new_contact(env):
    env.issue("p384", ["first-contact.example.test"])
    res = env.issue("p384", ["contact.example.test"], "--contact", "mailto:a@example.test",
                    "mailto:b@example.test")
    err = res.stderr.decode()
    assert "Already registered!" in err and "Updated contact details" in err, err
    # --contact=URI is one URI, as acme_tiny.py's argparse takes it
    res = env.issue("p384", ["contact-eq.example.test"], "--contact=mailto:c@example.test")
    assert "Updated contact details" in res.stderr.decode(), res.stderr.decode()


def contact_with_quote(env):
    # the JSON we send stays JSON: Pebble answers invalidContact, not malformed
    key = make_key(env.tmp, "p256", "quote-contact")
    csr = make_csr(env.tmp, "quote", "quote.example.test")
    for contact in (["--contact", 'mailto:a"b\\c@example.test'],
                    ['--contact=mailto:a"b\\c@example.test']):
        res = env.run(key, csr, *contact, quiet=True)
        check_failure(res, env.p.acme_dir, r"^acme-tiny: newAccount failed: HTTP 400 "
                      r"urn:ietf:params:acme:error:invalidContact: .+")


def self_check_passes(env):
    # an IP identifier needs no DNS, so the self-check reaches the webroot server
    env.issue("p256", ["127.0.0.1"], "--check-port", str(env.p.http_port), check=True)


def self_check_ipv6(env):
    # the self-check of an IPv6 identifier fetches http://[::1]:PORT/..., brackets and all;
    # ::1 as openssl prints it, so that verify_chain finds it in the certificate
    env.issue("p256", ["0:0:0:0:0:0:0:1"], "--check-port", str(env.p.http_port), check=True)


def self_check_fails(env):
    unserved = tempfile.mkdtemp(dir=env.tmp)
    # a new account: Pebble may reuse another account's valid authorization
    key = make_key(env.tmp, "p256", "self-check-fails")
    csr = make_csr(env.tmp, "ip", "127.0.0.1")
    res = env.run(key, csr, "--check-port", str(env.p.http_port), acme_dir=unserved,
                  check=True, quiet=True)
    check_failure(res, unserved, r"^acme-tiny: Wrote file to .*, but couldn't download "
                  r"http://127\.0\.0\.1:\d+/\.well-known/acme-challenge/[A-Za-z0-9_-]+: HTTP 404")


@contextlib.contextmanager
def web_server(do_get):
    """A web server of the test's on a loopback port, answering each GET by do_get(handler);
    yields the port, and stops when the block ends."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            do_get(self)

        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield str(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def self_check_redirect(env):
    # a web server that redirects the challenge (to https, say): the CA follows it, the
    # check does not, and says so
    def redirect(h):
        h.send_response(301)
        h.send_header("Location", "https://127.0.0.1" + h.path)
        h.send_header("Content-Length", "0")
        h.end_headers()
    with web_server(redirect) as port:
        key = make_key(env.tmp, "p256", "self-check-redirect")
        csr = make_csr(env.tmp, "ip", "127.0.0.1")
        res = env.run(key, csr, "--check-port", port, check=True, quiet=True)
    check_failure(res, env.p.acme_dir, r"^acme-tiny: Wrote file to .*, but couldn't download "
                  r"http://127\.0\.0\.1:\d+/\.well-known/acme-challenge/[A-Za-z0-9_-]+: HTTP 301 "
                  r"\(a redirect: the CA follows it, this check does not; --disable-check\)$")


def self_check_content(env):
    # the check takes the key authorization with a line break after it (a web server may add
    # one), but not under a status other than 200, nor only a prefix of it, nor it and more
    # text. A new account each: no authorization reused
    serve = {"status": 200, "after": b"\r\n", "cut": 0}

    def answer(h):
        with open(os.path.join(env.p.acme_dir, os.path.basename(h.path)), "rb") as f:
            body = f.read()
        body = body[:len(body) - serve["cut"]] + serve["after"]
        h.send_response(serve["status"])
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    with web_server(answer) as port:
        csr = make_csr(env.tmp, "ip", "127.0.0.1")
        res = env.run(make_key(env.tmp, "p256", "self-check-line-break"), csr, "--check-port",
                      port, check=True, quiet=True)
        check_success(res, env.p.acme_dir)
        serve.update(status=404, after=b"")
        res = env.run(make_key(env.tmp, "p256", "self-check-404"), csr, "--check-port", port,
                      check=True, quiet=True)
        check_failure(res, env.p.acme_dir, r"^acme-tiny: Wrote file to .*, but couldn't download "
                      r"http://127\.0\.0\.1:\d+/\.well-known/acme-challenge/[A-Za-z0-9_-]+: "
                      r"HTTP 404$")
        for name, cut, after in (("prefix", 1, b""), ("more", 0, b"\nmore text\n")):
            serve.update(status=200, cut=cut, after=after)
            res = env.run(make_key(env.tmp, "p256", "self-check-" + name), csr, "--check-port",
                          port, check=True, quiet=True)
            check_failure(res, env.p.acme_dir, r"^acme-tiny: Wrote file to .*, but couldn't "
                          r"download http://127\.0\.0\.1:\d+/\.well-known/acme-challenge/"
                          r"[A-Za-z0-9_-]+: HTTP 200 with other content$")


def validation_fails(env):
    unserved = tempfile.mkdtemp(dir=env.tmp)
    key = make_key(env.tmp, "p256")
    csr = make_csr(env.tmp, "unserved", "unserved.example.test")
    res = env.run(key, csr, acme_dir=unserved, quiet=True)
    check_failure(res, unserved, r"unserved\.example\.test: challenge did not pass \(invalid\): "
                  r"urn:ietf:params:acme:error:unauthorized: .+")


def untrusted_server(env):
    other = os.path.join(env.tmp, "other-ca.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", os.path.join(env.tmp, "other-ca.key"), "-out", other, "-days", "1",
            "-subj", "/CN=other CA")
    key = make_key(env.tmp, "p256")
    csr = make_csr(env.tmp, "x", "x.example.test")
    argv = [*env.cmd, "--account-key", key, "--csr", csr, "--acme-dir", env.p.acme_dir,
            "--directory-url", env.p.directory, "--ca-file", other, "--quiet"]
    res = subprocess.run(argv, capture_output=True, timeout=60)
    check_failure(res, env.p.acme_dir, r"directory: GET .*: TLS: server certificate is not from a CA in --ca-file")


def bad_account_key(env):
    csr = make_csr(env.tmp, "y", "y.example.test")
    res = env.run(csr, csr, quiet=True)
    check_failure(res, env.p.acme_dir,
                  r"^acme-tiny: account key .*: found CERTIFICATE REQUEST, expected PRIVATE KEY$")


def usage_errors(env):
    # each with its own line: exit 2 alone would also be the missing key file "k" of a run
    # that went on past a check that is gone
    needs = ("needs --account-key, --acme-dir (or --hook, or --dns-persist), and either --csr "
             "or --domains with --domain-key")
    for argv, line in (([], needs), (["--csr"], "missing value for --csr"),
                       (["--bogus"], "unknown argument --bogus"),
                       (["--account-key", "k", "--csr", "c"], needs),
                       (["--account-key", "k", "--csr", "c", "--acme-dir", "d", "--timeout", "0"],
                        "--timeout takes a number from 1 to 999999, not 0"),
                       (["--account-key", "k", "--csr", "c", "--acme-dir", ""],
                        "empty value for --acme-dir"),
                       (["--account-key", "k", "--csr", "c", "--acme-dir=", "--output", "x"],
                        "empty value for --acme-dir")):
        res = subprocess.run([*env.cmd, *argv], capture_output=True, timeout=10)
        assert res.returncode == 2 and res.stdout == b"", f"{argv}: exit {res.returncode}"
        assert res.stderr.decode() == f"acme-tiny: {line} (try 'acme-tiny --help')\n", \
            (argv, res.stderr)
    res = subprocess.run([*env.cmd, "--account-key", "k", "--csr", "c", "--acme-dir", "d",
                          "--contact="], capture_output=True, timeout=10)
    assert res.returncode == 2 and res.stderr == (b"acme-tiny: empty value for --contact "
                                                  b"(try 'acme-tiny --help')\n"), res.stderr
    for flag in ("--help", "-h"):
        res = subprocess.run([*env.cmd, flag], capture_output=True, timeout=10)
        assert res.returncode == 0 and b"--account-key" in res.stdout, flag
    # each bound at its edge: inside it, the run goes on (and fails later, on
    # the missing key); one past it, a usage error (exit 2 either way)
    base = ["--account-key", "/nonexistent/k", "--csr", "c", "--acme-dir", "d", "--output", "o"]
    for extra, usage in ((["--timeout", "999999"], 0), (["--timeout", "1000000"], 1),
                         (["--max-time", "999999"], 0), (["--max-time", "0"], 1),
                         (["--check-port", "65535"], 0), (["--check-port", "65536"], 1),
                         (["--days", "3650"], 0), (["--days", "3651"], 1), (["--days", "0"], 1),
                         (["--quiet"], 0), (["--quiet=yes"], 1), (["--disable-check=1"], 1),
                         (["--force"], 0), (["--force=1"], 1)):
        res = subprocess.run([*env.cmd, *base, *extra], capture_output=True, timeout=10)
        said = res.stderr.decode()
        assert res.returncode == 2 and res.stdout == b"", f"{extra}: exit {res.returncode}: {said}"
        assert said.endswith(" (try 'acme-tiny --help')\n") == bool(usage), f"{extra}: {said!r}"
        assert usage or "account key /nonexistent/k: no such file" in said, f"{extra}: {said!r}"
    # --days and --force look at --output's certificate: without it every run would issue
    for extra, line in ((["--days", "30"], "--days and --force go with --output"),
                        (["--force"], "--days and --force go with --output"),
                        (["--output", "o", "--force", "--deactivate-account"],
                         "--days and --force go with --output"),
                        (["--revoke-key", "k"], "--revoke-key goes with --revoke"),
                        # a flag for a value: the chain went to a file named --quiet
                        (["--output", "--quiet"], "missing value for --output"),
                        # no URI: an unset $EMAIL in a cron line, silently no contact
                        (["--contact", "mailto:a@b.test", "--contact", "--quiet"],
                         "missing value for --contact"), (["--contact"], "missing value for")):
        res = subprocess.run([*env.cmd, *base[:6], *extra], capture_output=True, timeout=10)
        assert res.returncode == 2 and res.stderr.decode().startswith("acme-tiny: " + line), \
            (extra, res.stderr)
    # every name by dns-persist-01: --acme-dir's files, or the hook, were never used
    for extra in (["--acme-dir", "d"], ["--hook", "h"]):
        res = subprocess.run([*env.cmd, *base[:4], *extra, "--dns-persist"], capture_output=True,
                             timeout=10)
        assert res.returncode == 2 and res.stderr.decode().startswith(
            "acme-tiny: --dns-persist answers every challenge"), (extra, res.stderr)
    # --revoke, --new-account-key, --deactivate-account do that alone: with a flag for getting
    # a certificate, they did it and exited 0 with nothing on stdout, the flag silently unused
    for extra in (["--csr", "c", "--acme-dir", "d", "--revoke", "x"], ["--revoke", "x", "--output",
                  "o"], ["--domains", "a.test", "--domain-key", "k", "--deactivate-account"],
                  ["--new-account-key", "n", "--contact", "mailto:a@b.test"],
                  ["--revoke", "x", "--dns-persist"], ["--deactivate-account", "--hook", "h"],
                  ["--revoke", "x", "--profile", "p"], ["--deactivate-account", "--acme-dir", "d"],
                  ["--new-account-key", "n", "--eab-kid",
                  "k", "--eab-hmac-key", "AAAA"], ["--revoke", "x", "--domain-key", "k"]):
        act = next(a for a in extra if a in ("--revoke", "--new-account-key",
                                             "--deactivate-account"))
        res = subprocess.run([*env.cmd, "--account-key", "/nonexistent/k", *extra],
                             capture_output=True, timeout=10)
        assert res.returncode == 2 and res.stdout == b"" and res.stderr.decode().startswith(
            f"acme-tiny: {act} does that alone, not with --csr, --domains"), (extra, res.stderr)
    # --create-account-key makes the --account-key file: none with --revoke-key alone (NULL)
    res = subprocess.run([*env.cmd, "--revoke", "c", "--revoke-key", "k", "--create-account-key"],
                         capture_output=True, timeout=10)
    assert res.returncode == 2 and res.stderr == (b"acme-tiny: --create-account-key goes with "
                                                  b"--account-key (try 'acme-tiny --help')\n"), \
        res.stderr


def output_file(env):
    # --output: the chain goes to the file, nothing to stdout (which may be
    # closed); the old file is replaced whole and keeps its mode (and owner,
    # where we may); a symlink stays a symlink; a failed run leaves the file as
    # it was; no temporary file stays beside it; an unusable --output fails
    # before the CA is asked for anything
    d = tempfile.mkdtemp(dir=env.tmp)
    out = os.path.join(d, "chain.pem")
    with open(out, "w") as f:
        f.write("old\n")
    os.chmod(out, 0o640)
    if os.geteuid() == 0:
        os.chown(out, 65534, 65534)
    os.symlink("chain.pem", os.path.join(d, "link.pem"))
    key = make_key(env.tmp, "p256", "output")
    csr = make_csr(env.tmp, "output", "output.example.test")
    argv = [*env.cmd, "--account-key", key, "--csr", csr, "--acme-dir", env.p.acme_dir,
            "--directory-url", env.p.directory, "--ca-file", env.p.ca_file, "--disable-check",
            "--quiet", "--output", os.path.join(d, "link.pem")]
    res = subprocess.run(argv, capture_output=True, timeout=120, preexec_fn=lambda: os.close(1))
    assert res.returncode == 0 and res.stderr == b"", res.stderr
    with open(out) as f:
        chain = f.read()
    env.verify_chain(chain, ["output.example.test"])
    st = os.stat(out)
    assert st.st_mode & 0o777 == 0o640, oct(st.st_mode)
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (65534, 65534), (st.st_uid, st.st_gid)
    assert os.readlink(os.path.join(d, "link.pem")) == "chain.pem"
    assert sorted(os.listdir(d)) == ["chain.pem", "link.pem"], os.listdir(d)

    unserved = tempfile.mkdtemp(dir=env.tmp)
    res = env.run(key, make_csr(env.tmp, "output-fail", "output-fail.example.test"),
                  "--output", out, acme_dir=unserved, quiet=True)
    check_failure(res, unserved, r"output-fail\.example\.test: challenge did not pass")
    with open(out) as f:
        assert f.read() == chain, "a failed run changed the --output file"
    assert sorted(os.listdir(d)) == ["chain.pem", "link.pem"], os.listdir(d)

    for where, pattern in ((os.path.join(d, "no-such-dir", "chain.pem"),
                            r"cannot create .*/no-such-dir/chain\.pem: no such directory"),
                           (d, r"--output .*: not a regular file"),
                           (os.path.join(d, "new-dir") + "/", r"--output .*/new-dir/: not a regular file"),
                           (key, r"--output .*output\.key: that is .*output\.key, which this run reads"),
                           (env.p.ca_file, r"--output .*ca\.pem: that is .*ca\.pem, which this run reads")):
        # a CA that cannot be reached: only a check made first can fail this way
        res = env.run(key, csr, "--output", where, "--directory-url", "https://127.0.0.1:9/dir",
                      quiet=True)
        check_failure(res, env.p.acme_dir, "^acme-tiny: " + pattern + "$")
    assert open(key).read().startswith("-----BEGIN"), "the account key was overwritten"
    output_not_replaceable(env, key, csr, d)
    # nor --domains' domain key
    domain_key = make_key(env.tmp, "p256", "output-domain")
    before = open(domain_key).read()
    res = subprocess.run([*env.cmd, "--account-key", key, "--domains", "x.example.test",
                          "--domain-key", domain_key, "--acme-dir", env.p.acme_dir,
                          "--directory-url", "https://127.0.0.1:9/dir", "--ca-file", env.p.ca_file,
                          "--quiet", "--output", domain_key], capture_output=True, timeout=60)
    check_failure(res, env.p.acme_dir, r"^acme-tiny: --output .*: that is .*, which this run reads$")
    assert open(domain_key).read() == before, "the domain key was overwritten"
    with open(env.p.ca_file) as f:
        assert f.read().startswith("-----BEGIN CERTIFICATE"), "the CA file was overwritten"
    res = subprocess.run(argv[:-2], capture_output=True, timeout=60, preexec_fn=lambda: os.close(1))
    check_failure(res, None, r"^acme-tiny: stdout is closed: nowhere to write the certificate$")


def output_not_replaceable(env, key, csr, d):
    """What a rename could not replace, or a disk could not hold, is found before the CA is
    asked (here it cannot be reached): a certificate issued and then lost costs a rate limit."""
    unreachable = ("--directory-url", "https://127.0.0.1:9/dir")
    went_on = r"^acme-tiny: directory: GET https://127\.0\.0\.1:9/dir: Connection refused$"
    os.symlink("gone.pem", os.path.join(d, "dangling.pem"))
    res = env.run(key, csr, "--output", os.path.join(d, "dangling.pem"), *unreachable, quiet=True)
    check_failure(res, env.p.acme_dir, r"^acme-tiny: --output .*/dangling\.pem is a symlink that "
                  r"leads to no file: name the file itself$")
    assert os.readlink(os.path.join(d, "dangling.pem")) == "gone.pem"
    os.unlink(os.path.join(d, "dangling.pem"))
    # room for the old file and 16 kB more: 8 kB of file size limit is too little
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
    res = env.run(key, csr, "--output", os.path.join(d, "chain.pem"), *unreachable, quiet=True,
                  preexec_fn=limit)
    check_failure(res, env.p.acme_dir, r"^acme-tiny: --output .*/chain\.pem cannot be replaced: "
                  r"File too large$")
    assert sorted(os.listdir(d)) == ["chain.pem", "link.pem"], os.listdir(d)
    # the old file's size counts: 16 kB of it and 16 kB more do not fit under 24 kB
    big = os.path.join(d, "big.pem")
    with open(big, "w") as f:
        f.write("x" * 16383 + "\n")
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (24576, 24576))
    res = env.run(key, csr, "--output", big, *unreachable, quiet=True, preexec_fn=limit)
    check_failure(res, env.p.acme_dir, r"^acme-tiny: --output .*/big\.pem cannot be replaced: "
                  r"File too large$")
    os.unlink(big)
    if os.geteuid() != 0:       # mount and another user are root's
        return
    # a file mounted on --output (as into a container), from another file system or from
    # this one: no rename replaces it. A file of an overlay's lower layer (OpenWrt's root:
    # squashfs under jffs2, each layer with its own st_dev) is no mount point.
    fs, mounted = os.path.join(d, "fs"), os.path.join(d, "mounted.pem")
    os.mkdir(fs)
    open(mounted, "w").close()
    prefix = os.path.join(d, "mounted")         # a file whose path begins the mount point's
    open(prefix, "w").close()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", fs]).returncode:
        return                  # root without CAP_SYS_ADMIN, in a container: nothing to see
    try:
        open(os.path.join(fs, "chain.pem"), "w").close()
        for source in (os.path.join(fs, "chain.pem"), os.path.join(d, "chain.pem")):
            subprocess.run(["mount", "--bind", source, mounted], check=True)
            try:
                res = env.run(key, csr, "--output", mounted, *unreachable, quiet=True)
                beside = env.run(key, csr, "--output", prefix, *unreachable, quiet=True)
            finally:
                subprocess.run(["umount", mounted], check=True)
            check_failure(res, env.p.acme_dir, r"^acme-tiny: --output .*/mounted\.pem cannot "
                          r"be replaced: it is a mount point \(a bind-mounted file\?\)$")
            check_failure(beside, env.p.acme_dir, went_on)
        # mountinfo writes a space, tab, line break or backslash of a path as \ooo
        odd = os.path.join(d, "mount ed\\.pem")
        open(odd, "w").close()
        subprocess.run(["mount", "--bind", os.path.join(d, "chain.pem"), odd], check=True)
        try:
            res = env.run(key, csr, "--output", odd, *unreachable, quiet=True)
        finally:
            subprocess.run(["umount", odd], check=True)
        os.unlink(odd)
        check_failure(res, env.p.acme_dir, r"^acme-tiny: --output .*/mount ed\\\.pem cannot "
                      r"be replaced: it is a mount point \(a bind-mounted file\?\)$")
        for layer in ("lower", "upper", "merged"):
            os.mkdir(os.path.join(fs, layer))
        shutil.copy(os.path.join(d, "chain.pem"), os.path.join(fs, "lower"))
        upper = os.path.join(d, "upper")         # another file system than the lower layer
        os.makedirs(os.path.join(upper, "u"))
        os.makedirs(os.path.join(upper, "w"))
        merged = os.path.join(fs, "merged")
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={fs}/lower,upperdir={upper}/u,workdir={upper}/w", merged],
                       check=True)
        try:
            res = env.run(key, csr, "--output", os.path.join(merged, "chain.pem"), *unreachable,
                          quiet=True)
        finally:
            subprocess.run(["umount", merged], check=True)
        check_failure(res, env.p.acme_dir, r"^acme-tiny: directory: GET https://127\.0\.0\.1:9/"
                      r"dir: Connection refused$")
        shutil.rmtree(upper)
    finally:
        subprocess.run(["umount", fs], check=True)
    os.unlink(mounted)
    os.unlink(prefix)
    os.rmdir(fs)
    # another user's file in a sticky directory: only its owner (or the directory's) renames it
    sticky = tempfile.mkdtemp()
    try:
        os.chmod(sticky, 0o1777)
        for src in (key, csr, env.p.ca_file):
            os.chmod(shutil.copy(src, sticky), 0o644)
        out = os.path.join(sticky, "chain.pem")
        open(out, "w").close()
        os.chmod(out, 0o666)
        argv = [*env.cmd, "--account-key", os.path.join(sticky, os.path.basename(key)),
                "--csr", os.path.join(sticky, os.path.basename(csr)), "--acme-dir", sticky,
                "--ca-file", os.path.join(sticky, os.path.basename(env.p.ca_file)),
                "--output", out, *unreachable, "--quiet"]
        res = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                             preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
        check_failure(res, None, r"^acme-tiny: --output .*/chain\.pem cannot be replaced: "
                      r"another user's file in a sticky directory$")
        assert sorted(os.listdir(sticky)) == sorted(["chain.pem", os.path.basename(key),
                                                     os.path.basename(csr),
                                                     os.path.basename(env.p.ca_file)])
        # but its own file there, or another user's in its own sticky directory, it may
        for file_uid, dir_uid in ((65534, 0), (0, 65534)):
            os.chown(out, file_uid, file_uid)
            os.chown(sticky, dir_uid, dir_uid)
            os.chmod(sticky, 0o1777)
            res = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                                 preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
            check_failure(res, None, went_on)
    finally:
        shutil.rmtree(sticky)


def ssl_cert_file(env):
    """Without --ca-file, $SSL_CERT_FILE names the CA file, as for OpenSSL and acme_tiny.py;
    --ca-file comes first."""
    key = make_key(env.tmp, "p256", "ssl-cert-file")
    csr = make_csr(env.tmp, "ssl-cert-file", "ssl-cert-file.example.test")
    argv = [*env.cmd, "--account-key", key, "--csr", csr, "--acme-dir", env.p.acme_dir,
            "--directory-url", env.p.directory, "--disable-check", "--quiet"]
    mixed = os.path.join(env.tmp, "mixed-bundle.pem")       # a root BearSSL skips comes first
    with open(mixed, "w") as f:
        f.write(open(ed25519_root(env.tmp)).read() + open(env.p.ca_file).read())
    for env_file, extra in ((mixed, []), ("/nonexistent", ["--ca-file", env.p.ca_file])):
        res = subprocess.run(argv + extra, capture_output=True, timeout=120,
                             env={**os.environ, "SSL_CERT_FILE": env_file})
        env.verify_chain(check_success(res, env.p.acme_dir), ["ssl-cert-file.example.test"])
    res = subprocess.run(argv, capture_output=True, timeout=120,
                         env={**os.environ, "SSL_CERT_FILE": "/nonexistent"})
    check_failure(res, env.p.acme_dir, r"^acme-tiny: cannot open CA file /nonexistent: "
                  r"No such file or directory$")
    # an empty $SSL_CERT_FILE names no file: the default CA file is read (here a CA that cannot
    # be reached: the run gets as far as the connection), not a file named ""
    default = "/etc/ssl/certs/ca-certificates.crt"
    res = subprocess.run([*env.cmd, "--account-key", key, "--csr", csr, "--acme-dir",
                          env.p.acme_dir, "--directory-url", "https://127.0.0.1:9/dir", "--quiet"],
                         capture_output=True, timeout=120, env={**os.environ, "SSL_CERT_FILE": ""})
    check_failure(res, env.p.acme_dir, r"^acme-tiny: directory: GET https://127\.0\.0\.1:9/dir: "
                  r"Connection refused$" if os.path.exists(default) else
                  rf"^acme-tiny: cannot open CA file {re.escape(default)}: No such file or "
                  r"directory$")


def dangling_key_link(env):
    """A key path that is a symlink to nothing: no key made (minutes of RSA on a router)
    only to be refused; the run says what is wrong before it starts."""
    d = tempfile.mkdtemp(dir=env.tmp)
    acct, dkey = os.path.join(d, "account.key"), os.path.join(d, "domain.key")
    os.symlink("gone.key", acct)
    argv = [*env.cmd, "--account-key", acct, "--create-account-key", "--domains",
            "dangling.example.test", "--domain-key", dkey, "--acme-dir", env.p.acme_dir,
            "--directory-url", env.p.directory, "--ca-file", env.p.ca_file, "--quiet"]
    for create in (argv, [a for a in argv if a != "--create-account-key"]):
        res = subprocess.run(create, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        check_failure(res, env.p.acme_dir, r"^acme-tiny: account key .*/account\.key is a symlink "
                      r"that leads to no file: name the file itself$")
    os.unlink(acct)
    make_key(d, "p256", "account")
    os.symlink("gone.key", dkey)
    res = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    check_failure(res, env.p.acme_dir, r"^acme-tiny: domain key .*/domain\.key is a symlink that "
                  r"leads to no file: name the file itself$")
    assert sorted(os.listdir(d)) == ["account.key", "domain.key"], os.listdir(d)
    # a symlink that leads to a key is that key, for either
    os.rename(acct, os.path.join(d, "account-file.key"))
    os.symlink("account-file.key", acct)
    os.unlink(dkey)
    make_key(d, "p256", "domain-file")
    os.symlink("domain-file.key", dkey)
    res = subprocess.run([*argv, "--disable-check"], capture_output=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    check_success(res, env.p.acme_dir)


def sha256_of(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_made_key(path):
    assert os.stat(path).st_mode & 0o777 == 0o600, f"{path} mode {oct(os.stat(path).st_mode)}"
    openssl("pkey", "-check", "-noout", "-in", path)


def run_domains(env, acct, dkey, names, *extra):
    argv = [*env.cmd, "--account-key", acct, "--domains", ",".join(names), "--domain-key", dkey,
            "--acme-dir", env.p.acme_dir, "--directory-url", env.p.directory,
            "--ca-file", env.p.ca_file, "--disable-check", *extra]
    res = subprocess.run(argv, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    chain = check_success(res, env.p.acme_dir)
    env.verify_chain(chain, names)
    leaf = os.path.join(env.tmp, "leaf.pem")
    cert_key = openssl("x509", "-in", leaf, "-noout", "-pubkey").stdout
    assert cert_key == openssl("pkey", "-in", dkey, "-pubout").stdout, "certificate key is not the domain key"
    return res


def from_nothing(env):
    """No openssl on the router: account key, domain key and CSR all made by acme-tiny."""
    d = tempfile.mkdtemp(dir=env.tmp)
    acct, dkey = os.path.join(d, "account.key"), os.path.join(d, "domain.key")
    names = ["nothing.example.test", "www.nothing.example.test", "127.0.0.1"]
    res = run_domains(env, acct, dkey, names, "--create-account-key")
    err = res.stderr.decode()
    assert "Creating account key" in err and "Creating domain key" in err and "Registered!" in err, err
    check_made_key(acct)
    check_made_key(dkey)
    assert sorted(os.listdir(d)) == ["account.key", "domain.key"], os.listdir(d)
    before = sha256_of(acct), sha256_of(dkey)
    res = run_domains(env, acct, dkey, names, "--create-account-key")
    err = res.stderr.decode()
    assert "Creating account key" not in err and "Creating domain key" not in err, err
    assert "Already registered!" in err, err
    assert (sha256_of(acct), sha256_of(dkey)) == before, "an existing key was replaced"


def file_size_limit(env):
    """A file size limit (ulimit -f) of 0 or 100 bytes, below a P-256 key's
    PEM: making the key fails with the write's own reason (after the part
    that fits, too), not a signal's line, and leaves no file behind."""
    for limit in (0, 100):
        d = tempfile.mkdtemp(dir=env.tmp)
        acct = os.path.join(d, "account.key")
        argv = [*env.cmd, "--account-key", acct, "--create-account-key", "--csr", "/nonexistent",
                "--acme-dir", env.p.acme_dir, "--directory-url", env.p.directory,
                "--ca-file", env.p.ca_file, "--quiet"]
        res = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                                   (limit, limit)))
        check_failure(res, env.p.acme_dir, rf"^acme-tiny: cannot create {re.escape(acct)}: "
                      r"File too large$")
        assert os.listdir(d) == [], os.listdir(d)
    # a challenge file (87 bytes) cut short at 50 says so too, not a stale errno's words
    fifty = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (50, 50))
    res = env.run(make_key(env.tmp, "p256"), make_csr(env.tmp, "fsize", "fsize.example.test"),
                  quiet=True, preexec_fn=fifty)
    check_failure(res, env.p.acme_dir, r"^acme-tiny: cannot write challenge file .*: "
                  r"File too large$")


def output_trial_incompressible(env):
    """--output's trial write, which makes sure the chain will fit before the CA
    is asked, is of bytes a compressing file system (jffs2 or ubifs on a
    router's overlay, btrfs) cannot shrink: zeros there prove nothing. Read
    from strace: every write to the temporary file, compressed with zlib."""
    out = os.path.join(tempfile.mkdtemp(dir=env.tmp), "chain.pem")
    log = os.path.join(env.tmp, "trial.strace")
    argv = ["strace", "-f", "-y", "-xx", "-s", "70000", "-e", "trace=write", "-o", log,
            *env.cmd, "--account-key", make_key(env.tmp, "p256", "trial"), "--csr",
            make_csr(env.tmp, "trial", "trial.example.test"), "--acme-dir", env.p.acme_dir,
            "--directory-url", "https://127.0.0.1:9/dir", "--quiet", "--output", out]
    no_lsan = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                   ":detect_leaks=0")      # LeakSanitizer does not work under ptrace
    res = subprocess.run(argv, capture_output=True, timeout=60, env=no_lsan)
    assert res.returncode == 2 and b"directory" in res.stderr, res.stderr   # after the trial
    data = b""
    with open(log) as f:
        for m in re.finditer(r'write\(\d+<((?:\\x..)*)>, "((?:\\x..)*)"', f.read()):
            path, written = (bytes.fromhex(g.replace("\\x", "")) for g in m.groups())
            data += written if re.fullmatch(rb".*\.tmp-\w{6}", path) else b""
    assert len(data) >= 16384, f"{len(data)} bytes written to the temporary file"
    assert len(zlib.compress(data, 9)) > 0.95 * len(data), "the trial write compresses"


def strace_inject(argv, *injects):
    """argv run under strace with -e inject=INJECT for each of injects, its calls traced (else
    not tampered with); no LeakSanitizer (it cannot run under ptrace), stdin /dev/null; the
    CompletedProcess."""
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    trace = "trace=" + ",".join(i.split(":")[0] for i in injects)
    return subprocess.run(["strace", "-o", os.devnull, "-e", trace,
                           *(a for i in injects for a in ("-e", "inject=" + i)), *argv],
                          capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def key_temp_unlink_fails(env):
    """A new key's temporary name that cannot be removed once the key is linked into place
    (EIO from unlink, by strace) fails the run with a line that names it: left silently,
    it was a second copy of the private key (found by fault injection). A chain renamed
    into place has no temporary name left to remove, and its run does not fail."""
    d = tempfile.mkdtemp(dir=env.tmp)
    acct = os.path.join(d, "account.key")
    res = strace_inject([*env.cmd, "--account-key", acct, "--create-account-key", "--csr",
                         "/nonexistent", "--acme-dir", env.p.acme_dir, "--quiet"],
                        "unlink:error=EIO:when=1")
    tmp = [f for f in os.listdir(d) if f != "account.key"]
    assert len(tmp) == 1 and tmp[0].startswith("account.key.tmp-"), os.listdir(d)
    check_failure(res, env.p.acme_dir, rf"^acme-tiny: cannot remove {re.escape(d)}/"
                  rf"{tmp[0]}: Input/output error$")
    check_made_key(acct)
    # after the chain's rename there is nothing to remove: no failure once it is in place
    out = os.path.join(d, "chain.pem")
    res = strace_inject([*env.cmd, "--account-key", acct, "--csr", make_csr(env.tmp, "unlink",
                         "unlink.example.test"), "--acme-dir", env.p.acme_dir, "--directory-url",
                         env.p.directory, "--ca-file", env.p.ca_file, "--disable-check",
                         "--quiet", "--output", out], "unlink:error=EIO:when=2")
    assert res.returncode == 0 and res.stderr == b"", res.stderr
    assert split_pem(open(out).read()), "no chain in --output"


def output_trial_unlink_fails(env):
    """--output's trial file that cannot be removed (EIO from unlink, by strace) fails the
    run before the CA is asked, with a line that names it: it was left silently, 20 kB
    beside the certificate, at every run (found by fault injection). When the trial write
    found the disk full first (ENOSPC), the line gives that, the first error, and then names
    the file left: the unlink's error alone hid why --output cannot be replaced."""
    for name, first, why in (("trial", [], "cannot remove {tmp}: Input/output error"),
                             ("full", ["write:error=ENOSPC:when=1"],
                              "--output {out} cannot be replaced: No space left on device;"
                              " cannot remove {tmp}")):
        d = tempfile.mkdtemp(dir=env.tmp)
        out = os.path.join(d, "chain.pem")
        res = strace_inject([*env.cmd, "--account-key", make_key(env.tmp, "p256", name),
                             "--csr", make_csr(env.tmp, name, f"{name}.example.test"),
                             "--acme-dir", env.p.acme_dir, "--directory-url",
                             "https://127.0.0.1:9/dir", "--quiet", "--output", out],
                            *first, "unlink:error=EIO:when=1")
        tmp = os.listdir(d)
        assert len(tmp) == 1 and tmp[0].startswith("chain.pem.tmp-"), tmp
        check_failure(res, env.p.acme_dir, "^acme-tiny: " + re.escape(why.format(
            out=out, tmp=os.path.join(d, tmp[0]))) + "$")


def key_link_and_unlink_fail(env):
    """A new key that cannot be linked into place (EPERM: vfat has no links) and whose
    temporary name cannot be removed either (EIO): the line gives the link's error, the
    first, and names the copy of the key left; the unlink's error alone hid why."""
    d = tempfile.mkdtemp(dir=env.tmp)
    acct = os.path.join(d, "account.key")
    res = strace_inject([*env.cmd, "--account-key", acct, "--create-account-key", "--csr",
                         "/nonexistent", "--acme-dir", env.p.acme_dir, "--quiet"],
                        "link:error=EPERM:when=1", "unlink:error=EIO:when=1")
    tmp = os.listdir(d)
    assert len(tmp) == 1 and tmp[0].startswith("account.key.tmp-"), tmp
    check_failure(res, env.p.acme_dir, rf"^acme-tiny: cannot create {re.escape(acct)}: "
                  rf"Operation not permitted; cannot remove {re.escape(d)}/{tmp[0]}$")


def domain_key_types(env):
    acct = make_key(env.tmp, "p256")
    for kind in ("p384", "rsa2048", "rsa3072", "rsa4096"):
        dkey = os.path.join(env.tmp, f"made-domain-{kind}.key")
        run_domains(env, acct, dkey, [f"{kind}.domains.example.test"], "--key-type", kind)
        check_made_key(dkey)


def domain_key_from_openssl(env):
    acct = make_key(env.tmp, "p256")
    dkey = make_key(env.tmp, "rsa2048", "openssl-domain")
    before = sha256_of(dkey)
    res = run_domains(env, acct, dkey, ["openssl-key.example.test"])
    assert "Creating domain key" not in res.stderr.decode(), res.stderr.decode()
    assert sha256_of(dkey) == before


def domains_usage_errors(env):
    base = [*env.cmd, "--account-key", "k", "--acme-dir", "d"]
    needs = ("needs --account-key, --acme-dir (or --hook, or --dns-persist), and either --csr "
             "or --domains with --domain-key")
    for extra, line in ((["--domains", "a.test"], needs), (["--domain-key", "x"], needs),
                        (["--csr", "c", "--domains", "a.test", "--domain-key", "x"], needs),
                        (["--domains", "a.test", "--domain-key", "x", "--key-type", "dsa"],
                         "--key-type is one of p256 p384 rsa2048 rsa3072 rsa4096, not dsa")):
        res = subprocess.run(base + extra, capture_output=True, timeout=10)
        assert res.returncode == 2 and res.stdout == b"", f"{extra}: exit {res.returncode}"
        assert res.stderr.decode() == f"acme-tiny: {line} (try 'acme-tiny --help')\n", \
            (extra, res.stderr)


def side_by_side(env):
    """Ten names: every challenge answered before any wait (in Pebble's log,
    no order poll before the last challenge POST), then the order polled; on
    one connection, 2n + 6 requests and the polls (2 when Pebble is quick:
    2n + 8 in all, what make bench checks)."""
    names = [f"n{k}.side.example.test" for k in range(10)]
    with open(env.p.log_path) as f:
        start = len(f.read())
    res = env.issue("p256", names, "--stats")
    with open(env.p.log_path) as f:
        log = f.read()[start:]
    calls = re.findall(r"(?:GET|HEAD|POST) (\S+) -> calling handler", log)
    chal = [k for k, c in enumerate(calls) if c.startswith("/chalZ/")]
    polls = [k for k, c in enumerate(calls) if c.startswith("/my-order/")]
    assert len(chal) == len(names) and polls and polls[0] > chal[-1], calls
    assert len(calls) - len(polls) == 2 * len(names) + 6 and len(polls) >= 2, calls
    m = re.search(r"stats: (\d+) HTTP requests, (\d+) connections", res.stderr.decode())
    assert m and int(m[1]) == len(calls) and m[2] == "1", res.stderr.decode()[-300:]


def authz_reused(env):
    """PEBBLE_AUTHZREUSE=100: a second order for the same names is ready at
    once: no authorization fetched, no challenge, finalized straight away."""
    key = make_key(env.tmp, "p256", "reuse")
    for k in range(2):
        csr = make_csr(env.tmp, f"reuse{k}", "reuse.example.test")
        res = env.run(key, csr, "--stats")
        check_success(res, env.p.acme_dir)
    err = res.stderr.decode()
    assert "Order created (ready)" in err and "Verifying" not in err, err
    assert "stats: 7 HTTP requests, 1 connections" in err, err


def authz_reused_fd_limit(env):
    """Under a limit on open files (ulimit -n), --output's trial, made before the CA is asked,
    holds for the final write: a run either fails before the CA issues a certificate, or
    writes the one it got. With authorizations reused (a renewal with --force, or a rerun)
    no challenge file takes a descriptor in between, and the connection kept alive to the CA
    was one more than the trial had: at 5 the CA issued, then 'cannot create chain.pem: Too
    many open files', the certificate lost (and a rate limit spent)."""
    key = make_key(env.tmp, "p256", "fdlimit")
    csr = make_csr(env.tmp, "fdlimit", "fdlimit.example.test")
    out = os.path.join(tempfile.mkdtemp(dir=env.tmp), "chain.pem")
    assert env.run(key, csr, "--output", out, quiet=True).returncode == 0
    no_lsan = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                   ":detect_leaks=0")      # LeakSanitizer needs descriptors at exit
    wrote = 0
    for n in range(4, 10):
        with open(env.p.log_path) as f:
            issued = f.read().count("Issued certificate")
        with open(out) as f:
            old = f.read()
        res = env.run(key, csr, "--output", out, "--force", quiet=True, env=no_lsan,
                      preexec_fn=lambda n=n: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)))
        with open(out) as f:
            new = f.read()
        if res.returncode == 0:
            assert new != old, f"ulimit -n {n}: exit 0, --output untouched"
            wrote += 1
            continue
        line = check_failure(res, env.p.acme_dir, r"^acme-tiny: ")
        assert new == old, f"ulimit -n {n}: exit 2, --output changed"
        with open(env.p.log_path) as f:
            assert f.read().count("Issued certificate") == issued, \
                f"ulimit -n {n}: the CA issued a certificate, then the run failed: {line}"
        assert not [f for f in os.listdir(os.path.dirname(out)) if ".tmp-" in f]
    assert wrote, "no run wrote its certificate, even at ulimit -n 9"


def wildcard_refused(env):
    # refused before the CA is asked (the CA here cannot be reached), with the reason
    key = make_key(env.tmp, "p256")
    csr = make_csr(env.tmp, "wild", "*.wild.example.test", ["*.wild.example.test", "wild.example.test"])
    res = env.run(key, csr, "--directory-url", "https://127.0.0.1:9/dir", quiet=True)
    check_failure(res, env.p.acme_dir, r"^acme-tiny: \*\.wild\.example\.test: a wildcard name needs "
                  r"DNS validation: --hook \(dns-01\) or --dns-persist$")


def ca_url_forms(env):
    # the CA by IP address (its certificate names 127.0.0.1), and with capitals in its name
    for host in ("127.0.0.1", "LocalHost"):
        env.issue("p256", [f"{host.lower()}.url.example.test"], "--directory-url",
                  env.p.directory.replace("localhost", host))


def umask_077(env):
    # the web server (another user, on a real machine) must be able to read the file
    key = make_key(env.tmp, "p256", "umask")
    csr = make_csr(env.tmp, "umask", "127.0.0.1")
    res = env.run(key, csr, "--check-port", str(env.p.http_port), check=True,
                  preexec_fn=lambda: os.umask(0o077))
    check_success(res, env.p.acme_dir)


def checked_first(env):
    # what is wrong locally is found before the CA is asked (here it cannot be reached)
    key = make_key(env.tmp, "p256")
    csr = make_csr(env.tmp, "first", "first.example.test")
    d = tempfile.mkdtemp(dir=env.tmp)
    os.chmod(d, 0o555)
    plain = os.path.join(env.tmp, "plain-file")
    open(plain, "w").close()
    pem_key = make_key(env.tmp, "p256", "output-key")
    der_key = os.path.join(env.tmp, "output-key.der")       # the same in DER: NUL bytes
    subprocess.run(["openssl", "pkey", "-in", pem_key, "-outform", "DER", "-out", der_key],
                   check=True)
    enc_key = os.path.join(env.tmp, "output-enc.der")       # encrypted: BearSSL cannot read it
    subprocess.run(["openssl", "pkcs8", "-topk8", "-in", pem_key, "-outform", "DER", "-passout",
                    "pass:x", "-out", enc_key], check=True)
    cases = [(os.path.join(env.tmp, "no-such-dir"), [], r"--acme-dir .*/no-such-dir: No such file "
              r"or directory"), (plain, [], r"--acme-dir .*/plain-file: Not a directory"),
             (env.p.acme_dir, ["--output", pem_key], r"--output .*/output-key\.key holds a private "
              r"key, or binary data \(DER\): it is not replaced by a certificate"),
             (env.p.acme_dir, ["--output", der_key], r"--output .*/output-key\.der holds a private "
              r"key, or binary data \(DER\): it is not replaced by a certificate"),
             (env.p.acme_dir, ["--output", enc_key], r"--output .*/output-enc\.der holds a private "
              r"key, or binary data \(DER\): it is not replaced by a certificate")]
    if os.geteuid() != 0:   # root may write anywhere
        cases.append((d, [], r"--acme-dir .*: Permission denied"))
    for acme_dir, extra, pattern in cases:
        res = env.run(key, csr, "--directory-url", "https://127.0.0.1:9/dir", *extra,
                      acme_dir=acme_dir, quiet=True)
        check_failure(res, None, "^acme-tiny: " + pattern + "$")
    res = env.run(os.path.join(env.tmp, "no-such.key"), csr, quiet=True)
    check_failure(res, None, r"^acme-tiny: account key .*/no-such\.key: no such file "
                  r"\(--create-account-key makes one\)$")
    if os.geteuid() == 0:   # an --acme-dir we may write to but not search: no file is made there
        top = tempfile.mkdtemp()
        try:
            os.chmod(top, 0o755)
            os.mkdir(os.path.join(top, "acme"), 0o766)
            os.chmod(os.path.join(top, "acme"), 0o766)
            for src in (key, csr, env.p.ca_file):
                os.chmod(shutil.copy(src, top), 0o644)
            argv = [*env.cmd, *(x for f, src in (("--account-key", key), ("--csr", csr),
                                                 ("--ca-file", env.p.ca_file))
                                 for x in (f, os.path.join(top, os.path.basename(src)))),
                    "--acme-dir", os.path.join(top, "acme"), "--directory-url",
                    "https://127.0.0.1:9/dir", "--quiet"]
            res = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                                 preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
            check_failure(res, None, r"^acme-tiny: --acme-dir .*/acme: Permission denied$")
        finally:
            shutil.rmtree(top)


def ed25519_root(d):
    """A CA certificate with an Ed25519 key, which BearSSL 0.6 cannot use: its path."""
    path = os.path.join(d, "ed25519-root.pem")
    if not os.path.exists(path):
        openssl("req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout",
                os.path.join(d, "ed25519-root.key"), "-subj", "/CN=Ed25519 root", "-days", "1",
                "-out", path)
    return path


def bad_inputs(env):
    # keys, CSRs, CA files and --domains that cannot be used: each its own line, before the CA
    # is asked (here it cannot be reached), and nothing on stdout
    key = make_key(env.tmp, "p256")
    csr = make_csr(env.tmp, "inputs", "inputs.example.test")

    def write(name, data):
        path = os.path.join(env.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    cut = write("cut.pem", b"-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n")
    no_certs = write("no-certs.pem", b"# a CA bundle without certificates\n")
    no_names = os.path.join(env.tmp, "no-names.csr")        # an empty subject, no SAN
    openssl("req", "-new", "-key", key, "-subj", "/", "-out", no_names)
    big = write("big.key", b"#" * ((1 << 20) + 1))
    ed_root = ed25519_root(env.tmp)                         # BearSSL cannot use its key
    with open(csr, "rb") as f, open(env.p.ca_file, "rb") as g:
        two_blocks = write("two-blocks.pem", f.read() + g.read())
    cases = [(["--ca-file", cut], r"CA file .*/cut\.pem: malformed PEM"),
             (["--ca-file", no_certs], r"CA file .*/no-certs\.pem: no usable certificates"),
             (["--ca-file", ed_root], r"CA file .*/ed25519-root\.pem: no usable certificates"),
             (["--account-key", cut], r"account key .*/cut\.pem: malformed PEM"),
             (["--account-key", big], r"cannot read account key .*/big\.key: larger than 1 MiB"),
             (["--account-key", make_key(env.tmp, "rsa1024")],
              r"account key .*/rsa1024\.key: RSA key must have 2048 to 4096 bits"),
             (["--account-key", make_key(env.tmp, "rsa4098")],
              r"account key .*/rsa4098\.key: RSA key must have 2048 to 4096 bits"),
             # of two blocks of other kinds, the first is named
             (["--account-key", two_blocks],
              r"account key .*/two-blocks\.pem: found CERTIFICATE REQUEST, expected PRIVATE KEY"),
             (["--account-key", make_key(env.tmp, "p521")],
              r"account key .*/p521\.key: EC key must be on P-256 or P-384"),
             (["--account-key", make_key(env.tmp, "ed25519")],
              r"account key .*/ed25519\.key: not an RSA or EC private key"),
             (["--csr", write("garbage.der", b"\x30\x03\x02\x01\x00")],
              r"CSR .*/garbage\.der: malformed, or without DNS names or IP addresses \(at most "
              r"100\)"),
             (["--csr", no_names], r"CSR .*/no-names\.csr: malformed, or without DNS names or IP "
              r"addresses \(at most 100\)")]
    for names in ("a.example.test,,b.example.test", "a.example.test/x",
                  ",".join(f"n{k}.example.test" for k in range(101))):
        cases.append((["--domains", names, "--domain-key", key], r"--domains: expected DNS names "
                      r"or IP addresses separated by commas \(at most 100\)"))
    for extra, pattern in cases:
        argv = [*env.cmd, "--account-key", key, "--csr", csr, "--acme-dir", env.p.acme_dir,
                "--directory-url", "https://127.0.0.1:9/dir", "--ca-file", env.p.ca_file,
                "--quiet"]
        if "--domains" in extra:            # instead of --csr
            del argv[argv.index("--csr"):argv.index("--csr") + 2]
        for flag, value in zip(extra[::2], extra[1::2]):
            if flag in argv:
                argv[argv.index(flag) + 1] = value
            else:
                argv += [flag, value]
        res = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        check_failure(res, env.p.acme_dir, "^acme-tiny: " + pattern + "$")


def stdout_full(env):
    # a chain that cannot be written whole must not look like success
    key = make_key(env.tmp, "p256")
    csr = make_csr(env.tmp, "full", "full.example.test")
    with open("/dev/full", "wb") as full:
        res = env.run(key, csr, quiet=True, stdout=full)
    assert res.returncode == 2, res.returncode
    assert re.fullmatch(rb"acme-tiny: cannot write the certificate to stdout: No space left on "
                        rb"device\n", res.stderr), res.stderr


def stdout_signal_after_write(env):
    """SIGTERM the moment the whole chain is on stdout (strace raises it at the write to the
    file that is stdout; it comes as that write returns): the run has succeeded, exit 0,
    as with --output, where signals are held from the write to the exit. It exited 2 with
    the chain on stdout ("interrupted"), against "nothing on stdout unless the run
    succeeded": `> tmp && mv tmp chain.pem` then threw away a certificate the CA had issued
    (found by a chaos run that signalled acme-tiny at each of its syscalls in turn)."""
    d = tempfile.mkdtemp(dir=env.tmp)
    out = os.path.join(d, "stdout.pem")
    argv = [*env.cmd, "--account-key", make_key(env.tmp, "p256", "stdout-signal"), "--csr",
            make_csr(env.tmp, "stdout-signal", "stdout-signal.example.test"), "--acme-dir",
            env.p.acme_dir, "--directory-url", env.p.directory, "--ca-file", env.p.ca_file,
            "--disable-check", "--quiet"]
    no_lsan = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                   ":detect_leaks=0")      # LeakSanitizer does not work under ptrace
    with open(out, "wb") as f:              # -P: only the writes to this file count
        res = subprocess.run(["strace", "-o", os.devnull, "-P", out, "-e", "trace=write", "-e",
                              "inject=write:signal=SIGTERM:when=1", *argv], stdout=f,
                             stderr=subprocess.PIPE, timeout=120, stdin=subprocess.DEVNULL,
                             env=no_lsan)
    with open(out, "rb") as f:
        res.stdout = f.read()
    assert res.returncode == 0, (f"exit {res.returncode} with {len(res.stdout)} bytes on stdout: "
                                 f"{res.stderr.decode(errors='replace')[-300:]!r}")
    env.verify_chain(check_success(res, env.p.acme_dir), ["stdout-signal.example.test"])
    assert res.stderr == b"", res.stderr


def nonce_reject_default(env):
    # PEBBLE_WFE_NONCEREJECT unset: Pebble refuses 5% of nonces, as it does out of the box
    for k in range(4):
        env.issue("p256", [f"default{k}.nonce.example.test", f"www.default{k}.nonce.example.test"])


def encrypted_keys(env):
    # a passphrase-protected key, as `openssl genrsa -aes256` (OpenSSL 1.x: RFC 1421 headers,
    # Proc-Type: 4,ENCRYPTED) or `openssl pkey -aes256` (PKCS#8) write it, as --account-key or
    # --domain-key: acme-tiny cannot use it, and its one line says that it is encrypted, not
    # that a well-formed file is "malformed PEM" (which sends the user looking for damage)
    csr = make_csr(env.tmp, "enc", "enc.example.test")
    plain = make_key(env.tmp, "rsa2048", "enc-plain")
    legacy, pkcs8 = (os.path.join(env.tmp, n) for n in ("enc-legacy.key", "enc-pkcs8.key"))
    openssl("rsa", "-in", plain, "-traditional", "-aes256", "-passout", "pass:x", "-out", legacy)
    openssl("pkey", "-in", plain, "-aes256", "-passout", "pass:x", "-out", pkcs8)
    with open(legacy) as f:
        assert "Proc-Type: 4,ENCRYPTED" in f.read(), "openssl wrote no RFC 1421 headers"
    for path in (legacy, pkcs8):
        for flags, what in ((["--csr", csr, "--account-key", path], "account key"),
                            (["--domains", "enc.example.test", "--domain-key", path,
                              "--account-key", plain], "domain key")):
            argv = [*env.cmd, *flags, "--acme-dir", env.p.acme_dir, "--directory-url",
                    "https://127.0.0.1:9/dir", "--ca-file", env.p.ca_file, "--quiet"]
            res = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
            line = check_failure(res, env.p.acme_dir, f"^acme-tiny: {what} .*{re.escape(path)}")
            assert re.search(r"(?i)encrypted", line) and "malformed" not in line, \
                f"{os.path.basename(path)} as {what}: {line!r} does not say it is encrypted"


def nonce_reject_50(env):
    env.issue("p256", ["nonce1.example.test"])
    env.issue("rsa2048", ["nonce2.example.test", "www.nonce2.example.test"])


TESTS = [(f"pebble_{f.__name__}", f) for f in (
    issue_rsa2048, issue_rsa4096, issue_p256, issue_p384, three_names_one_ip, der_csr,
    existing_account, existing_account_new_contact, contact_with_quote, self_check_passes, self_check_ipv6, self_check_fails,
    self_check_redirect, self_check_content, validation_fails, untrusted_server, bad_account_key,
    usage_errors, output_file, from_nothing,
    domain_key_types, domain_key_from_openssl, domains_usage_errors, side_by_side,
    wildcard_refused, ca_url_forms, umask_077, checked_first, bad_inputs, stdout_full,
    stdout_signal_after_write, file_size_limit,
    output_trial_incompressible, key_temp_unlink_fails,
    output_trial_unlink_fails, key_link_and_unlink_fail,
    ssl_cert_file, dangling_key_link, encrypted_keys)]
