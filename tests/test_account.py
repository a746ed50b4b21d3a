"""The account's life and revocation (issue 14) against Debian 12's Pebble
(2.4), on loopback: --revoke with the account key and with the
certificate's own key (--revoke-key), --new-account-key (key rollover),
--deactivate-account, External Account Binding (--eab-kid, --eab-hmac-key,
--eab-alg), and the usage errors of these flags.

What Pebble did is read from its management port (/cert-status-by-serial/
SERIAL: "Status" and "Reason") and from its log: "POST /revoke-cert",
"POST /rollover-account-key", "There are now N accounts in memory",
"Successful newAccount Binding with CA using kid ..."."""
import base64
import json
import os
import re
import secrets
import stat
import subprocess
import tempfile

from helpers import check_failure, check_success, make_csr, make_key, openssl, picked, scratch_dir
from pebble_env import Pebble

USAGE_HINT = " (try 'acme-tiny --help')"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Env:
    """One Pebble, a directory of this test's own under tmp, and the binary."""

    def __init__(self, binary, p, tmp):
        self.bin, self.p = binary, p
        self.d = tempfile.mkdtemp(dir=tmp)

    def acme(self, *args, quiet=True, **kw):
        """The binary with these arguments, against this Pebble (kw: for subprocess.run)."""
        argv = [self.bin, "--directory-url", self.p.directory, "--ca-file", self.p.ca_file,
                *args, *(["--quiet"] if quiet else [])]
        return subprocess.run(argv, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                              **kw)

    def key(self, name):
        return make_key(self.d, "p256", name)

    def issue(self, key, name, *extra):
        """A certificate for name, ordered with account key key: its file, and
        the account URL if the run made the account (None if it was there)."""
        csr = make_csr(self.d, name, name)      # its key is domain.key, here
        res = self.acme("--account-key", key, "--csr", csr, "--acme-dir", self.p.acme_dir,
                        "--disable-check", *extra, quiet=False)
        chain = check_success(res, self.p.acme_dir)
        path = os.path.join(self.d, name + ".pem")
        with open(path, "w") as f:
            f.write(chain)
        m = re.search(r"^Registered! Account ID: (https://\S+)$", res.stderr.decode(), re.M)
        return path, m[1] if m else None

    def status(self, cert):
        """Pebble's record of the certificate: {"Status": ..., "Reason": ...}."""
        serial = openssl("x509", "-in", cert, "-noout", "-serial").stdout.decode()
        serial = serial.strip().split("=", 1)[1]
        return json.loads(self.p.management(f"/cert-status-by-serial/{serial}"))

    def log(self):
        with open(self.p.log_path) as f:
            return f.read()

    def accounts(self):
        """How many accounts Pebble holds, by the last line of its log that says."""
        counts = re.findall(r"There are now (\d+) accounts in memory", self.log())
        return int(counts[-1]) if counts else 0

    def requests(self, what):
        """How many requests Pebble got whose method and path begin with what
        ("POST /revoke-cert", "GET /dir", "POST /": every POST)."""
        return len(re.findall(rf"^Pebble .* {re.escape(what)}\S* -> calling handler\(\)$",
                              self.log(), re.M))


def revoked(env, cert, reason):
    st = env.status(cert)
    assert st["Status"] == "Revoked", st
    assert st.get("Reason", 0) == reason, f"reason {st.get('Reason')}, expected {reason}"


def not_revoked(env, cert):
    st = env.status(cert)
    assert st["Status"] == "Valid", st


# ---------------------------------------------------------------- revocation

def revoke_account_key(env):
    """--revoke with --account-key, no --reason: the account is found (never
    made: no new account), the request sent, Pebble says Revoked, reason 0."""
    key = env.key("account")
    cert, url = env.issue(key, "revoke-account.example.test")
    assert url, "no \"Registered! Account ID: URL\" for a new account"
    not_revoked(env, cert)
    accounts, posts = env.accounts(), env.requests("POST /revoke-cert")
    res = env.acme("--account-key", key, "--revoke", cert, quiet=False)
    err = res.stderr.decode()
    assert res.returncode == 0 and res.stdout == b"", (res.returncode, err[-1500:])
    assert "Certificate revoked" in err, err
    assert env.requests("POST /revoke-cert") == posts + 1
    assert env.accounts() == accounts, "an account was made to revoke a certificate"
    revoked(env, cert, 0)


def revoke_cert_key(env):
    """--revoke with --revoke-key (the certificate's own key, no account key
    given) and --reason 4: Pebble says Revoked, reason 4 (keyCompromise)."""
    cert, _ = env.issue(env.key("account"), "revoke-certkey.example.test")
    res = env.acme("--revoke", cert, "--revoke-key", os.path.join(env.d, "domain.key"),
                   "--reason", "4")
    assert res.returncode == 0 and res.stdout == res.stderr == b"", \
        (res.returncode, res.stderr[-1500:])
    revoked(env, cert, 4)


def revoke_account_key_reason(env):
    """--revoke with --account-key and --reason 1, the other way round."""
    key = env.key("account")
    cert, _ = env.issue(key, "revoke-reason.example.test")
    res = env.acme("--account-key", key, "--revoke", cert, "--reason", "1")
    assert res.returncode == 0 and res.stderr == b"", (res.returncode, res.stderr[-1500:])
    revoked(env, cert, 1)


def revoke_wrong_key(env):
    """--revoke-key that is not the certificate's (another key; the account
    key): a clear error, and nothing POSTed to the CA, so no revocation."""
    key = env.key("account")
    cert, _ = env.issue(key, "revoke-wrong.example.test")
    for wrong in (env.key("other"), key):
        posts, revokes = env.requests("POST /"), env.requests("POST /revoke-cert")
        res = env.acme("--revoke", cert, "--revoke-key", wrong, "--reason", "1")
        check_failure(res, None, rf"^acme-tiny: --revoke {re.escape(cert)} is no certificate "
                      rf"for the key in --revoke-key {re.escape(wrong)}$")
        assert env.requests("POST /") == posts, "a request was POSTed for a key that does not fit"
        assert env.requests("POST /revoke-cert") == revokes
    not_revoked(env, cert)


def revoke_other_account(env):
    """Account B revokes account A's certificate: the CA refuses (403
    unauthorized), exit 2, and the certificate stays valid."""
    key_a, key_b = env.key("a"), env.key("b")
    cert, _ = env.issue(key_a, "revoke-a.example.test")
    env.issue(key_b, "revoke-b.example.test")        # B exists, with another name
    res = env.acme("--account-key", key_b, "--revoke", cert)
    check_failure(res, None, r"^acme-tiny: revokeCert failed: HTTP 403 urn:ietf:params:acme:"
                  r"error:unauthorized: The certificate being revoked is not associated with "
                  r"account")
    not_revoked(env, cert)


def revoke_already(env):
    """A certificate revoked already: the CA's alreadyRevoked, exit 2, with
    either key; the first reason stays."""
    key = env.key("account")
    cert, _ = env.issue(key, "revoke-twice.example.test")
    res = env.acme("--account-key", key, "--revoke", cert, "--reason", "5")
    assert res.returncode == 0, res.stderr
    for how in (["--account-key", key], ["--revoke-key", os.path.join(env.d, "domain.key")]):
        res = env.acme(*how, "--revoke", cert)
        check_failure(res, None, r"^acme-tiny: revokeCert failed: HTTP 400 urn:ietf:params:acme:"
                      r"error:alreadyRevoked: ")
    revoked(env, cert, 5)


def revoke_no_account(env):
    """--revoke and --deactivate-account with a key the CA has no account
    for: "has no account", and no account is made (onlyReturnExisting)."""
    cert, _ = env.issue(env.key("account"), "revoke-noaccount.example.test")
    stranger = env.key("stranger")
    accounts, revokes = env.accounts(), env.requests("POST /revoke-cert")
    for action in (["--revoke", cert], ["--deactivate-account"]):
        res = env.acme("--account-key", stranger, *action)
        check_failure(res, None, rf"^acme-tiny: account key {re.escape(stranger)}: the CA has no "
                      r"account for it$")
    assert env.accounts() == accounts, "an account was made"
    assert env.requests("POST /revoke-cert") == revokes
    not_revoked(env, cert)


def reason_leading_zero(env):
    """--reason 04: a usage error, or reason 4; never "reason":04 in the JSON
    sent (JSON has no leading zeros: the CA would refuse it as malformed)."""
    key = env.key("account")
    cert, _ = env.issue(key, "revoke-zero.example.test")
    revokes = env.requests("POST /revoke-cert")
    res = env.acme("--account-key", key, "--revoke", cert, "--reason", "04")
    err = res.stderr.decode()
    if res.returncode == 2 and err.endswith(USAGE_HINT + "\n"):
        # --reason's own usage error: any other (an unknown --reason) is no answer to 04
        assert err == "acme-tiny: --reason goes with --revoke: 0 to 10 but 7 (RFC 5280 " \
            f"5.3.1), not 04{USAGE_HINT}\n", err
        assert env.requests("POST /revoke-cert") == revokes
        not_revoked(env, cert)
    else:
        assert res.returncode == 0, f"exit {res.returncode}: {err[-1500:]}"
        revoked(env, cert, 4)


# ---------------------------------------------------------------- key rollover

def rollover(env):
    """--new-account-key with --create-account-key: NEWKEY made (0600), the
    account moved to it (the URL it was registered under), no new account;
    an issuance with NEWKEY uses that account; OLDKEY has none any more; a
    rerun says the rollover is done."""
    old, new = env.key("old"), os.path.join(env.d, "new.key")
    with open(old, "rb") as f:
        old_bytes = f.read()
    _, url = env.issue(old, "rollover.example.test")
    assert url, "the account was not made"
    accounts, rollovers = env.accounts(), env.requests("POST /rollover-account-key")
    res = env.acme("--account-key", old, "--new-account-key", new, "--create-account-key",
                   quiet=False)
    err = res.stderr.decode()
    assert res.returncode == 0 and res.stdout == b"", (res.returncode, err[-1500:])
    assert f"Account {url} now belongs to {new}" in err, err
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o600, oct(os.stat(new).st_mode)
    with open(old, "rb") as f:
        assert f.read() == old_bytes, "the old key file changed"
    assert env.requests("POST /rollover-account-key") == rollovers + 1
    # the new key's account is the old one: found, not made
    _, made = env.issue(new, "rollover-new.example.test")
    assert made is None, f"the new key got an account of its own: {made}"
    assert env.accounts() == accounts, "a new account was made"
    # the old key has none: revocation and deactivation say so
    cert = os.path.join(env.d, "rollover-new.example.test.pem")
    for action in (["--revoke", cert], ["--deactivate-account"]):
        res = env.acme("--account-key", old, *action)
        check_failure(res, None, rf"^acme-tiny: account key {re.escape(old)}: the CA has no "
                      r"account for it$")
    not_revoked(env, cert)
    # a rerun (as after an answer that was lost) finds the account under NEWKEY
    res = env.acme("--account-key", old, "--new-account-key", new, "--create-account-key",
                   quiet=False)
    err = res.stderr.decode()
    assert res.returncode == 0, (res.returncode, err[-1500:])
    assert f"The rollover is done: account {url} belongs to {new}" in err, err
    assert env.requests("POST /rollover-account-key") == rollovers + 1, \
        "the rollover was sent again"
    assert env.accounts() == accounts
    # and the account under NEWKEY can revoke the certificate it ordered
    res = env.acme("--account-key", new, "--revoke", cert)
    assert res.returncode == 0, res.stderr
    revoked(env, cert, 0)


def rollover_create_never_old(env):
    """--create-account-key with a rollover never makes OLDKEY: a missing
    OLDKEY is an error (exit 2, one line), found before NEWKEY is made, and
    is still missing after."""
    old, new = os.path.join(env.d, "missing-old.key"), os.path.join(env.d, "missing-new.key")
    rollovers = env.requests("POST /rollover-account-key")
    res = env.acme("--account-key", old, "--new-account-key", new, "--create-account-key")
    check_failure(res, None, rf"^acme-tiny: account key {re.escape(old)}: no such file")
    assert not os.path.exists(old), "--create-account-key made the old key"
    assert not os.path.exists(new), "NEWKEY was made for a rollover that cannot happen"
    assert env.requests("POST /rollover-account-key") == rollovers


def rollover_key_in_use(env):
    """NEWKEY has an account of its own already: the CA's error, exit 2, and
    OLDKEY keeps its account."""
    old, new = env.key("old"), env.key("taken")
    env.issue(old, "rollover-old.example.test")
    env.issue(new, "rollover-taken.example.test")
    res = env.acme("--account-key", old, "--new-account-key", new)
    check_failure(res, None, r"^acme-tiny: keyChange failed: HTTP \d+ urn:ietf:params:acme:error:")
    _, made = env.issue(old, "rollover-still.example.test")
    assert made is None, "the old key lost its account"


# ---------------------------------------------------------------- deactivation

def deactivate(env):
    """--deactivate-account: exit 0, says it cannot be undone; the key's next
    issuance, and a second deactivation, fail with the CA's message."""
    key = env.key("account")
    _, url = env.issue(key, "deactivate.example.test")
    res = env.acme("--account-key", key, "--deactivate-account", quiet=False)
    err = res.stderr.decode()
    assert res.returncode == 0 and res.stdout == b"", (res.returncode, err[-1500:])
    assert f"Account {url} deactivated: this cannot be undone" in err, err
    csr = make_csr(env.d, "after", "deactivate.example.test")
    res = env.acme("--account-key", key, "--csr", csr, "--acme-dir", env.p.acme_dir,
                   "--disable-check")
    deactivated = (r"^acme-tiny: newAccount failed: HTTP 403 urn:ietf:params:acme:error:"
                   r"unauthorized: .*deactivated")
    check_failure(res, env.p.acme_dir, deactivated)
    check_failure(env.acme("--account-key", key, "--deactivate-account"), None, deactivated)


def stdout_closed(env):
    """--revoke and --deactivate-account with stdout closed (a cron line's >&-): stdout is
    only for a chain, so both run: exit 0, nothing on stderr (--quiet), and Pebble says
    Revoked (reason 1), and the account deactivated."""
    key = env.key("account")
    cert, _ = env.issue(key, "stdout-closed.example.test")
    for args in (["--revoke", cert, "--reason", "1"], ["--deactivate-account"]):
        res = env.acme("--account-key", key, *args, preexec_fn=lambda: os.close(1))
        assert res.returncode == 0 and res.stderr == b"", \
            (args[0], res.returncode, res.stderr[-1500:])
    revoked(env, cert, 1)
    check_failure(env.acme("--account-key", key, "--deactivate-account"), None,
                  r"^acme-tiny: newAccount failed: HTTP 403 urn:ietf:params:acme:error:"
                  r"unauthorized: .*deactivated")


# ---------------------------------------------------------------- External Account Binding

def eab(binary, tmp):
    """A CA that requires EAB (Pebble's externalAccountBindingRequired): the
    right KID and key make the account and get a certificate (HS256, HS384
    and HS512), Pebble saying the binding succeeded; no EAB: the clear error
    naming the flags; a wrong key or KID: the CA's error; a key registered
    already: no EAB flags needed."""
    keys = {"kid-1": b64u(secrets.token_bytes(32)), "kid-2": b64u(secrets.token_bytes(64))}
    with Pebble(config={"externalAccountBindingRequired": True,
                        "externalAccountMACKeys": keys}) as p:
        env = Env(binary, p, tmp)
        for n, (kid, alg) in enumerate((("kid-1", None), ("kid-2", "HS512"), ("kid-1", "HS384"))):
            key = env.key(f"eab{n}")
            bound = env.log().count(f'Successful newAccount Binding with CA using kid "{kid}"')
            _, url = env.issue(key, f"eab{n}.example.test", "--eab-kid", kid, "--eab-hmac-key",
                               keys[kid], *(["--eab-alg", alg] if alg else []))
            assert url, f"{alg or 'HS256'}: no new account"
            assert env.log().count(f'Successful newAccount Binding with CA using kid "{kid}"') \
                == bound + 1, f"{alg or 'HS256'}: Pebble saw no binding"
        # the first key again, without EAB: the CA has its account
        _, url = env.issue(env.key("eab0"), "eab-again.example.test")
        assert url is None, f"a new account without EAB: {url}"
        accounts = env.accounts()
        csr = make_csr(env.d, "refused", "eab-refused.example.test")
        issue = ["--csr", csr, "--acme-dir", p.acme_dir, "--disable-check"]
        res = env.acme("--account-key", env.key("none"), *issue)
        check_failure(res, p.acme_dir, r"^acme-tiny: newAccount: the CA requires External Account "
                      r"Binding: --eab-kid and --eab-hmac-key, as the CA gives them$")
        res = env.acme("--account-key", env.key("wrong"), *issue, "--eab-kid", "kid-1",
                       "--eab-hmac-key", keys["kid-2"])
        check_failure(res, p.acme_dir, r"^acme-tiny: newAccount failed: HTTP 403 urn:ietf:params:"
                      r"acme:error:unauthorized: external account binding JWS verification error")
        res = env.acme("--account-key", env.key("wrong"), *issue, "--eab-kid", "kid-9",
                       "--eab-hmac-key", keys["kid-1"])
        check_failure(res, p.acme_dir, r"^acme-tiny: newAccount failed: HTTP 403 urn:ietf:params:"
                      r"acme:error:unauthorized: .*'kid'")
        res = env.acme("--account-key", env.key("badkey"), *issue, "--eab-kid", "kid-1",
                       "--eab-hmac-key", "not+base64url/")
        check_failure(res, p.acme_dir, r"^acme-tiny: --eab-hmac-key: not base64url \(A-Z a-z "
                      r"0-9 - _, without = padding\)$")
        assert env.accounts() == accounts, "an account was made without a good binding"


# ---------------------------------------------------------------- usage errors

def usage_errors(env):
    """Flags that do not go together, or values out of range: exit 2, nothing
    on stdout, one line: the reason and "(try 'acme-tiny --help')", nothing sent."""
    key = env.key("account")
    cert, _ = env.issue(key, "usage.example.test")
    csr = os.path.join(env.d, "usage.example.test.csr")
    issue = ["--account-key", key, "--csr", csr, "--acme-dir", env.p.acme_dir, "--disable-check"]
    revoke = ["--account-key", key, "--revoke", cert]
    reason = r"--reason goes with --revoke: 0 to 10 but 7 \(RFC 5280 5\.3\.1\), not "
    one = r"one of --revoke, --new-account-key, --deactivate-account at a time"
    eab_pair = r"--eab-kid and --eab-hmac-key go together; --eab-alg is HS256, HS384 or HS512"
    cases = [
        ([*revoke, "--reason", "7"], reason + "7"),
        ([*revoke, "--reason", "11"], reason + "11"),
        ([*revoke, "--reason", "x"], reason + "x"),
        ([*revoke, "--reason", "-1"], reason + "-1"),
        ([*revoke, "--reason", "100"], reason + "100"),
        ([*revoke, "--reason", ""], "empty value for --reason"),
        ([*issue, "--contact", "mailto:a@example.com", ""], "empty value for --contact"),
        ([*issue, "--print-dns-persist", "--output", "out.pem"],
         r"--print-dns-persist prints records to stdout, and does nothing else"),
        ([*issue, "--reason", "4"], reason + "4"),
        ([*revoke, "--deactivate-account"], one),
        ([*revoke, "--new-account-key", env.key("new")], one),
        (["--account-key", key, "--new-account-key", env.key("new"), "--deactivate-account"], one),
        (["--revoke", cert], r"--revoke needs --account-key or --revoke-key"),
        (["--revoke", cert, "--reason", "1"], r"--revoke needs --account-key or --revoke-key"),
        (["--deactivate-account"], r"--deactivate-account needs --account-key"),
        (["--new-account-key", env.key("new")], r"--new-account-key needs --account-key"),
        ([*issue, "--eab-kid", "kid-1"], eab_pair),
        ([*issue, "--eab-hmac-key", b64u(b"k" * 32)], eab_pair),
        ([*issue, "--eab-kid", "kid-1", "--eab-hmac-key", b64u(b"k" * 32), "--eab-alg", "HS1"],
         eab_pair),
        ([*issue, "--eab-kid", "kid-1", "--eab-hmac-key", b64u(b"k" * 32), "--eab-alg", "hs256"],
         eab_pair),
        # what the user typed is cleaned as a server's text is: one line, no escapes
        ([*issue, "--bogus\nsecond line\x1b[31m"], r"unknown argument --bogus\?second line\?\[31m"),
    ]
    for args, why in cases:
        before = env.requests("GET /dir")
        res = env.acme(*args, quiet=False)
        out, err = res.stdout.decode(), res.stderr.decode()
        what = " ".join(a.replace(env.d, "D") for a in args)
        assert res.returncode == 2, f"{what}: exit {res.returncode}: {err[-800:]}"
        assert out == "", f"{what}: stdout {out[:200]!r}"
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].endswith(USAGE_HINT), f"{what}: stderr {err[-800:]!r}"
        said = lines[0][:-len(USAGE_HINT)]
        assert re.fullmatch("acme-tiny: " + why, said), f"{what}: {said!r} is not {why!r}"
        assert env.requests("GET /dir") == before, f"{what}: the CA was asked"
    not_revoked(env, cert)


TESTS = [(f"account_{f.__name__}", f) for f in (
    revoke_account_key, revoke_cert_key, revoke_account_key_reason, revoke_wrong_key,
    revoke_other_account, revoke_already, revoke_no_account, reason_leading_zero,
    rollover, rollover_create_never_old, rollover_key_in_use, deactivate, stdout_closed,
    usage_errors)]


def run(binary, report, only=None):
    selected = [(n, f) for n, f in TESTS if picked(only, n, "test_account")]
    with scratch_dir("acme-tiny-account-") as tmp:
        if selected:
            with Pebble() as p:
                for name, fn in selected:
                    report.check(name, fn, Env(binary, p, tmp))
        if picked(only, "account_eab", "test_account"):
            report.check("account_eab", eab, binary, tmp)
