"""The OpenWrt package (issue 16): openwrt/files/hook, the acme-common
provider, run as acme-common runs it: `hook get` under busybox sh, with a
bare environment of exactly what acme-common exports (procd's PATH, with a
directory of the test's in front that holds acme-tiny and a `logger` that
writes to a file), CERT_DIR, state_dir and CHALLENGE_DIR in a temporary root,
against a local Pebble. IPKG_INSTROOT, empty on a router, points the hook at
that root's /usr/lib/acme (a `notify` that records its events).

Also: the package's shell files are shellcheck-clean and parse under busybox
sh, and openwrt/Makefile's PKG_VERSION and PKG_RELEASE follow apk's rules and
match `acme-tiny --version`."""
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

from helpers import openssl, picked, scratch_dir
from pebble_env import Pebble, free_port
from persist_ca import DRAFT02, PersistCA
from test_dns_persist import NAME, ZONE_LINE, Suite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOK = os.path.join(REPO, "openwrt", "files", "hook")
PROCD_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
FILES = ("crt", "key", "fullchain.crt", "chain.crt", "combined.crt")

URLS = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt_test": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "zerossl": "https://acme.zerossl.com/v2/DV90",
    "google": "https://dv.acme-v02.api.pki.goog/directory",
    "actalis": "https://acme-api.actalis.com/acme/directory",
}


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


class Router:
    """A temporary root as a router has it, the hook's environment, and a
    way to run the hook. acme_tiny: the command that stands for /usr/bin/acme-tiny."""

    def __init__(self, tmp, acme_tiny, pebble=None):
        self.root = tempfile.mkdtemp(dir=tmp)
        self.p = pebble
        self.bin = os.path.join(self.root, "testbin")
        self.log = os.path.join(self.root, "syslog")
        self.events = os.path.join(self.root, "events")
        write(os.path.join(self.bin, "acme-tiny"), f'#!/bin/sh\nexec {acme_tiny} "$@"\n', 0o755)
        # logger as busybox's: -t TAG -p PRIO [--] [MESSAGE], else lines from stdin
        write(os.path.join(self.bin, "logger"),
              '#!/bin/sh\ntag=logger\nwhile [ $# -gt 0 ]; do case $1 in\n'
              '-t) tag=$2; shift 2 ;; -p) shift 2 ;; --) shift; break ;; *) break ;; esac; done\n'
              f'if [ $# -gt 0 ]; then echo "$tag: $*" >> {self.log}; else\n'
              f'while IFS= read -r l; do echo "$tag: $l" >> {self.log}; done; fi\n', 0o755)
        # the tools the hook uses, as OpenWrt has them: busybox applets, not GNU's
        for tool in ("awk", "cat", "mv", "ln", "readlink", "mkfifo", "rm", "rmdir", "mkdir",
                     "sleep"):
            os.symlink(shutil.which("busybox"), os.path.join(self.bin, tool))
        write(os.path.join(self.root, "usr/lib/acme/notify"),
              f'#!/bin/sh\necho "$1" >> {self.events}\n', 0o755)
        self.cert_dir = os.path.join(self.root, "etc/ssl/acme")
        self.state_dir = os.path.join(self.root, "etc/acme")
        self.challenge_dir = pebble.webroot if pebble else os.path.join(self.root, "challenge")

    def env(self, **options):
        """acme-common's environment for one section: every variable, empty when unset."""
        e = {k: "" for k in ("main_domain", "domains", "key_type", "acme_server", "staging",
                             "days", "cert_profile", "validation_method", "dns", "dns_wait",
                             "calias", "dalias", "listen_port", "account_email", "debug")}
        e.update(key_type="ec256", staging="0", validation_method="webroot",
                 account_email="admin@example.test", debug="0", state_dir=self.state_dir,
                 CHALLENGE_DIR=self.challenge_dir, CERT_DIR=self.cert_dir,
                 PATH=self.bin + ":" + PROCD_PATH, IPKG_INSTROOT=self.root)
        if self.p:
            e.update(acme_server=self.p.directory, ACME_TINY_CA_FILE=self.p.ca_file)
        e.update(options)
        e["main_domain"] = e["domains"].split()[0] if e["domains"] else ""
        return e

    def start(self, wrap=(), **options):
        return subprocess.Popen([*wrap, "busybox", "sh", HOOK, "get"], env=self.env(**options),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=self.root)

    def get(self, **options):
        p = self.start(**options)
        out, err = p.communicate(timeout=300)
        return p.returncode, out.decode() + err.decode()

    def syslog(self):
        return open(self.log).read() if os.path.exists(self.log) else ""

    def notified(self):
        return open(self.events).read().split() if os.path.exists(self.events) else []

    def path(self, main, ext):
        return os.path.join(self.cert_dir, f"{main}.{ext}")

    def snapshot(self, main):
        """Every file of a section, by name: link target, content, mode and mtime."""
        snap = {}
        for ext in FILES:
            link = self.path(main, ext)
            target = os.path.realpath(link)
            st = os.stat(target)
            snap[ext] = (os.readlink(link), open(target).read(), st.st_mode, st.st_mtime_ns)
        return snap


def check_files(r, main, key_kind="EC"):
    """The five files: links into the state directory, the leaf for the key, the
    chain verifying up to Pebble's root, the full chain, the key files 0600."""
    d = os.path.join(r.state_dir, "acme-tiny", main)
    for ext in FILES:
        link = r.path(main, ext)
        assert os.path.islink(link), f"{link} is not a link"
        assert os.path.realpath(link).startswith(d + "/"), f"{link} -> {os.readlink(link)}"
    leaf, key, full = r.path(main, "crt"), r.path(main, "key"), r.path(main, "fullchain.crt")
    chain, combined = r.path(main, "chain.crt"), r.path(main, "combined.crt")
    assert open(leaf).read().count("BEGIN CERTIFICATE") == 1, "the leaf: not one certificate"
    assert open(chain).read().count("BEGIN CERTIFICATE") >= 1, "the chain has no certificate"
    assert open(full).read() == open(leaf).read() + open(chain).read(), "fullchain != leaf+chain"
    assert open(combined).read() == open(full).read() + open(key).read(), "combined is not" \
        " the full chain, then the key"
    text = openssl("pkey", "-in", key, "-text", "-noout").stdout.decode()
    assert ("modulus:" in text) == (key_kind == "RSA"), f"{key}: not {key_kind}: {text[:80]}"
    pub_key = openssl("pkey", "-in", key, "-pubout").stdout
    pub_cert = openssl("x509", "-in", leaf, "-pubkey", "-noout").stdout
    assert pub_key == pub_cert, "the leaf is not for the key"
    root = os.path.join(r.root, "pebble-root.pem")
    write(root, r.p.management("/roots/0"))
    v = subprocess.run(["openssl", "verify", "-CAfile", root, "-untrusted", chain, leaf],
                       capture_output=True)
    assert v.returncode == 0, v.stderr.decode() + v.stdout.decode()
    for path in (key, combined):
        mode = stat.S_IMODE(os.stat(os.path.realpath(path)).st_mode)
        assert mode == 0o600, f"{path}: mode {oct(mode)}"
    return open(leaf).read()


def stub(r, script):
    """Puts a shell script in acme-tiny's place (the real CAs are not reachable here)."""
    write(os.path.join(r.bin, "acme-tiny"), "#!/bin/sh\n" + script, 0o755)


def fake_chain(n):
    """A full chain of n certificates, as PEM blocks: enough for the hook, which
    splits and joins them without reading them."""
    return "".join(f"-----BEGIN CERTIFICATE-----\nQ0VSVC{k}=\n-----END CERTIFICATE-----\n"
                   for k in range(n))


def issuing(chain, then=""):
    """A stub acme-tiny that makes the domain key if missing, writes chain as the
    certificate at --output, runs `then`, and exits 0."""
    return ('while [ $# -gt 0 ]; do case $1 in --output) out=$2 ;; --domain-key) key=$2 ;;'
            ' esac; shift; done\n'
            '[ -e "$key" ] || { umask 077; echo KEY > "$key"; }\n'
            f"cat > \"$out\" <<'END'\n{chain}END\n{then}exit 0\n")


def webroot_two_names(r):
    """Two names by webroot: the five files, `issued`, logged with the acme tag; a
    second run is not due: exit 0, nothing changed, no event, one line says so."""
    code, out = r.get(domains="two.openwrt.test www.two.openwrt.test")
    assert code == 0, out + r.syslog()
    check_files(r, "two.openwrt.test")
    assert r.notified() == ["issued"], r.notified()
    assert "acme-tiny: two.openwrt.test: certificate issued" in r.syslog(), r.syslog()
    san = openssl("x509", "-in", r.path("two.openwrt.test", "crt"), "-noout", "-ext",
                  "subjectAltName").stdout.decode()
    assert "DNS:two.openwrt.test" in san and "DNS:www.two.openwrt.test" in san, san
    before = r.snapshot("two.openwrt.test")
    code, out = r.get(domains="two.openwrt.test www.two.openwrt.test")
    assert code == 0, out + r.syslog()
    assert r.snapshot("two.openwrt.test") == before, "a run that was not due changed files"
    assert r.notified() == ["issued"], r.notified()
    assert "two.openwrt.test: the certificate is not due for renewal" in r.syslog()
    assert os.listdir(r.p.acme_dir) == [], os.listdir(r.p.acme_dir)


def replaces_other_provider(r):
    """Files another provider left in CERT_DIR for this name are replaced by links,
    also by a run whose certificate is not due; another name's files are left alone."""
    os.makedirs(r.cert_dir, exist_ok=True)
    for ext in FILES:
        write(r.path("other.openwrt.test", ext), "uacme's\n")
    os.symlink("/nonexistent/acme.sh/cert", r.path("other.openwrt.test", "crt.bak"))
    write(r.path("someone.else.test", "crt"), "keep me\n")
    code, out = r.get(domains="other.openwrt.test")
    assert code == 0, out + r.syslog()
    check_files(r, "other.openwrt.test")
    assert open(r.path("someone.else.test", "crt")).read() == "keep me\n"
    os.remove(r.path("other.openwrt.test", "crt"))     # and again, while ours is not due
    write(r.path("other.openwrt.test", "crt"), "uacme's\n")
    code, out = r.get(domains="other.openwrt.test")
    assert code == 0 and "not due" in r.syslog(), out + r.syslog()
    check_files(r, "other.openwrt.test")


def key_type_rsa2048(r):
    """key_type rsa2048: an RSA domain key, and a new certificate when it changes."""
    code, out = r.get(domains="rsa.openwrt.test", key_type="rsa2048")
    assert code == 0, out + r.syslog()
    check_files(r, "rsa.openwrt.test", "RSA")
    code, out = r.get(domains="rsa.openwrt.test", key_type="ec384")
    assert code == 0, out + r.syslog()
    check_files(r, "rsa.openwrt.test", "EC")
    assert r.notified() == ["issued", "renewed"], r.notified()


def new_names_or_server(r):
    """A name added, or another server (here Pebble by its IP address, another
    URL): a new certificate at once, `renewed`, though the old one is not due."""
    code, out = r.get(domains="change.openwrt.test")
    assert code == 0, out + r.syslog()
    first = check_files(r, "change.openwrt.test")
    code, out = r.get(domains="change.openwrt.test new.change.openwrt.test")
    assert code == 0, out + r.syslog()
    second = check_files(r, "change.openwrt.test")
    assert second != first and r.notified() == ["issued", "renewed"], r.notified()
    code, out = r.get(domains="change.openwrt.test new.change.openwrt.test",
                      acme_server=r.p.directory.replace("localhost", "127.0.0.1"))
    assert code == 0, out + r.syslog()
    assert check_files(r, "change.openwrt.test") != second
    assert r.notified() == ["issued", "renewed", "renewed"], r.notified()


def files_after_a_failed_run(r):
    """A run whose certificate came but whose files could not be made (awk fails
    here; a full disk, SIGTERM or a power cut there): `issue-failed`; the next
    run, though the certificate is not due, makes and links the five files, and
    says so to acme-common (the web servers load them); the one after, nothing."""
    awk = os.path.join(r.bin, "awk")
    os.remove(awk)
    write(awk, "#!/bin/sh\nexit 1\n", 0o755)
    code, out = r.get(domains="half.openwrt.test")
    assert code == 1, out + r.syslog()
    assert r.notified() == ["issue-failed"], r.notified()
    os.remove(awk)
    os.symlink(shutil.which("busybox"), awk)
    code, out = r.get(domains="half.openwrt.test")
    assert code == 0, out + r.syslog()
    check_files(r, "half.openwrt.test")
    assert r.notified() == ["issue-failed", "renewed"], r.notified()
    code, out = r.get(domains="half.openwrt.test")
    assert code == 0 and r.notified() == ["issue-failed", "renewed"], r.notified()


def stale_files_made_again(r):
    """A run that is not due but finds the leaf, or the combined file, older than
    the full chain (a power cut between acme-tiny's writing it and the hook's
    making them), or a link that another provider put back: makes or links them
    and runs `renewed`, though every link already pointed right."""
    main = "stale.openwrt.test"
    d = os.path.join(r.state_dir, "acme-tiny", main)
    code, out = r.get(domains=main)
    assert code == 0, out + r.syslog()
    events = ["issued"]
    for name in ("cert.crt", "combined.crt"):
        write(os.path.join(d, name), fake_chain(1), 0o600)
        code, out = r.get(domains=main)
        assert code == 0 and "not due" in r.syslog(), out + r.syslog()
        check_files(r, main)
        events.append("renewed")
        assert r.notified() == events, f"{name}: {r.notified()}"
    os.remove(r.path(main, "chain.crt"))
    write(r.path(main, "chain.crt"), "uacme's\n")
    code, out = r.get(domains=main)
    assert code == 0, out + r.syslog()
    check_files(r, main)
    assert r.notified() == events + ["renewed"], r.notified()


def failure_keeps_files(r):
    """An unreachable CA: exit 1, `renew-failed`, the old files untouched, the reason
    logged with acme-tiny's line."""
    code, out = r.get(domains="keep.openwrt.test")
    assert code == 0, out + r.syslog()
    before = r.snapshot("keep.openwrt.test")
    code, out = r.get(domains="keep.openwrt.test", acme_server="https://127.0.0.1:9/dir")
    assert code == 1, f"exit {code}: {out}{r.syslog()}"
    assert r.notified() == ["issued", "renew-failed"], r.notified()
    assert r.snapshot("keep.openwrt.test") == before
    log = r.syslog()
    assert re.search(r"acme-tiny: acme-tiny: directory: .*127\.0\.0\.1", log), log
    assert "keep.openwrt.test: acme-tiny failed" in log, log


def two_sections_at_once(r):
    """Two sections started together share one new account key (the loser of the
    race to make it uses the winner's); both get their certificate."""
    procs = [r.start(domains=f"{n}.both.openwrt.test") for n in ("one", "two")]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out.decode() + err.decode() + r.syslog()
    for n in ("one", "two"):
        check_files(r, f"{n}.both.openwrt.test")
    state = os.path.join(r.state_dir, "acme-tiny")
    keys = [f for f in os.listdir(state) if f.endswith(".key")]
    assert keys == ["account.key"], keys
    assert sorted(r.notified()) == ["issued", "issued"], r.notified()


def sigterm_during_validation(r, tmp):
    """SIGTERM to the hook while validation waits (a dns-01 hook of the user's, as
    credential ACME_TINY_HOOK, that sleeps in begin): acme-tiny hears it, the
    user's hook is told `failed`, the run ends within procd's 5 seconds with exit 1
    and `issue-failed`."""
    calls = os.path.join(r.root, "dns-calls")
    user_hook = os.path.join(r.root, "dns-hook")
    write(user_hook, f'#!/bin/sh\necho "$1 $2 $3" >> {calls}\n'
                     '[ "$2" = dns-01 ] || exit 1\n[ "$1" = begin ] && sleep 60\nexit 0\n', 0o755)
    p = r.start(domains="term.openwrt.test", validation_method="dns", ACME_TINY_HOOK=user_hook)
    deadline = time.time() + 60
    while not (os.path.exists(calls) and "begin dns-01" in open(calls).read()):
        assert time.time() < deadline and p.poll() is None, "the hook's begin never ran"
        time.sleep(0.05)
    start = time.time()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert time.time() - start < 5, f"took {time.time() - start:.1f} s"
    assert p.returncode == 1, out.decode() + err.decode()
    lines = open(calls).read().splitlines()
    assert lines[-1] == "failed dns-01 term.openwrt.test", lines
    assert r.notified() == ["issue-failed"], r.notified()
    assert not os.path.exists(r.path("term.openwrt.test", "crt"))


def stray_child_of_dns_hook(r):
    """A dns-01 hook of the user's that declines but leaves a child running, which
    holds the log's fifo open: the run ends at once with `issue-failed`, not when
    that child does (20 s later), so procd's next renew of the section is not lost."""
    user_hook = os.path.join(r.root, "dns-hook")
    write(user_hook, "#!/bin/sh\nsleep 20 &\nexit 1\n", 0o755)
    start = time.time()
    code, out = r.get(domains="stray.openwrt.test", validation_method="dns",
                      ACME_TINY_HOOK=user_hook)
    assert code == 1, out + r.syslog()
    assert time.time() - start < 10, f"took {time.time() - start:.1f} s"
    assert "the hook declined every challenge" in r.syslog(), r.syslog()
    assert r.notified() == ["issue-failed"], r.notified()


def dns_persist(binary, tmp):
    """dns-persist: a first run without the record fails, logging the record the CA
    wants (from --print-dns-persist); with it set, as a user would paste that line
    into the zone, the next run gets the certificate (tests/persist_ca.py, draft-02)."""
    suite = Suite(binary, tempfile.mkdtemp(dir=tmp))
    with PersistCA(suite.keys, mode=DRAFT02) as ca:
        r = Router(tmp, binary)
        options = dict(domains=f"{NAME} *.{NAME}", validation_method="dns-persist",
                       acme_server=ca.directory, ACME_TINY_CA_FILE=suite.ca_file)
        # the CA's certificate is for this key: the section's domain key
        d = os.path.join(r.state_dir, "acme-tiny", NAME)
        os.makedirs(d)
        shutil.copy(suite.domain_key, os.path.join(d, "p256.key"))
        code, out = r.get(**options)
        assert code == 1, out + r.syslog()
        records = [line.split(": ", 1)[1] for line in r.syslog().splitlines()
                   if "_validation-persist." in line and "looks for" not in line]
        assert records == [ca.zone_line(NAME, ca.account_url(1), True)], r.syslog()
        for line in records:
            m = ZONE_LINE.match(line)
            ca.set_record("_validation-persist." + m[1], [m[2]])
        code, out = r.get(**options)
        assert code == 0, out + r.syslog()
        assert r.notified() == ["issue-failed", "issued"], r.notified()
        assert os.path.islink(r.path(NAME, "fullchain.crt"))
        ca.stop()


def standalone(r):
    """standalone: busybox httpd (there is no uhttpd here) serves CHALLENGE_DIR on
    listen_port, Pebble's http-01 port, for the run only."""
    assert shutil.which("uhttpd", path=r.env()["PATH"]) is None
    port = r.p.config["httpPort"]
    # acme-common's firewall functions, as a stub that says what was asked of it
    nft = os.path.join(r.root, "nft")
    write(os.path.join(r.root, "usr/lib/acme/functions.sh"),
          f'add_nft_rule() {{ echo "add $1 $2" >> {nft}; echo "handle 7"; }}\n'
          f'del_nft_rule() {{ echo "del $NFT_HANDLE" >> {nft}; }}\n')
    code, out = r.get(domains="alone.openwrt.test", validation_method="standalone",
                      listen_port=str(port))
    assert code == 0, out + r.syslog()
    check_files(r, "alone.openwrt.test")
    assert open(nft).read() == f"add alone.openwrt.test {port}\ndel handle 7\n"
    os.remove(nft)      # and on a failure: the rule is closed too
    code, out = r.get(domains="alone.openwrt.test", validation_method="standalone",
                      listen_port=str(port), acme_server="https://127.0.0.1:9/dir")
    assert code == 1, out + r.syslog()
    assert open(nft).read() == f"add alone.openwrt.test {port}\ndel handle 7\n"
    with socket.socket() as s:
        s.settimeout(2)
        listening = s.connect_ex(("127.0.0.1", port)) == 0
    assert not listening, f"something still listens on {port}: the server was not stopped"


def wait_line(path, p, seconds, pause=0.02):
    """Waits until the stub acme-tiny has written its whole line to path (it sets its trap
    first: it is ready for SIGTERM then). The file alone is not enough: the shell opens it
    for >> (there it is, empty) before it writes, and a SIGTERM meanwhile leaves it empty."""
    deadline = time.time() + seconds
    while True:
        if os.path.exists(path):
            with open(path) as f:
                if f.read().endswith("\n"):
                    return
        assert time.time() < deadline and p.poll() is None, "acme-tiny never ran"
        time.sleep(pause)


def sigterm_before_acme_tiny(tmp):
    """SIGTERM while standalone's server starts, before acme-tiny runs: exit 1
    at once, acme-tiny never run, the server stopped (the EXIT trap)."""
    r = Router(tmp, "false")
    ran = os.path.join(r.root, "ran")
    write(os.path.join(r.bin, "acme-tiny"), f'#!/bin/sh\ntouch {ran}\nexit 1\n', 0o755)
    port = free_port()
    p = r.start(domains="early.openwrt.test", validation_method="standalone",
                listen_port=str(port))
    deadline = time.time() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert time.time() < deadline and p.poll() is None, "the server never listened"
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1, f"exit {p.returncode}: {out.decode()}{err.decode()}{r.syslog()}"
    assert not os.path.exists(ran), "acme-tiny ran after SIGTERM"
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"


def sigterm_dns_persist(tmp):
    """SIGTERM while acme-tiny validates by dns-persist (a stub that waits here):
    the run ends, `issue-failed`, without asking the CA again for the records to
    log (procd's SIGKILL follows in 5 s)."""
    r = Router(tmp, "false")
    calls = os.path.join(r.root, "calls")
    write(os.path.join(r.bin, "acme-tiny"), "#!/bin/sh\ntrap 'exit 2' TERM\n"
          f'echo "$*" >> {calls}\nsleep 5 </dev/null >/dev/null 2>&1 &\nwait $!\nexit 2\n', 0o755)
    p = r.start(domains="persist-term.openwrt.test", validation_method="dns-persist")
    wait_line(calls, p, 10)
    start = time.time()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1, f"exit {p.returncode}: {out.decode()}{err.decode()}{r.syslog()}"
    assert time.time() - start < 4, f"took {time.time() - start:.1f} s"
    runs = open(calls).read().splitlines()
    assert len(runs) == 1 and "--print-dns-persist" not in runs[0], runs
    assert "needs these TXT records" not in r.syslog(), r.syslog()
    assert r.notified() == ["issue-failed"], r.notified()


def sigterm_before_pid(tmp):
    """SIGTERM after acme-tiny is started but before the hook has its PID (strace
    holds each fork of the hook's shell 0.3 s): acme-tiny still hears it, and the
    run ends as a failure (issue-failed), not silently with acme-tiny left running."""
    r = Router(tmp, "false")
    calls = os.path.join(r.root, "calls")
    write(os.path.join(r.bin, "acme-tiny"), "#!/bin/sh\ntrap 'exit 2' TERM\n"
          f'echo $$ >> {calls}\nsleep 5 </dev/null >/dev/null 2>&1 &\nwait $!\nexit 2\n', 0o755)
    forks = "clone,clone3,fork,vfork"   # whichever the C library's fork() makes
    p = r.start(["strace", "-o", "/dev/null", "-e", "trace=" + forks, "-e",
                 f"inject={forks}:delay_exit=300000"], domains="race.openwrt.test",
                validation_method="dns-persist")
    wait_line(calls, p, 30, pause=0.01)
    hook = int(open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()[0])
    os.kill(hook, signal.SIGTERM)       # while the hook's fork of acme-tiny is held
    start = time.time()
    out, err = p.communicate(timeout=30)
    took = time.time() - start  # about 2 s (strace holds forks); 6 if not passed on
    stub = int(open(calls).read().split()[0])
    alive = os.path.exists(f"/proc/{stub}")
    if alive:
        os.kill(stub, signal.SIGKILL)
    assert p.returncode == 1, f"exit {p.returncode}: {out.decode()}{err.decode()}{r.syslog()}"
    assert not alive, "acme-tiny was left running"
    assert took < 5, f"took {took:.1f} s: acme-tiny did not hear SIGTERM"
    assert r.notified() == ["issue-failed"], r.notified()


def standalone_port_taken(r):
    """standalone on a port that is taken (uhttpd serving LuCI on 80, here the
    webroot server): exit 1 with the hint to use webroot, nothing asked of the CA."""
    code, out = r.get(domains="taken.openwrt.test", validation_method="standalone",
                      listen_port=str(r.p.http_port))
    assert code == 1, out + r.syslog()
    assert "use validation_method webroot" in r.syslog(), r.syslog()
    assert r.notified() == ["issue-failed"], r.notified()


def args_of(tmp, before=None, **options):
    """Runs the hook with a stub acme-tiny that records its arguments and exits 1
    (not due): exit status, the arguments (None if it did not run), the Router."""
    r = Router(tmp, "false")
    write(os.path.join(r.root, "glob.stub.openwrt.test"), "")  # *.stub... is no pattern
    if before:
        before(r)
    rec = os.path.join(r.root, "args")
    write(os.path.join(r.bin, "acme-tiny"),
          f'#!/bin/sh\nprintf "%s\\n" "$@" > {rec}\nexit 1\n', 0o755)
    options.setdefault("domains", "stub.openwrt.test *.stub.openwrt.test")
    code, out = r.get(**options)
    return code, (open(rec).read().split("\n")[:-1] if os.path.exists(rec) else None), r


def flag(args, name):
    """The value of flag name in args (--name VALUE or --name=VALUE), or None."""
    for k, a in enumerate(args):
        if a == name:
            return args[k + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None


def options_to_flags(tmp):
    """acme_server aliases, staging, key_type, days, cert_profile, credentials and the
    validation methods become acme-tiny's flags (a stub acme-tiny records them:
    the real CAs are not reachable here); unknown methods fail before it runs."""
    cases = [({}, URLS["letsencrypt"]), ({"staging": "1"}, URLS["letsencrypt_test"]),
             ({"acme_server": "letsencrypt", "staging": "1"}, URLS["letsencrypt_test"])]
    cases += [({"acme_server": a}, u) for a, u in URLS.items()]
    cases += [({"acme_server": "https://ca.lan:9000/acme/acme/directory"},
               "https://ca.lan:9000/acme/acme/directory")]
    for options, url in cases:
        code, args, r = args_of(tmp, **options)
        assert code == 0 and args, f"{options}: exit {code} {r.syslog()}"
        assert flag(args, "--directory-url") == url, f"{options}: {args}"
    code, args, r = args_of(tmp, key_type="ec384", days="20", cert_profile="shortlived",
                            ACME_TINY_CA_FILE="/etc/my ca.pem", ACME_TINY_EAB_KID="kid",
                            ACME_TINY_EAB_HMAC_KEY="c2VjcmV0", debug="1")
    assert flag(args, "--key-type") == "p384" and flag(args, "--days") == "20", args
    assert flag(args, "--profile") == "shortlived", args
    assert flag(args, "--ca-file") == "/etc/my ca.pem", args
    assert flag(args, "--eab-kid") == "kid" and flag(args, "--eab-hmac-key") == "c2VjcmV0"

    assert flag(args, "--domains") == "stub.openwrt.test,*.stub.openwrt.test", args
    assert flag(args, "--contact") == "mailto:admin@example.test", args
    assert "--quiet" not in args and "--disable-check" in args, args
    assert flag(args, "--acme-dir") == r.challenge_dir + "/.well-known/acme-challenge", args
    assert os.path.isdir(flag(args, "--acme-dir")), "webroot: the hook made no --acme-dir"

    def has_cert(server):
        def before(r):
            d = os.path.join(r.state_dir, "acme-tiny", "stub.openwrt.test")
            os.makedirs(d)
            write(os.path.join(d, "fullchain.crt"), "")
            write(os.path.join(d, "server"), server + "\n")
        return before
    eab = {"ACME_TINY_EAB_KID": "kid", "ACME_TINY_EAB_HMAC_KEY": "c2VjcmV0"}
    # the key shows in the process list: once the section has a certificate from this
    # CA, its account exists, and the flags are left out (for another CA, not)
    code, args, r = args_of(tmp, before=has_cert(URLS["letsencrypt"]), **eab)
    assert flag(args, "--eab-kid") is None and flag(args, "--eab-hmac-key") is None, args
    assert "--force" not in args, args
    code, args, r = args_of(tmp, before=has_cert(URLS["zerossl"]), **eab)
    assert flag(args, "--eab-hmac-key") == "c2VjcmV0" and "--force" in args, args
    code, args, r = args_of(tmp, days="0")       # LuCI allows 0: acme-tiny's own rule then
    assert code == 0 and "--days" not in args, args
    code, args, r = args_of(tmp, validation_method="dns-persist")
    assert "--dns-persist" in args and "--acme-dir" not in args and "--quiet" in args, args
    code, args, r = args_of(tmp, validation_method="dns",
                            ACME_TINY_HOOK="/etc/acme/my-dns-hook")
    assert flag(args, "--hook") == "/etc/acme/my-dns-hook", args
    for method, why in (("dns", "ACME_TINY_HOOK"), ("alpn", "supports webroot")):
        code, args, r = args_of(tmp, validation_method=method)
        assert code == 1 and args is None, f"{method}: {code} {args}"
        assert why in r.syslog(), r.syslog()
        assert r.notified() == ["issue-failed"], r.notified()
    # an acme.sh name acme-tiny does not know
    code, args, r = args_of(tmp, acme_server="buypass")
    assert code == 1 and args is None and "acme_server buypass" in r.syslog(), r.syslog()
    code, args, r = args_of(tmp, key_type="ec521")
    assert code == 1 and args is None and "key_type ec521" in r.syslog(), r.syslog()
    code, args, r = args_of(tmp, account_email="")
    assert code == 1 and args is None and "account_email is required" in r.syslog(), r.syslog()
    for main in ("../up.openwrt.test", ".."):   # the first name names the state directory
        code, args, r = args_of(tmp, domains=main)
        assert code == 1 and args is None and "cannot name the files" in r.syslog(), r.syslog()


def eab_values_dashed(binary, tmp):
    """EAB's KID and key are base64url (ZeroSSL's KIDs too), so either may begin
    with --: the hook passes them as --flag=VALUE, which acme-tiny's own parser
    takes (it reads --eab-kid --x as a missing value); --version ends the parse."""
    code, args, r = args_of(tmp, ACME_TINY_EAB_KID="--kid", ACME_TINY_EAB_HMAC_KEY="--c2Vj")
    assert flag(args, "--eab-kid") == "--kid" and flag(args, "--eab-hmac-key") == "--c2Vj", args
    res = subprocess.run([binary, *args, "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("acme-tiny "), (args, res.stderr)


def key_type_flags(tmp):
    """Each key_type becomes its --key-type and a domain key of its own, named by
    it; an empty key_type is ec256's p256 (a stub acme-tiny records its flags)."""
    for key_type, name in (("ec256", "p256"), ("", "p256"), ("ec384", "p384"),
                           ("rsa2048", "rsa2048"), ("rsa3072", "rsa3072"),
                           ("rsa4096", "rsa4096")):
        code, args, r = args_of(tmp, key_type=key_type)
        assert code == 0 and flag(args, "--key-type") == name, f"{key_type!r}: {args}"
        key = os.path.join(r.state_dir, "acme-tiny", "stub.openwrt.test", name + ".key")
        assert flag(args, "--domain-key") == key, f"{key_type!r}: {args}"


def refused_options(tmp):
    """What the hook refuses before acme-tiny runs, with `issue-failed`: an
    acme_server URL that is not https://, a first name with a '/' in it (it
    names the state directory, here one outside acme-tiny's); and names that
    come with commas as well as spaces are joined by one comma each."""
    code, args, r = args_of(tmp, acme_server="http://ca.lan/directory")
    assert code == 1 and args is None, f"{code} {args}"
    assert "acme_server http://ca.lan/directory" in r.syslog(), r.syslog()
    assert r.notified() == ["issue-failed"], r.notified()
    code, args, r = args_of(tmp, domains="up/../../../out.openwrt.test")
    assert code == 1 and args is None and "cannot name the files" in r.syslog(), r.syslog()
    assert not os.path.exists(os.path.join(r.root, "etc", "out.openwrt.test"))
    code, args, r = args_of(tmp, domains="stub.openwrt.test www.stub.openwrt.test,"
                                         " mail.stub.openwrt.test")
    names = "stub.openwrt.test,www.stub.openwrt.test,mail.stub.openwrt.test"
    assert code == 0 and flag(args, "--domains") == names, args


def unset_options_no_flags(tmp):
    """Options and credentials left unset add no flag: no --ca-file (acme-tiny
    trusts its own roots; an empty one would fail every run), no --days,
    --profile or EAB flags."""
    code, args, r = args_of(tmp, ACME_TINY_CA_FILE="")
    assert code == 0 and args, f"exit {code}: {r.syslog()}"
    for name in ("--ca-file", "--days", "--profile", "--eab-kid", "--eab-hmac-key"):
        assert flag(args, name) is None, f"{name}: {args}"


def standalone_uhttpd(tmp):
    """standalone where uhttpd is installed: uhttpd, not busybox httpd, serves
    CHALLENGE_DIR in the foreground, on port 80 when listen_port is empty, and
    is stopped when the run ends (a stub uhttpd records how it was started)."""
    r = Router(tmp, "false")
    stub(r, "exit 1\n")                         # not due: the run ends at once
    rec, pid = os.path.join(r.root, "uhttpd-args"), os.path.join(r.root, "uhttpd-pid")
    write(os.path.join(r.bin, "uhttpd"), f'#!/bin/sh\necho "$*" > {rec}\necho $$ > {pid}\n'
          "exec sleep 30 </dev/null >/dev/null 2>&1\n", 0o755)
    code, out = r.get(domains="uhttpd.openwrt.test", validation_method="standalone",
                      listen_port="")
    assert code == 0, out + r.syslog()
    assert open(rec).read() == f"-f -p 80 -h {r.challenge_dir}\n", open(rec).read()
    server = int(open(pid).read())
    deadline = time.time() + 5
    while os.path.exists(f"/proc/{server}"):
        assert time.time() < deadline, f"uhttpd ({server}) still runs after the run"
        time.sleep(0.05)


def account_lock(tmp):
    """Sections started together while there is no account key take turns: the
    one that makes the key runs acme-tiny alone, and the lock is gone after it.
    A lock that a run cut short left behind is waited for 60 s, then taken over
    and removed (`sleep` is a stub here that returns at once and counts)."""
    r = Router(tmp, "false")
    calls = os.path.join(r.root, "calls")
    stub(r, 'while [ $# -gt 0 ]; do [ "$1" = --account-key ] && key=$2; shift; done\n'
            f'echo start >> {calls}\nsleep 1\n: > "$key"\necho end >> {calls}\nexit 1\n')
    start = time.time()
    procs = [r.start(domains=f"{n}.lock.openwrt.test") for n in ("one", "two")]
    for p in procs:
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, out.decode() + err.decode() + r.syslog()
    assert time.time() - start < 10, f"took {time.time() - start:.1f} s"
    assert open(calls).read().split() == ["start", "end", "start", "end"], open(calls).read()
    state = os.path.join(r.state_dir, "acme-tiny")
    assert sorted(os.listdir(state)) == ["account.key", "one.lock.openwrt.test",
                                         "two.lock.openwrt.test"], os.listdir(state)

    r = Router(tmp, "false")
    stub(r, f"echo ran > {calls}\nexit 1\n")
    sleeps = os.path.join(r.root, "sleeps")
    os.remove(os.path.join(r.bin, "sleep"))
    write(os.path.join(r.bin, "sleep"), f'#!/bin/sh\necho "$*" >> {sleeps}\n', 0o755)
    os.makedirs(os.path.join(r.state_dir, "acme-tiny", ".account-lock"))
    p = r.start(domains="stale.lock.openwrt.test")
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError("the run still waits for the lock after 30 s") from None
    assert p.returncode == 0, out.decode() + err.decode() + r.syslog()
    waits = open(sleeps).read().split().count("1")
    assert waits == 60 and open(calls).read() == "ran\n", f"{waits} waits"
    # ...and then taken over, and gone with the run that took it
    assert not os.path.exists(os.path.join(r.state_dir, "acme-tiny", ".account-lock"))


def sigterm_as_acme_tiny_ends(tmp):
    """SIGTERM that comes as acme-tiny ends with its certificate written (a stub
    that, told TERM, takes 1 s more and exits 0): the hook waits for it and
    goes by its exit status, not by the signal's: the files made, `issued`,
    exit 0."""
    r = Router(tmp, "false")
    main = "term-end.openwrt.test"
    ended, waiting = os.path.join(r.root, "ended"), os.path.join(r.root, "waiting")
    stub(r, "exec >/dev/null\n" + issuing(fake_chain(2), (
        "trap 'kill $!; sleep 1; touch %s; exit 0' TERM\n"
        "sleep 30 </dev/null >/dev/null 2>&1 &\ntouch %s\nwait $!\n") % (ended, waiting)))
    p = r.start(domains=main)
    deadline = time.time() + 10
    while not os.path.exists(waiting):
        assert time.time() < deadline and p.poll() is None, "acme-tiny never ran"
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert os.path.exists(ended), "the hook ended before acme-tiny did"
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, f"exit {p.returncode}: {out.decode()}{err.decode()}{r.syslog()}"
    assert r.notified() == ["issued"], r.notified()
    assert open(r.path(main, "crt")).read() == fake_chain(1)
    assert open(r.path(main, "fullchain.crt")).read() == fake_chain(2)


def sigint_sighup(tmp):
    """SIGINT (a run started by hand, then Ctrl-C) or SIGHUP while acme-tiny runs:
    as SIGTERM, acme-tiny is told TERM and the run ends with exit 1,
    `issue-failed`."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        r = Router(tmp, "false")
        told, waiting = os.path.join(r.root, "told"), os.path.join(r.root, "waiting")
        stub(r, f"trap 'kill $!; touch {told}; exit 2' TERM\n"
                f"sleep 30 </dev/null >/dev/null 2>&1 &\ntouch {waiting}\nwait $!\nexit 2\n")
        # a shell cannot trap a signal it was started with ignored, as a runner
        # started with & (SIGINT) or nohup (SIGHUP) would pass it on: not ignored here
        old = signal.signal(sig, signal.SIG_DFL)
        try:
            p = r.start(domains="sig.openwrt.test")
        finally:
            signal.signal(sig, old)
        deadline = time.time() + 10
        while not os.path.exists(waiting):
            assert time.time() < deadline and p.poll() is None, "acme-tiny never ran"
            time.sleep(0.02)
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 1, f"{sig!r}: exit {p.returncode}: {out.decode()}{err.decode()}"
        assert os.path.exists(told), f"{sig!r}: acme-tiny was not told TERM"
        assert r.notified() == ["issue-failed"], r.notified()


def one_certificate_chain(tmp):
    """A CA that sends the leaf alone (no chain): the leaf file is the full chain,
    the chain file is empty, the combined file the leaf then the key; `issued`."""
    r = Router(tmp, "false")
    main = "leaf-only.openwrt.test"
    stub(r, issuing(fake_chain(1)))
    code, out = r.get(domains=main)
    assert code == 0, out + r.syslog()
    assert open(r.path(main, "crt")).read() == fake_chain(1)
    assert open(r.path(main, "chain.crt")).read() == ""
    assert open(r.path(main, "combined.crt")).read() == fake_chain(1) + "KEY\n"
    assert r.notified() == ["issued"], r.notified()


def link_fails(tmp):
    """A link the hook cannot make in CERT_DIR (ln fails, a stub here): exit 1,
    `issue-failed`, the reason logged; not `issued`."""
    r = Router(tmp, "false")
    stub(r, issuing(fake_chain(2)))
    os.remove(os.path.join(r.bin, "ln"))
    write(os.path.join(r.bin, "ln"), "#!/bin/sh\nexit 1\n", 0o755)
    code, out = r.get(domains="nolink.openwrt.test")
    assert code == 1, out + r.syslog()
    assert "cannot link" in r.syslog(), r.syslog()
    assert r.notified() == ["issue-failed"], r.notified()


def log_fifo_private(tmp):
    """acme-tiny's stderr goes to syslog through a fifo that only root may open
    (mode 0600), removed when the run ends."""
    r = Router(tmp, "false")
    rec = os.path.join(r.root, "mode")
    stub(r, f"stat -L -c %a /proc/self/fd/2 > {rec}\nexit 1\n")
    code, out = r.get(domains="fifo.openwrt.test")
    assert code == 0, out + r.syslog()
    assert open(rec).read() == "600\n", open(rec).read()
    d = os.path.join(r.state_dir, "acme-tiny", "fifo.openwrt.test")
    assert os.listdir(d) == [], os.listdir(d)


def shell_files():
    """Every shell file the package ships: shellcheck-clean, and busybox sh parses it."""
    s = subprocess.run(["shellcheck", "-s", "sh", HOOK], capture_output=True, text=True)
    assert s.returncode == 0, s.stdout + s.stderr
    s = subprocess.run(["busybox", "sh", "-n", HOOK], capture_output=True, text=True)
    assert s.returncode == 0, s.stderr
    assert os.access(HOOK, os.X_OK), "the hook is not executable"


def package_version(binary):
    """PKG_VERSION by apk's rules (no '-', no 'v'), PKG_RELEASE an integer, and
    `acme-tiny --version` prints PKG_VERSION; the BearSSL release's published hash."""
    mk = open(os.path.join(REPO, "openwrt", "Makefile")).read()
    version = re.search(r"^PKG_VERSION:=(.*)$", mk, re.M)[1]
    release = re.search(r"^PKG_RELEASE:=(.*)$", mk, re.M)[1]
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)*", version), version
    assert re.fullmatch(r"[0-9]+", release), release
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    assert out == f"acme-tiny {version}\n", out
    assert "PKG_HASH:=6705bba1714961b41a728dfc5debbe348d2966c117649392f8c8139efc83ff14" in mk
    assert re.search(r"^\s*PROVIDES:=@acme$", mk, re.M) and "DEPENDS:=+acme-common" in mk


def package_unpack(tmp):
    """BearSSL unpacks into the build directory itself: the Makefile's TAR_CMD
    is the one in force after package.mk, whose unpack.mk sets TAR_OPTIONS and
    TAR_CMD unconditionally (as here, in a stand-in for the SDK's)."""
    d = tempfile.mkdtemp(dir=tmp)
    os.mkdir(os.path.join(d, "include"))
    open(os.path.join(d, "rules.mk"), "w").close()
    with open(os.path.join(d, "include", "package.mk"), "w") as f:
        f.write("TAR_OPTIONS:=-xf -\nTAR_CMD=$(HOST_TAR) -C $(1)/.. $(TAR_OPTIONS)\n")
    res = subprocess.run(["make", "-s", "-f", os.path.join(REPO, "openwrt", "Makefile"),
                          f"TOPDIR={d}", f"INCLUDE_DIR={d}/include", "HOST_TAR=tar",
                          "--eval", "show: ; @echo $(call TAR_CMD,/build/acme-tiny)", "show"],
                         capture_output=True, text=True, cwd=d)
    assert res.stdout == "tar -C /build/acme-tiny -xf - --strip-components 1\n", \
        (res.stdout, res.stderr)


def run(binary, report, only=None):
    def selected(name):
        return picked(only, name, "test_openwrt")

    with scratch_dir("acme-tiny-openwrt-") as tmp:
        if selected("openwrt_shell_files"):
            report.check("openwrt_shell_files", shell_files)
        if selected("openwrt_package_version"):
            report.check("openwrt_package_version", package_version, binary)
        if selected("openwrt_package_unpack"):
            report.check("openwrt_package_unpack", package_unpack, tmp)
        if selected("openwrt_options_to_flags"):
            report.check("openwrt_options_to_flags", options_to_flags, tmp)
        if selected("openwrt_eab_values_dashed"):
            report.check("openwrt_eab_values_dashed", eab_values_dashed, binary, tmp)
        if selected("openwrt_sigterm_before_acme_tiny"):
            report.check("openwrt_sigterm_before_acme_tiny", sigterm_before_acme_tiny, tmp)
        if selected("openwrt_sigterm_dns_persist"):
            report.check("openwrt_sigterm_dns_persist", sigterm_dns_persist, tmp)
        if selected("openwrt_sigterm_before_pid"):
            report.check("openwrt_sigterm_before_pid", sigterm_before_pid, tmp)
        for f in (key_type_flags, refused_options, unset_options_no_flags, standalone_uhttpd,
                  account_lock, sigterm_as_acme_tiny_ends, sigint_sighup, one_certificate_chain,
                  link_fails, log_fifo_private):
            if selected("openwrt_" + f.__name__):
                report.check("openwrt_" + f.__name__, f, tmp)
        tests = [f for f in (webroot_two_names, replaces_other_provider, key_type_rsa2048,
                             new_names_or_server, files_after_a_failed_run,
                             stale_files_made_again, failure_keeps_files,
                             two_sections_at_once, standalone_port_taken,
                             stray_child_of_dns_hook)
                 if selected("openwrt_" + f.__name__)]
        if tests or selected("openwrt_sigterm_during_validation"):
            with Pebble() as p:
                for f in tests:
                    report.check("openwrt_" + f.__name__, f, Router(tmp, binary, p))
                if selected("openwrt_sigterm_during_validation"):
                    report.check("openwrt_sigterm_during_validation", sigterm_during_validation,
                                 Router(tmp, binary, p), tmp)
        if selected("openwrt_dns_persist"):
            report.check("openwrt_dns_persist", dns_persist, binary, tmp)
        if selected("openwrt_standalone"):
            # Pebble's http-01 port with nothing on it: the hook's server takes it
            with Pebble(config={"httpPort": free_port()}) as p:
                report.check("openwrt_standalone", standalone, Router(tmp, binary, p))


def run_cross(name, command, report):
    """The webroot scenario with a build for another architecture under qemu-user."""
    argv = command.split()
    argv[-1] = os.path.abspath(argv[-1])
    with scratch_dir("acme-tiny-openwrt-") as tmp, Pebble() as p:
        report.check(f"{name}_openwrt_webroot", webroot_two_names, Router(tmp, " ".join(argv), p))
