"""DNS validation by hook (issue 15) against Debian 12's Pebble (2.4), on
loopback: --hook with tests/dns-hook.py, which puts dns-01 TXT records at
pebble-challtestsrv (Pebble's DNS server here) through its management API;
a name and its wildcard; --acme-dir (http-01 files) and --hook side by
side; a hook that prints (to acme-tiny's stderr, never its stdout),
declines everything, hangs (--hook-timeout), fails its done; SIGTERM and
--max-time while a hook runs (failed for what was begun, the hook's
process group killed); uacme's own example hook (/usr/share/uacme/uacme.sh)
doing http-01; and the usage rules.

What the hook was asked is read from its log (DNS_HOOK_LOG: each call's
arguments, one line each, in order); the TXT records left behind from
challtestsrv's DNS server; the hook's hanging processes from /proc."""
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

from helpers import check_failure, check_success, make_csr, make_key, openssl, picked, scratch_dir
from pebble_env import Pebble

HOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dns-hook.py")
UACME_HOOK = "/usr/share/uacme/uacme.sh"
USAGE_HINT = " (try 'acme-tiny --help')\n"
B64U = r"[A-Za-z0-9_-]+"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(key):
    """RFC 7638 thumbprint of a P-256 key: the point is the last 65 octets
    of the DER SubjectPublicKeyInfo (04 || x || y)."""
    der = openssl("pkey", "-in", key, "-pubout", "-outform", "DER").stdout
    point = der[-65:]
    assert point[0] == 4 and len(der) == 91, "not an uncompressed P-256 point"
    jwk = '{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' % (b64u(point[1:33]), b64u(point[33:]))
    return b64u(hashlib.sha256(jwk.encode()).digest())


def dns01_value(token, tp):
    return b64u(hashlib.sha256(f"{token}.{tp}".encode()).digest())


def txt_records(name, port):
    """The TXT values challtestsrv's DNS server gives for name (one UDP query)."""
    query = struct.pack(">HHHHHH", 0x7e57, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        query += bytes([len(label)]) + label.encode()
    query += b"\0" + struct.pack(">HH", 16, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(query, ("127.0.0.1", port))
        r = s.recv(4096)
    answers, i, values = struct.unpack(">H", r[6:8])[0], len(query), []
    for _ in range(answers):
        if r[i] & 0xc0 == 0xc0:
            i += 2
        else:
            while r[i]:
                i += r[i] + 1
            i += 1
        rtype, _, _, rdlength = struct.unpack(">HHIH", r[i:i + 10])
        rdata, i = r[i + 10:i + 10 + rdlength], i + 10 + rdlength
        if rtype == 16:
            j, parts = 0, []
            while j < len(rdata):
                parts.append(rdata[j + 1:j + 1 + rdata[j]].decode())
                j += 1 + rdata[j]
            values.append("".join(parts))
    return values


def running(pid):
    """pid is a process that still runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


class Env:
    """One Pebble, a directory and an account key of this test's own, the
    binary, and the hook's files: its log, state and PIDs."""

    def __init__(self, binary, p, tmp):
        self.bin, self.p = binary, p
        self.d = tempfile.mkdtemp(dir=tmp)
        self.key = make_key(self.d, "p256", "account")
        self.log_path = os.path.join(self.d, "hook.log")
        self.pids_path = os.path.join(self.d, "hook.pids")
        self.state_path = os.path.join(self.d, "hook.state")

    def env(self, **knobs):
        return dict(os.environ, DNS_HOOK_URL=f"http://127.0.0.1:{self.p.dns_mgmt_port}",
                    DNS_HOOK_LOG=self.log_path, DNS_HOOK_PIDS=self.pids_path,
                    DNS_HOOK_STATE=self.state_path, **knobs)

    def argv(self, names, *extra, quiet=True):
        csr = make_csr(self.d, "csr-" + names[0].lstrip("*."), names[0], names)
        return [self.bin, "--directory-url", self.p.directory, "--ca-file", self.p.ca_file,
                "--account-key", self.key, "--csr", csr, *extra, *(["--quiet"] if quiet else [])]

    def run(self, names, *extra, quiet=True, env=None, timeout=120):
        return subprocess.run(self.argv(names, *extra, quiet=quiet), capture_output=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, env=env or self.env())

    def calls(self):
        """The hook's calls: one list of arguments each, in order."""
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path) as f:
            return [line.split() for line in f.read().splitlines()]

    def hung_pids(self):
        if not os.path.exists(self.pids_path):
            return []
        with open(self.pids_path) as f:
            return [int(pid) for pid in f.read().split()]

    def check_killed(self, pids):
        """The hanging hook and its child are gone (a moment to be reaped)."""
        end = time.time() + 3
        while any(map(running, pids)) and time.time() < end:
            time.sleep(0.05)
        alive = [pid for pid in pids if running(pid)]
        for pid in alive:       # ours: the hook started them; stop them by PID
            os.kill(pid, signal.SIGKILL)
        assert not alive, f"the hook's process group was not killed: {alive} still run"

    def txt(self, ident):
        return txt_records(f"_acme-challenge.{ident}", self.p.dns_port)

    def pebble_log(self):
        with open(self.p.log_path) as f:
            return f.read()

    def served(self):
        """How many http-01 files the webroot server has served (its log)."""
        return len(re.findall(r'"GET /\.well-known/acme-challenge/\S+ HTTP/1\.1" 200',
                              self.pebble_log()))

    def requests(self, what):
        return len(re.findall(rf"^Pebble .* {re.escape(what)}\S* -> calling handler\(\)$",
                              self.pebble_log(), re.M))


def check_auth(env, call):
    """A dns-01 call's AUTH is the TXT value for its TOKEN and the account key."""
    _, typ, _, token, auth = call
    assert typ == "dns-01", call
    assert re.fullmatch(B64U, token) and len(token) >= 22, f"token {token!r}"
    assert auth == dns01_value(token, thumbprint(env.key)), \
        f"AUTH {auth} is not base64url(SHA-256(TOKEN.THUMBPRINT))"


def split_calls(calls):
    """begin calls first (declined http-01 ones allowed, never for a
    wildcard), then done/failed; returns (begins of dns-01, the rest)."""
    methods = [c[0] for c in calls]
    n = methods.count("begin")
    assert methods[:n] == ["begin"] * n, f"a begin after done/failed: {calls}"
    for c in calls:
        assert len(c) == 5 and not c[2].startswith("*."), f"bad call {c}"
        assert c[1] in ("dns-01", "http-01"), f"type {c[1]} offered: {c}"
    dns = [c for c in calls[:n] if c[1] == "dns-01"]
    return dns, calls[n:]


# ---------------------------------------------------------------- issuance

def dns01_one_name(env):
    """One name by dns-01 through the hook, no --acme-dir: issued (stdout
    only PEM); the hook asked begin dns-01 NAME TOKEN AUTH (perhaps after an
    http-01 it declined), then done with the same arguments; AUTH is
    base64url(SHA-256(TOKEN "." thumbprint)); no TXT record left."""
    name = "dns-one.example.test"
    res = env.run([name], "--hook", HOOK)
    check_success(res, env.p.acme_dir)
    assert res.stderr == b"", res.stderr
    calls = env.calls()
    begins, rest = split_calls(calls)
    assert len(begins) == 1 and begins[0][2] == name, calls
    http = [c for c in calls if c[1] == "http-01"]
    assert len(http) <= 1 and all(c[0] == "begin" and c[2] == name for c in http), calls
    for c in http:      # declined, but offered with the http-01 key authorization
        assert c[4] == f"{c[3]}.{thumbprint(env.key)}", f"http-01 AUTH: {c}"
    check_auth(env, begins[0])
    assert rest == [["done", *begins[0][1:]]], f"expected done for {begins[0]}: {calls}"
    assert env.txt(name) == [], f"TXT left: {env.txt(name)}"


def dns01_wildcard(env):
    """*.example-2.test and example-2.test, both by dns-01: two begins with
    IDENT example-2.test (no "*."), two tokens, both TXT values at once on
    _acme-challenge.example-2.test (the CA checks each with the other's
    there); issued for both names; done for both; no TXT left."""
    names = ["*.example-2.test", "example-2.test"]
    res = env.run(names, "--hook", HOOK)
    chain = check_success(res, env.p.acme_dir)
    calls = env.calls()
    begins, rest = split_calls(calls)
    assert [c[2] for c in begins] == ["example-2.test"] * 2, calls
    assert begins[0][3] != begins[1][3], f"one token for two authorizations: {calls}"
    for c in begins:
        check_auth(env, c)
    assert sorted(rest) == sorted(["done", *c[1:]] for c in begins), calls
    assert env.txt("example-2.test") == [], f"TXT left: {env.txt('example-2.test')}"
    leaf = os.path.join(env.d, "leaf.pem")
    with open(leaf, "w") as f:
        f.write(chain)
    san = openssl("x509", "-in", leaf, "-noout", "-ext", "subjectAltName").stdout.decode()
    assert "DNS:*.example-2.test" in san and "DNS:example-2.test" in san, san


def mixed_file_and_hook(env):
    """--acme-dir and --hook: the plain name by an http-01 file (the webroot
    server serves it to Pebble), the wildcard by the hook's dns-01; the
    hook is never asked about the plain name nor offered http-01."""
    names = ["mixed.example.test", "*.mixed.example.test"]
    before = env.served()
    res = env.run(names, "--hook", HOOK, "--acme-dir", env.p.acme_dir, "--disable-check")
    check_success(res, env.p.acme_dir)
    calls = env.calls()
    assert len(calls) == 2 and calls[0][:3] == ["begin", "dns-01", "mixed.example.test"], calls
    check_auth(env, calls[0])
    assert calls[1] == ["done", *calls[0][1:]], calls
    assert env.served() > before, "no http-01 file was fetched from the webroot"
    assert env.txt("mixed.example.test") == []


def uacme_example_hook(env):
    """uacme's own example hook (Debian's uacme package), as --hook without
    --acme-dir, UACME_CHALLENGE_PATH the webroot's challenge directory: it
    declines dns-01, writes the http-01 file, removes it on done; issued,
    no file left."""
    assert os.access(UACME_HOOK, os.X_OK), f"{UACME_HOOK} missing: apt-get install uacme"
    before = env.served()
    res = env.run(["uacme.example.test", "www.uacme.example.test"], "--hook", UACME_HOOK,
                  env=dict(os.environ, UACME_CHALLENGE_PATH=env.p.acme_dir))
    check_success(res, env.p.acme_dir)
    assert env.served() >= before + 2, "the CA fetched no http-01 file for each name"


def done_fails(env):
    """A hook whose done exits 3: the certificate counts (exit 0, PEM on
    stdout), a warning line on stderr naming the hook and done; with
    --quiet (errors only) nothing on stderr."""
    for k, quiet in enumerate((False, True)):
        name = f"done-fails{k}.example.test"
        res = env.run([name], "--hook", HOOK, quiet=quiet, env=env.env(DNS_HOOK_FAIL_DONE="1"))
        check_success(res, env.p.acme_dir)
        calls = env.calls()
        assert [c[0] for c in calls][-1:] == ["done"] and calls[-1][2] == name, calls
        warnings = [line for line in res.stderr.decode().splitlines()
                    if re.search(r"(?i)\bwarning\b", line)]
        if quiet:
            assert res.stderr == b"", f"--quiet: {res.stderr.decode()!r}"
        else:
            assert len(warnings) == 1 and f"--hook {HOOK} done" in warnings[0], \
                f"expected one warning about the hook's done: {res.stderr.decode()[-1500:]!r}"


def done_hangs(env):
    """--hook-timeout 2 and a done that hangs: its process group killed after
    about 2 s, one warning, and the certificate all the same (exit 0, PEM on
    stdout): the CA has issued it."""
    name = "done-hangs.example.test"
    start = time.time()
    res = env.run([name], "--hook", HOOK, "--hook-timeout", "2", quiet=False, timeout=30,
                  env=env.env(DNS_HOOK_HANG="done"))
    took = time.time() - start
    check_success(res, env.p.acme_dir)
    assert 2 <= took < 15, f"took {took:.1f} s with --hook-timeout 2"
    pids = env.hung_pids()
    assert len(pids) == 2, f"done did not hang: {env.calls()}"
    env.check_killed(pids)
    warnings = [line for line in res.stderr.decode().splitlines() if "Warning" in line]
    assert warnings == [f"Warning: --hook {HOOK} done did not exit 0; the names are validated"], \
        res.stderr.decode()[-1500:]


def chatty_hook(env):
    """A hook that prints to stdout and stderr: both go to acme-tiny's
    stderr, in order among its own lines, and stdout stays the certificate
    alone; the hook's stdin is /dev/null (acme-tiny's is a pipe here)."""
    name = "chatty.example.test"
    proc = subprocess.run(env.argv([name], "--hook", HOOK, quiet=False), capture_output=True,
                          input=b"not for the hook\n", timeout=120,
                          env=env.env(DNS_HOOK_CHATTY="1"))
    check_success(proc, env.p.acme_dir)
    lines = proc.stderr.decode().splitlines()
    calls = [c for c in env.calls() if c[1] == "dns-01"]
    assert [c[0] for c in calls] == ["begin", "done"], env.calls()
    for method in ("begin", "done"):
        said = [f"dns-hook: {method} dns-01 {name} to stdout",
                f"dns-hook: {method} dns-01 {name} to stderr, stdin /dev/null"]
        assert all(line in lines for line in said), f"{said} not in stderr: {lines}"
    created = [k for k, line in enumerate(lines) if line.startswith("Order created")]
    assert created and created[0] < lines.index(f"dns-hook: begin dns-01 {name} to stdout") < \
        lines.index(f"dns-hook: done dns-01 {name} to stdout"), lines


# ---------------------------------------------------------------- failures

def declines_everything(env):
    """A hook that declines every challenge: exit 2, one line naming the
    name and what was offered (http-01 and dns-01; for a wildcard dns-01
    only), no challenge POSTed, no done or failed."""
    for name, types in (("decline.example.test", ["dns-01", "http-01"]),
                        ("*.decline-wild.example.test", ["dns-01"])):
        offered = "(http-01, dns-01|dns-01, http-01)" if len(types) == 2 else "dns-01"
        posts = env.requests("POST /chalZ/")
        res = env.run([name], "--hook", HOOK, env=env.env(DNS_HOOK_DECLINE="1"))
        check_failure(res, env.p.acme_dir, rf"^acme-tiny: {re.escape(name)}: the hook declined "
                      rf"every challenge \(offered: {offered}\)$")
        calls = env.calls()
        ident = name.removeprefix("*.")
        assert all(c[0] == "begin" and c[2] == ident for c in calls), calls
        assert sorted(c[1] for c in calls) == types, calls
        assert env.requests("POST /chalZ/") == posts, "a challenge was answered"
        os.remove(env.log_path)


def hook_cannot_run(env):
    """A hook whose #! names an interpreter that is not there (bash on OpenWrt): one
    line that says so, not 'the hook declined every challenge'."""
    hook = os.path.join(env.d, "bash-hook")
    with open(hook, "w") as f:
        f.write("#!/nonexistent/bash\nexit 0\n")
    os.chmod(hook, 0o755)
    res = env.run(["cannot-run.example.test"], "--hook", hook)
    check_failure(res, env.p.acme_dir, r"^acme-tiny: --hook .*/bash-hook begin (dns|http)-01 "
                  r"cannot-run\.example\.test: exit 127, command not found: is its #! "
                  r"interpreter, or a command it runs, installed\?$")


def hook_fork_fails(env):
    """A hook that cannot be started because fork fails (ulimit -u on a small router, or a
    supervisor's limit on processes; EAGAIN, injected here by strace, since root is above
    RLIMIT_NPROC): exit 2 with one line that says why, not 'killed, or it did not end within
    --hook-timeout 300 s', which it said at once, the hook never started."""
    argv = env.argv(["fork-fails.example.test"], "--hook", HOOK)
    res = subprocess.run(["strace", "-o", os.devnull, "-e", "trace=fork,vfork,clone,clone3",
                          "-e", "inject=fork,vfork,clone,clone3:error=EAGAIN", *argv],
                         capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                         env=env.env(ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                                     ":detect_leaks=0"))   # LeakSanitizer cannot run under ptrace
    line = check_failure(res, env.p.acme_dir, r"^acme-tiny: --hook .*fork-fails\.example\.test")
    assert env.calls() == [], f"the hook ran: {env.calls()}"
    assert "killed" not in line and "hook-timeout" not in line, line
    assert "Resource temporarily unavailable" in line, f"the reason is not said: {line}"


def invalid_order(env):
    """A hook that puts the wrong TXT value: the order is invalid, exit 2
    with the name and the CA's reason, and the hook hears failed, not done;
    no TXT left."""
    name = "wrong.example.test"
    res = env.run([name], "--hook", HOOK, env=env.env(DNS_HOOK_WRONG="1"))
    check_failure(res, env.p.acme_dir, rf"^acme-tiny: {re.escape(name)}: challenge did not pass "
                  r"\(invalid\): ")
    begins, rest = split_calls(env.calls())
    assert len(begins) == 1 and rest == [["failed", *begins[0][1:]]], env.calls()
    assert env.txt(name) == [], f"TXT left: {env.txt(name)}"


def invalid_beside_valid(env):
    """Two names, one validated (the wildcard, by the hook's dns-01) and one not (its http-01
    file where no web server serves it): the line names the one that failed, whichever of
    the two authorizations the order lists first."""
    unserved = tempfile.mkdtemp(dir=env.d)
    for names in (["first.beside.example.test", "*.first.beside.example.test"],
                  ["*.second.beside.example.test", "second.beside.example.test"]):
        plain = next(n for n in names if not n.startswith("*."))
        res = env.run(names, "--hook", HOOK, "--acme-dir", unserved, "--disable-check")
        check_failure(res, unserved, rf"^acme-tiny: {re.escape(plain)}: challenge did not pass "
                      r"\(invalid\): ")


def hook_timeout(env):
    """--hook-timeout 2, the second name's first begin hangs: killed after about
    2 s with its process group (the hook and the child it started), exit 2
    with one line, and failed for the killed begin (it may have done half)
    and then for the first name's accepted dns-01, the last first (the
    names are taken in the CA's order of authorizations)."""
    names = ["one.timeout.example.test", "two.timeout.example.test"]
    posts = env.requests("POST /chalZ/")
    start = time.time()
    res = env.run(names, "--hook", HOOK, "--hook-timeout", "2", timeout=30,
                  env=env.env(DNS_HOOK_HANG="begin:2"))
    took = time.time() - start
    line = check_failure(res, env.p.acme_dir, r"^acme-tiny: --hook ")
    assert 2 <= took < 15, f"took {took:.1f} s with --hook-timeout 2"
    pids = env.hung_pids()
    assert len(pids) == 2, f"the hook did not hang: {env.calls()}"
    env.check_killed(pids)
    calls = env.calls()
    asked = list(dict.fromkeys(c[2] for c in calls))      # in the CA's order
    assert sorted(asked) == names, calls
    first = [c for c in calls if c[:3] == ["begin", "dns-01", asked[0]]]
    assert len(first) == 1, calls
    hung = [c for c in calls if c[0] == "begin" and c[2] == asked[1]]
    assert len(hung) == 1, f"more than one begin for the hanging name: {calls}"
    assert line == f"acme-tiny: --hook {HOOK} begin {hung[0][1]} {hung[0][2]}: killed, or it did " \
        "not end within --hook-timeout 2 s", line
    after = calls[calls.index(hung[0]) + 1:]
    assert after == [["failed", *hung[0][1:]], ["failed", *first[0][1:]]], \
        f"expected failed for {hung[0]}, then for {first[0]}: {calls}"
    assert env.txt(asked[0]) == [], "TXT left"
    assert env.requests("POST /chalZ/") == posts, "a challenge was answered before every begin"


def sigterm(env, names, hang, *args, hung=2, line=r"^acme-tiny: interrupted; challenges undone$"):
    """acme-tiny for names (and args) with the hook's knob DNS_HOOK_HANG=hang,
    sent SIGTERM once hung processes (two per hanging hook) hang: exit 2, the
    one line; returns how long acme-tiny took after SIGTERM."""
    proc = subprocess.Popen(env.argv(names, "--hook", HOOK, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env.env(DNS_HOOK_HANG=hang))
    try:
        end = time.time() + 60
        while len(env.hung_pids()) < hung and proc.poll() is None and time.time() < end:
            time.sleep(0.05)
        assert len(env.hung_pids()) == hung, f"the hook never hung: {env.calls()}"
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.time() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    check_failure(res, env.p.acme_dir, line)
    return took


def sigterm_during_hook(env):
    """SIGTERM while the second name's begin hangs: exit 2 within a few
    seconds, one line, the hanging hook's process group killed, failed for
    the first name's accepted dns-01 and for the begin that was running."""
    names = ["one.term.example.test", "two.term.example.test"]
    took = sigterm(env, names, "begin:2")
    assert took < 3, f"exited {took:.1f} s after SIGTERM"
    env.check_killed(env.hung_pids())
    calls = env.calls()
    asked = list(dict.fromkeys(c[2] for c in calls))      # in the CA's order
    assert sorted(asked) == names, calls
    first = [c for c in calls if c[:3] == ["begin", "dns-01", asked[0]]]
    hung = [c for c in calls if c[0] == "begin" and c[2] == asked[1]]
    assert len(first) == 1 and len(hung) == 1, calls
    after = calls[calls.index(hung[0]) + 1:]
    assert sorted(after) == sorted([["failed", *first[0][1:]], ["failed", *hung[0][1:]]]), \
        f"expected failed for {first[0]} and {hung[0]}: {calls}"
    assert env.txt(asked[0]) == [], "TXT left"


def sigterm_failed_hangs(env):
    """SIGTERM while a begin hangs, and the failed that follows hangs too:
    the failed calls get 4 s in all (a supervisor kills 5 s after SIGTERM),
    then exit 2 with one line; every hanging hook's process group killed."""
    names = ["one.term-hang.example.test", "two.term-hang.example.test"]
    took = sigterm(env, names, "begin:2,failed")
    assert 3.5 < took < 5, f"exited {took:.1f} s after SIGTERM, not after 4 s"
    pids = env.hung_pids()
    assert len(pids) >= 4, f"not two hanging hooks: {pids}, {env.calls()}"
    env.check_killed(pids)
    assert [c[0] for c in env.calls()].count("failed") >= 1, env.calls()


def sigterm_during_fail(env):
    """SIGTERM while the failed that follows a --hook-timeout hangs: the
    signal is not held off while fail() undoes (procd's SIGKILL comes 5 s
    after its SIGTERM): exit 2 with the signal's line within the 4 s, long
    before that failed's --hook-timeout of 6 s; every hanging hook killed."""
    names = ["one.fail-term.example.test", "two.fail-term.example.test"]
    took = sigterm(env, names, "begin:2,failed", "--hook-timeout", "6", hung=4,
                   line=r"^acme-tiny: interrupted")
    assert took < 5, f"exited {took:.1f} s after SIGTERM"
    env.check_killed(env.hung_pids())


def sigterm_during_done(env):
    """SIGTERM while a slow done runs (the order is ready): that done is cut
    short, so the challenge is undone all the same (failed, within the 4 s):
    exit 2, no TXT left."""
    name = "slow-done.example.test"
    proc = subprocess.Popen(env.argv([name], "--hook", HOOK), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env.env(DNS_HOOK_SLOW="done"))
    try:
        end = time.time() + 60
        while "done" not in [c[0] for c in env.calls()] and proc.poll() is None \
                and time.time() < end:
            time.sleep(0.02)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the signal's line: exit 2 alone would also be a failure of the run's own
    check_failure(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                  env.p.acme_dir, r"^acme-tiny: interrupted; challenges undone$")
    assert [c[0] for c in env.calls() if c[1] == "dns-01"][-1] == "failed", env.calls()
    assert env.txt(name) == [], f"TXT left: {env.txt(name)}"


def sigchld_ignored(env):
    """Started with SIGCHLD ignored (inherited through exec from some
    supervisors): the hook's exit status is still heard; issued."""
    name = "sigchld.example.test"
    res = subprocess.run(env.argv([name], "--hook", HOOK), capture_output=True, timeout=120,
                         stdin=subprocess.DEVNULL, env=env.env(),
                         preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    check_success(res, env.p.acme_dir)


def max_time_during_hook(env):
    """--max-time 3 while the second name's begin hangs (--hook-timeout
    is longer): exit 2 at about 3 s with --max-time's line, the hanging
    hook's process group killed, failed for both begins."""
    names = ["one.max-time.example.test", "two.max-time.example.test"]
    start = time.time()
    res = env.run(names, "--hook", HOOK, "--max-time", "3", timeout=30,
                  env=env.env(DNS_HOOK_HANG="begin:2"))
    took = time.time() - start
    check_failure(res, env.p.acme_dir, r"^acme-tiny: gave up after --max-time 3 s; "
                  r"challenges undone$")
    assert 2.5 < took < 6, f"took {took:.1f} s with --max-time 3"
    pids = env.hung_pids()
    assert len(pids) == 2, f"the hook did not hang: {env.calls()}"
    env.check_killed(pids)
    calls = env.calls()
    begins = [c for c in calls if c[0] == "begin"]
    failed = [["begin", *c[1:]] for c in calls if c[0] == "failed"]
    assert sorted(failed) == sorted([c for c in begins if c[1] == "dns-01" or c == begins[-1]]), \
        f"failed not for every accepted begin and the hanging one: {calls}"


# ---------------------------------------------------------------- usage

def usage(env):
    """--hook is enough without --acme-dir (the run goes on to the CA);
    without --acme-dir, --hook or --dns-persist it is a usage error; a
    --hook we may not run ends the run before the CA is asked;
    --print-dns-persist takes neither --output nor an action;
    --hook-timeout is 1..999999; a wildcard with --acme-dir only fails
    before any request, saying it needs DNS validation."""
    base = ["--account-key", env.key, "--csr", make_csr(env.d, "usage", "usage.example.test"),
            "--ca-file", env.p.ca_file, "--directory-url", "https://127.0.0.1:9/dir"]
    cert = os.path.join(env.d, "usage.crt")
    with open(cert, "w") as f:
        f.write("not for TXT lines\n")
    # a usage error's own line (None: none, the run goes on): any usage error would also be
    # that of another check, or of a flag misspelt here
    needs = ("needs --account-key, --acme-dir (or --hook, or --dns-persist), and either --csr "
             "or --domains with --domain-key")
    alone = "--print-dns-persist prints records to stdout, and does nothing else"
    timeout = "--hook-timeout takes a number from 1 to 999999, not "
    for extra, usage in ((["--hook", HOOK], None), ([], needs),
                         (["--print-dns-persist", "--output", cert], alone),
                         (["--print-dns-persist", "--deactivate-account"], alone),
                         (["--hook", HOOK, "--hook-timeout", "1"], None),
                         (["--hook", HOOK, "--hook-timeout", "999999"], None),
                         (["--hook", HOOK, "--hook-timeout", "0"], timeout + "0"),
                         (["--hook", HOOK, "--hook-timeout", "1000000"], timeout + "1000000"),
                         (["--hook", HOOK, "--hook-timeout", "x"], timeout + "x"),
                         (["--hook"], "missing value for --hook")):
        res = subprocess.run([env.bin, *base, *extra], capture_output=True, timeout=60,
                             stdin=subprocess.DEVNULL)
        err = res.stderr.decode()
        assert res.returncode == 2 and res.stdout == b"", f"{extra}: exit {res.returncode}: {err}"
        assert (USAGE_HINT in err) == bool(usage), f"{extra}: {err!r}"
        assert not usage or err == f"acme-tiny: {usage}{USAGE_HINT}", f"{extra}: {err!r}"
        assert usage or re.search(r"directory|127\.0\.0\.1:9", err), f"{extra}: {err!r}"
    assert env.calls() == [], "the hook ran"
    assert open(cert).read() == "not for TXT lines\n", "--output was written"
    not_exec = os.path.join(env.d, "not-executable")
    shutil.copy(HOOK, not_exec)
    os.chmod(not_exec, 0o644)
    res = subprocess.run([env.bin, *base, "--hook", not_exec, "--quiet"], capture_output=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    check_failure(res, None, rf"^acme-tiny: --hook {re.escape(not_exec)}: Permission denied$")
    # a directory passes access(X_OK), but execv cannot run it: said before the CA is asked
    res = subprocess.run([env.bin, *base, "--hook", env.d, "--quiet"], capture_output=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    check_failure(res, None, rf"^acme-tiny: --hook {re.escape(env.d)}: not a regular file$")
    names = ["*.usage-wild.example.test", "usage-wild.example.test"]
    dirs = env.requests("GET /dir")
    res = env.run(names, "--acme-dir", env.p.acme_dir)
    check_failure(res, env.p.acme_dir, r"^acme-tiny: \*\.usage-wild\.example\.test: a wildcard "
                  r"name needs DNS validation: --hook \(dns-01\) or --dns-persist$")
    assert env.requests("GET /dir") == dirs, "the CA was asked"


TESTS = [(f"dns_{f.__name__}", f) for f in (
    dns01_one_name, dns01_wildcard, mixed_file_and_hook, uacme_example_hook, done_fails,
    done_hangs, chatty_hook,
    declines_everything, hook_cannot_run, hook_fork_fails, invalid_order, invalid_beside_valid,
    hook_timeout,
    sigterm_during_hook, sigterm_failed_hangs,
    sigterm_during_fail, sigterm_during_done, sigchld_ignored, max_time_during_hook, usage)]


def run(binary, report, only=None):
    selected = [(n, f) for n, f in TESTS if picked(only, n, "test_dns")]
    if selected:
        with scratch_dir("acme-tiny-dns-") as tmp, Pebble() as p:
            for name, fn in selected:
                env = Env(binary, p, tmp)
                report.check(name, fn, env)
                for pid in filter(running, env.hung_pids()):    # after a failure
                    os.kill(pid, signal.SIGKILL)
