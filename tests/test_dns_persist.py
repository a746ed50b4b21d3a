"""dns-persist-01 (draft-ietf-acme-dns-persist) against tests/persist_ca.py, on loopback.

Debian's Pebble 2.4 offers no dns-persist-01, so these cases run the real
binary against PersistCA, an EvilCA that offers it in three shapes: draft-01
(Pebble 2.10.1: the challenge's "issuer-domain-names", accounturi = the
account URL), draft-02 (the directory's meta "issuerDomainNames" and
"accountHashPrefix", a hashed accounturi) and a directory with only meta
"caaIdentities". The CA's record store stands in for DNS: the tests put in it
what acme-tiny --print-dns-persist printed, as a user would paste it into a
zone, then ask for a certificate with --dns-persist. A draft-01 CA names its
issuer only in a challenge, which --print-dns-persist (no order) never sees:
there the record comes from the failure line of a first run.

Every run is

    acme-tiny --account-key K (--csr C | --domains N --domain-key D)
              --directory-url https://localhost:PORT/dir --ca-file TESTCA
              --quiet --timeout 5 --max-wait 4 (--print-dns-persist | --dns-persist)

in a fresh empty directory (which must stay empty), killed after DEADLINE s;
no sanitizer report, no raw control byte on stderr. The certificate the CA
returns is the fixed chain of keys/leaf.pem, made here for the CSRs' key.
"""
import os
import re
import subprocess
import time

from helpers import PEM_CHAIN, make_csr, make_key, openssl, run_cases
from pebble_env import make_tls_cert
from persist_ca import (CAA, DRAFT01, DRAFT02, PERSIST, PersistCA, account_hash,
                        jwk_thumbprint)
from test_evil import raw_control

DEADLINE = 30
NAME = "example.com"
ZONE_LINE = re.compile(r'^_validation-persist\.(\S+)\. IN TXT "([^"\\]*)"$')


class Suite:
    def __init__(self, binary, tmp):
        self.bin, self.tmp = binary, tmp
        self.keys = os.path.join(tmp, "keys")
        self.cases = os.path.join(tmp, "cases")
        os.mkdir(self.keys)
        os.mkdir(self.cases)
        make_tls_cert(self.keys)
        self.ca_file = os.path.join(self.keys, "ca.pem")
        self.account_key = make_key(self.keys, "p256")
        self.rsa_key = make_key(self.keys, "rsa2048")
        self.other_key = make_key(self.keys, "p256", "other")
        # every CSR is for keys/domain.key, the key of leaf.pem (what the CA returns)
        self.csr_both = make_csr(self.keys, "both", NAME, [NAME, "*." + NAME])
        self.csr_single = make_csr(self.keys, "single", NAME)
        self.csr_wild = make_csr(self.keys, "wild", "*." + NAME)
        self.csr_print = make_csr(self.keys, "print", NAME, [
            NAME, "*." + NAME, "www." + NAME, "*.wild." + NAME, "192.0.2.1"])
        self.domain_key = os.path.join(self.keys, "domain.key")
        with open(os.path.join(self.keys, "leaf.ext"), "w") as f:
            f.write(f"subjectAltName=DNS:{NAME},DNS:*.{NAME}\n")
        openssl("x509", "-req", "-in", self.csr_both, "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext",
                cwd=self.keys)
        self.n = 0

    def run(self, ca, *args, key=None, names=None):
        """The client against ca; names: a CSR path, or ("--domains", "a,b") for --domains."""
        self.n += 1
        case = os.path.join(self.cases, f"case-{self.n}")
        os.mkdir(case)
        names = names or self.csr_both
        name_args = (["--domains", names[1], "--domain-key", self.domain_key]
                     if isinstance(names, tuple) else ["--csr", names])
        argv = [self.bin, "--account-key", key or self.account_key, *name_args,
                "--directory-url", ca.directory, "--ca-file", self.ca_file,
                "--quiet", "--timeout", "5", "--max-wait", "4", *args]
        start = time.monotonic()
        try:
            p = subprocess.run(argv, cwd=case, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=DEADLINE)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"hangs: killed after {DEADLINE} s; stderr {e.stderr!r}")
        p.elapsed = time.monotonic() - start
        err = p.stderr.decode(errors="replace")
        assert p.returncode >= 0, f"killed by signal {-p.returncode}; stderr {err[-1500:]!r}"
        assert "AddressSanitizer" not in err and "runtime error:" not in err, \
            f"sanitizer: {err[-3000:]}"
        bad = raw_control(p.stderr)
        assert not bad, f"raw control byte {bad!r} on stderr: {p.stderr[-600:]!r}"
        left = os.listdir(case)
        assert not left, f"files left in the run's directory: {left}"
        p.out, p.err = p.stdout.decode(errors="replace"), err
        return p


def ok_print(res):
    assert res.returncode == 0, f"exit {res.returncode}: {res.err[-1500:]}"
    assert res.err == "", f"stderr with --quiet: {res.err[-1500:]!r}"
    return res.out.splitlines()


def one_line_failure(res):
    """Exit 2, nothing on stdout, one line on stderr (--quiet): that line."""
    assert res.returncode == 2, f"exit {res.returncode}, stdout {res.out[:300]!r}, " \
                                f"stderr: {res.err[-1500:]!r}"
    assert res.out == "", f"stdout not empty: {res.out[:300]!r}"
    lines = res.err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {res.err[-1500:]!r}"
    assert lines[0].startswith("acme-tiny: "), f"stderr {lines[0]!r}"
    return lines[0]


def paste(ca, lines):
    """The printed lines into the CA's record store, as a zone would serve them."""
    zone = {}
    for line in lines:
        m = ZONE_LINE.match(line)
        assert m, f"not a zone-file TXT line: {line!r}"
        zone.setdefault("_validation-persist." + m[1], []).append(m[2])
    for name, values in zone.items():
        ca.set_record(name, values)
    return zone


def persist_urls(ca):
    with ca.dlock:
        return {f"{ca.base}/chal/{aid}/{PERSIST}" for aid, a in ca.authzs.items()
                if PERSIST in a["types"]}


def check_only_persist_posted(ca):
    posted = ca.posted()
    others = [u for u in posted if not u.endswith("/" + PERSIST)]
    assert not others, f"challenges other than dns-persist-01 POSTed: {others}"
    return posted


def stop(ca):
    alive = ca.stop()
    assert not alive, f"{alive} server threads still running after stop()"


# ---------------------------------------------------------------- cases

def hash_vector(suite):
    # the draft's test vector for the hashed accounturi ...
    got = account_hash("example.com", "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
                       "https://ca.example/acct/123")
    assert got == "5SQm7n6tPh2-PlLbCKGnViTXX5z19SCN4cPGQHSk-kw", got
    # ... whose thumbprint is RFC 7638's example (section 3.1), the CA's thumbprint code checked
    rfc7638 = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29", "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")}
    assert jwk_thumbprint(rfc7638) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    # the name is lowercased, a final dot dropped; the length octet counts
    assert account_hash("Example.COM.", "t", "u") == account_hash("example.com", "t", "u")
    assert account_hash("example.co", "t", "mu") != account_hash("example.com", "t", "u")


def print_case(mode, key="account_key"):
    def case(suite):
        with PersistCA(suite.keys, mode=mode) as ca:
            res = suite.run(ca, "--print-dns-persist", names=suite.csr_print,
                            key=getattr(suite, key))
            lines = ok_print(res)
            assert ca.count("newAccount") == 1, f"newAccount requests: {ca.steps()}"
            assert ca.count("newOrder") == 0, f"an order was created: {ca.steps()}"
            assert ca.count("other") == 0, f"requests for unknown resources: {ca.log}"
            url = ca.account_url(1)
            want = [ca.zone_line(NAME, url, True), ca.zone_line("www." + NAME, url),
                    ca.zone_line("wild." + NAME, url, True)]
            stop(ca)
        assert sorted(lines) == sorted(want), \
            "stdout:\n" + "\n".join(lines) + "\nexpected (in any order):\n" + "\n".join(want)
    return case


def print_draft01(suite):
    # a draft-01 CA (Pebble 2.10.1) names its issuer only in a challenge, which
    # --print-dns-persist never sees (it makes no order): one clear line, no order
    with PersistCA(suite.keys, mode=DRAFT01) as ca:
        line = one_line_failure(suite.run(ca, "--print-dns-persist"))
        assert line == "acme-tiny: " + NO_ISSUER, f"stderr {line!r} is not that of no issuer"
        assert ca.count("newOrder") == 0, f"an order was created: {ca.steps()}"
        stop(ca)


def print_uppercase(suite):
    # names are lowercased: in the line and in the hash
    with PersistCA(suite.keys, mode=DRAFT02) as ca:
        lines = ok_print(suite.run(ca, "--print-dns-persist",
                                   names=("--domains", "Example.COM,*.EXAMPLE.com")))
        want = [ca.zone_line(NAME, ca.account_url(1), True)]
        assert lines == want, f"stdout {lines}, expected {want}"
        stop(ca)


def issue(suite, ca, names):
    res = suite.run(ca, "--dns-persist", names=names)
    assert res.returncode == 0, f"exit {res.returncode}: {res.err[-1500:]}"
    assert PEM_CHAIN.fullmatch(res.out), f"stdout is not only PEM: {res.out[:300]!r}"
    assert res.err == "", f"stderr with --quiet: {res.err[-1500:]!r}"
    return res


def flow_case(mode, names=None):
    def case(suite):
        with PersistCA(suite.keys, mode=mode) as ca:
            n = names or suite.csr_both
            res = suite.run(ca, "--print-dns-persist", names=n)
            zone = paste(ca, ok_print(res))
            assert list(zone) == ["_validation-persist." + NAME], f"zone: {zone}"
            issue(suite, ca, n)
            posted = check_only_persist_posted(ca)
            want = persist_urls(ca)
            assert len(want) == 2 and sorted(posted) == sorted(want), \
                f"challenges POSTed: {posted}, expected each of {sorted(want)} once"
            assert all(ok for _, _, ok, _ in ca.validations), ca.validations
            assert ca.count("newAccount") == 2 and ca.count("newOrder") == 1, ca.steps()
            stop(ca)
    return case


LOOKS_FOR = "; the CA looks for "


def flow_draft01(suite):
    # no --print-dns-persist for a draft-01 CA: the user takes the record from
    # the failure line of the first run, example.com's, which carries
    # policy=wildcard since *.example.com is in the order too (one record for
    # both, as --print-dns-persist gives it), and the second run gets the
    # certificate: not a third, after a record without it for example.com
    with PersistCA(suite.keys, mode=DRAFT01) as ca:
        line = one_line_failure(suite.run(ca, "--dns-persist"))
        assert LOOKS_FOR in line, f"stderr {line!r} names no record"
        got = line.split(LOOKS_FOR)[-1]
        want = ca.zone_line(NAME, ca.account_url(1), True)
        assert got == want, f"record {got!r}, expected {want!r}"
        paste(ca, [got])
        issue(suite, ca, suite.csr_both)
        check_only_persist_posted(ca)
        assert ca.count("newOrder") == 2, ca.steps()
        assert [ok for _, _, ok, _ in ca.validations] == [False, False, True, True], \
            ca.validations
        stop(ca)


def failure_case(mode, csr, edit, wildcard, other_account=False):
    """--print-dns-persist (for draft-01, which has none, a first run's failure
    line), its lines changed by edit(lines) pasted (or, with
    other_account, another account's lines pasted as they are), then an
    issuance that must fail at the CA's check of the record: one line, ending
    with the record the CA looks for (that of the failing authorization)."""
    def case(suite):
        with PersistCA(suite.keys, mode=mode) as ca:
            names = getattr(suite, csr)
            key = suite.other_key if other_account else suite.account_key
            if mode == DRAFT01:     # no --print-dns-persist: the record of a failed run
                line = one_line_failure(suite.run(ca, "--dns-persist", key=key, names=names))
                assert LOOKS_FOR in line, f"stderr {line!r} names no record"
                lines = [line.split(LOOKS_FOR)[-1]]
            else:
                lines = ok_print(suite.run(ca, "--print-dns-persist", key=key, names=names))
            paste(ca, lines if other_account else edit(lines))
            res = suite.run(ca, "--dns-persist", names=names)
            url = ca.account_url(2 if other_account else 1)
            line = one_line_failure(res)
            tail = "; the CA looks for " + ca.zone_line(NAME, url, wildcard)
            assert line.endswith(tail), f"stderr {line!r}\ndoes not end with {tail!r}"
            check_only_persist_posted(ca)
            assert ca.validations and not all(ok for _, _, ok, _ in ca.validations), \
                f"the CA's checks: {ca.validations}"
            stop(ca)
    return case


def missing_case(mode):
    return failure_case(mode, "csr_single", lambda lines: [], False)


def other_account(mode):
    return failure_case(mode, "csr_single", None, False, other_account=True)


# example.com passes with its record, *.example.com must not
no_policy = failure_case(DRAFT02, "csr_both", lambda lines: [
    l.replace("; policy=wildcard", "") for l in lines], True)

persist_until_past = failure_case(DRAFT02, "csr_single", lambda lines: [
    l[:-1] + '; persistUntil=1000000000"' for l in lines], False)


def stale_error(suite):
    """A draft-01 CA whose dns-01 (before dns-persist-01) carries an error of
    an earlier attempt: the failure line gives dns-persist-01's reason and the
    record with its issuer, not the dns-01's."""
    with PersistCA(suite.keys, mode=DRAFT01, stale_error=True) as ca:
        line = one_line_failure(suite.run(ca, "--dns-persist", names=suite.csr_single))
        tail = LOOKS_FOR + ca.zone_line(NAME, ca.account_url(1))
        assert line.endswith(tail) and "stale" not in line, f"stderr {line!r}"
        stop(ca)


def no_persist_offered(suite):
    for bare, offers in ((NAME, "http-01, dns-01"), ("*." + NAME, "dns-01")):
        with PersistCA(suite.keys, mode=DRAFT02, no_persist={bare}) as ca:
            line = one_line_failure(suite.run(ca, "--dns-persist"))
            want = (f"acme-tiny: {bare}: the CA offers no dns-persist-01 challenge "
                    f"(it offers: {offers})")
            assert line == want, f"stderr {line!r}, expected {want!r}"
            assert ca.posted() == [], f"challenges POSTed: {ca.posted()}"
            stop(ca)


HOSTILE_ISSUERS = ['evil"ca.example', "evil;ca.example", "evil ca.example", "evil\tca.example",
                   "evil\x1b[31mca.example", "evil\nca.example", "evil\x7fca.example",
                   "evil\u009bca.example", "evil\\ca.example", ""]
HOSTILE_PREFIXES = ['x"y:', "x;y:", "x y:", "x\ty:", "x\ny:", "x\x1by:", "x\x7fy:", "x\u009by:",
                    "x\\y:"]
# raw in the Location header of newAccount (latin-1: \x9b is one raw byte)
HOSTILE_ACCOUNT_SUFFIXES = ['"x', ";x", " x", "\tx", "\x1bx", "\x7fx", "\x9bx", "\\x"]


UNFIT = "dns-persist-01: the CA's issuer name or account URI cannot go into a TXT record"
NO_ISSUER = ("dns-persist-01: the directory names no issuer (meta.issuerDomainNames or "
             "caaIdentities); --dns-persist's failure line gives the record")
NO_LOCATION = "newAccount: the server sent no usable Location (an https URL)"


def refusal(opts, value):
    """The line that refuses value: no issuer for an empty one; a space or control byte in
    the account URL is no URL (the Location check, before any record); else UNFIT."""
    if not value:
        return NO_ISSUER
    url = "account_suffix" in opts and any(c <= " " or c >= "\x7f" for c in value)
    return NO_LOCATION if url else UNFIT


def check_hostile(res, value, why):
    """One line, why (any line would also be that of a CA that fails for
    another reason), without the value; and no record offered to paste: one
    made of a value that cannot go into a TXT record (or of what is left of
    it once stderr's escaping went over it) is no record the CA accepts."""
    line = one_line_failure(res)
    assert line == "acme-tiny: " + why, f"{line!r} is not {why!r}"
    if value:
        assert value not in line, f"the hostile value {value!r} is in {line!r}"
    assert LOOKS_FOR not in line, f"a record made of {value!r} offered: {line!r}"
    return line


def each_hostile(suite, cases):
    """cases: (label, PersistCA options, client args, the hostile value); every
    one is run, and every one that fails is reported."""
    failures = []
    for label, opts, args, value in cases:
        with PersistCA(suite.keys, **opts) as ca:
            try:
                check_hostile(suite.run(ca, *args, names=suite.csr_single
                                        if args == ISSUE else None), value, refusal(opts, value))
            except AssertionError as e:
                failures.append(f"{label}: {e}")
            stop(ca)
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures)


PRINT = ("--print-dns-persist",)
ISSUE = ("--dns-persist",)


def hostile_directory(suite):
    each_hostile(suite, [(f"{mode} issuer {i!r}", dict(mode=mode, issuers=[i]), PRINT, i)
                         for mode in (DRAFT02, CAA) for i in HOSTILE_ISSUERS] +
                 [(f"accountHashPrefix {p!r}", dict(mode=DRAFT02, hash_prefix=p), PRINT, p)
                  for p in HOSTILE_PREFIXES])


def hostile_directory_issuance(suite):
    # the same values, met by an issuance (its failure line names the record)
    each_hostile(suite, [(f"issuer {i!r}", dict(mode=DRAFT02, issuers=[i]),
                          ISSUE, i) for i in HOSTILE_ISSUERS] +
                 [(f"accountHashPrefix {p!r}", dict(mode=DRAFT02, hash_prefix=p),
                   ISSUE, p) for p in HOSTILE_PREFIXES])


def hostile_challenge(suite):
    # draft-01: the issuer comes from the challenge; nothing in the record store
    each_hostile(suite, [(f"challenge issuer {i!r}", dict(mode=DRAFT01, issuers=[i]),
                          ISSUE, i) for i in HOSTILE_ISSUERS])


def hostile_account_url(suite):
    # the account URL is the accounturi of draft-01 and of a caaIdentities CA
    each_hostile(suite, [(f"account URL suffix {x!r}", dict(mode=CAA, account_suffix=x), PRINT, x)
                         for x in HOSTILE_ACCOUNT_SUFFIXES] +
                 [(f"draft-01 account URL suffix {x!r}", dict(mode=DRAFT01, account_suffix=x),
                   ISSUE, x) for x in HOSTILE_ACCOUNT_SUFFIXES])


CASES = [
    ("persist_hash_vector", hash_vector),
    ("persist_print_draft01", print_draft01),
    ("persist_print_uppercase", print_uppercase),
    ("persist_print_draft02", print_case(DRAFT02)),
    ("persist_print_draft02_rsa", print_case(DRAFT02, "rsa_key")),
    ("persist_print_caa", print_case(CAA)),
    ("persist_flow_draft01", flow_draft01),
    ("persist_flow_draft02", flow_case(DRAFT02)),
    ("persist_flow_caa", flow_case(CAA)),
    ("persist_flow_caa_domains", flow_case(CAA, ("--domains", f"*.{NAME},{NAME}"))),
    ("persist_missing_draft01", missing_case(DRAFT01)),
    ("persist_missing_draft02", missing_case(DRAFT02)),
    ("persist_missing_caa", missing_case(CAA)),
    ("persist_other_account_draft01", other_account(DRAFT01)),
    ("persist_other_account_draft02", other_account(DRAFT02)),
    ("persist_wildcard_no_policy", no_policy),
    ("persist_until_past", persist_until_past),
    ("persist_stale_error", stale_error),
    ("persist_not_offered", no_persist_offered),
    ("persist_hostile_directory", hostile_directory),
    ("persist_hostile_directory_issuance", hostile_directory_issuance),
    ("persist_hostile_challenge", hostile_challenge),
    ("persist_hostile_account_url", hostile_account_url),
]


def run(binary, report, only=None):
    run_cases(CASES, report, only, "test_dns_persist", lambda tmp: Suite(binary, tmp))
