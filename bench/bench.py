#!/usr/bin/env python3
"""make bench: acme-tiny against acme_tiny.py and uacme (Debian packages
acme-tiny and uacme), each issuing certificates from the same account key and
CSR against one local Pebble (PEBBLE_VA_NOSLEEP=1, no nonce rejection,
PEBBLE_AUTHZREUSE=0): a one-name CSR, then a ten-name one, runs interleaved.
Pebble 2.4 still reuses a valid authorization 1 time in 100 at that setting
(it makes a new one only if rand.Intn(100) > 0): a ten-name run then has one
challenge less, 27 requests instead of 28.
Not a test: it prints numbers, and whether acme-tiny meets issue 6's targets
(one name) and issue 12's (ten names: at most 2n+8 = 28 requests on one
connection, wall time at most twice the one-name run's).

Per client: wall time, and the CPU time (user+sys) and peak RSS of the client
process itself with the children it waits for (uacme's hook), as wait4()
gives them to tests/launcher.c, a small static program that starts the
client: Python, unshare and sh are not counted. Peak memory is
VmHWM (acme-tiny's --stats) for acme-tiny, the launcher's ru_maxrss for the
others (the same figure, but it also counts the launcher's few dozen KiB
before exec). HTTP requests are counted in Pebble's log (one line per
request), TCP connections to Pebble with strace (connect() calls, in a
separate run); size on disk is the stripped binary or the installed packages.
"""
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from helpers import make_csr, make_key  # noqa: E402
from pebble_env import PEBBLE_ARI, Pebble  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "7"))
NAME = "bench.example.test"
NAMES10 = [f"n{k}.bench.example.test" for k in range(10)]
REQUEST_LINE = re.compile(r"^Pebble .* (GET|HEAD|POST) \S+ -> calling handler\(\)$", re.M)


def pebble_requests(p):
    with open(os.path.join(p.dir, "pebble.log")) as f:
        return len(REQUEST_LINE.findall(f.read()))


def build_launcher(work):
    """tests/launcher.c, static so that its child's peak RSS starts near zero."""
    exe = os.path.join(work, "launcher")
    for cc in ("musl-gcc", "cc"):
        if shutil.which(cc) and subprocess.run(
                [cc, "-static", "-O2", "-o", exe, os.path.join(HERE, "..", "tests", "launcher.c")],
                capture_output=True).returncode == 0:
            return exe
    sys.exit("bench: cannot build tests/launcher.c (no musl-gcc or static libc)")


class Client:
    def __init__(self, name, argv, package=None, prefix=(), vmhwm=False, status=0):
        """argv runs the client; prefix (a namespace wrapper) goes before the launcher;
        status is the wait status of a good run (256: exit 1, not due)."""
        self.name, self.argv, self.package, self.prefix, self.vmhwm = name, argv, package, prefix, vmhwm
        self.status = status
        self.samples = []

    def launch(self, launcher, argv, prefix=()):
        """argv through the launcher: its result, wall s, CPU s, peak RSS kB; or raises."""
        report = tempfile.NamedTemporaryFile(prefix="bench-rusage-", delete=False).name
        start = time.monotonic()
        proc = subprocess.run([*prefix, launcher, report, *argv], capture_output=True)
        wall = time.monotonic() - start
        lines = open(report).read().split("\n")
        os.unlink(report)
        if proc.returncode or len(lines) < 3 or lines[1].split()[0] != str(self.status):
            raise RuntimeError(f"{self.name} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
        _, maxrss, cpu_us = lines[1].split()
        return proc, wall, int(cpu_us) / 1e6, int(maxrss)

    def run(self, launcher):
        """One issuance: wall s, CPU s, peak kB; or raises."""
        proc, wall, cpu, maxrss = self.launch(launcher, self.argv, self.prefix)
        m = re.search(r"VmHWM\) (\d+) kB", proc.stderr.decode(errors="replace"))
        return wall, cpu, int(m[1]) if self.vmhwm and m else maxrss

    def startup(self, launcher):
        """CPU and peak RSS of starting and exiting alone (--version): the
        part of a run that is the C library's and the kernel's, not the client's."""
        runs = [self.launch(launcher, [self.argv[0], "--version"])[2:] for _ in range(RUNS)]
        return [statistics.median(x) for x in zip(*runs)]

    def connections(self, port):
        with tempfile.NamedTemporaryFile(prefix="bench-strace-") as log:
            r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect", "-o", log.name,
                                *self.prefix, *self.argv], capture_output=True)
            assert r.returncode == self.status >> 8, r.stderr[-2000:]
            text = open(log.name).read()
        return len(re.findall(rf"htons\({port}\)", text))


def installed_kb(package):
    """Installed-Size of package and of what it depends on, beyond libc6's closure."""
    def closure(pkg):
        seen, todo = set(), [pkg]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            r = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}, ${Pre-Depends}", name],
                               capture_output=True, text=True)
            if r.returncode:
                continue
            seen.add(name)
            for alt in r.stdout.split(","):
                for choice in alt.split("|"):
                    dep = choice.strip().split(" ")[0].split(":")[0]
                    if dep and subprocess.run(["dpkg-query", "-W", dep], capture_output=True).returncode == 0:
                        todo.append(dep)
                        break
        return seen
    pkgs = closure(package) - closure("libc6")
    sizes = subprocess.run(["dpkg-query", "-W", "-f", "${Installed-Size}\n", *sorted(pkgs)],
                           capture_output=True, text=True).stdout.split()
    return sum(int(s) for s in sizes if s.isdigit()), len(pkgs)


def stripped_kb(path):
    with tempfile.NamedTemporaryFile() as t:
        subprocess.run(["strip", "-o", t.name, path], check=True)
        return os.path.getsize(t.name) / 1024


def fmt(values, unit, scale=1, digits=0):
    v = [x * scale for x in values]
    text = f"{statistics.median(v):.{digits}f} ({min(v):.{digits}f}-{max(v):.{digits}f})"
    return f"{text} {unit}" if unit else text


def main():
    ours = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./acme-tiny")
    static = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "./acme-tiny-static")
    work = tempfile.mkdtemp(prefix="acme-tiny-bench-")
    env = {"PEBBLE_AUTHZREUSE": "0"}
    with Pebble(nonce_reject=0, env=env) as p:
        key = make_key(work, "rsa2048")        # what acme_tiny.py users have
        # uacme: account key in its confdir, the CA through a private mount namespace
        conf = os.path.join(work, "uacme")
        os.makedirs(os.path.join(conf, "private"))
        shutil.copy(key, os.path.join(conf, "private", "key.pem"))
        hook = os.path.join(work, "hook.sh")
        with open(hook, "w") as f:
            f.write(f"""#!/bin/sh
[ "$2" = http-01 ] || exit 1
case "$1" in
begin) printf %s "$5" > {shlex.quote(p.acme_dir)}/"$4" ;;
*) rm -f {shlex.quote(p.acme_dir)}/"$4" ;;
esac
""")
        os.chmod(hook, 0o755)
        # -r: a user namespace too, so that this works without root
        ns = ["unshare", "-r", "-m", "sh", "-c",
              f"mount --bind {shlex.quote(p.ca_file)} /etc/ssl/certs/ca-certificates.crt"
              ' && exec "$@"', "sh"]
        uacme = ["uacme", "-a", p.directory, "-c", conf, "-h", hook, "-y"]

        def clients_for(csr):
            """The four clients, each issuing for csr."""
            common = ["--account-key", key, "--csr", csr, "--acme-dir", p.acme_dir,
                      "--directory-url", p.directory, "--disable-check"]
            uacme_csr = csr[:-len(".csr")] + "-uacme.csr"
            shutil.copy(csr, uacme_csr)
            return [
                Client("acme-tiny", [ours, *common, "--ca-file", p.ca_file, "--quiet", "--stats"],
                       vmhwm=True),
                Client("acme-tiny (static musl)",
                       [static, *common, "--ca-file", p.ca_file, "--quiet", "--stats"],
                       vmhwm=True),
                Client("acme_tiny.py", ["env", f"SSL_CERT_FILE={p.ca_file}", "acme-tiny", *common],
                       package="acme-tiny"),
                Client("uacme", [*uacme, "-f", "-o", "issue", uacme_csr], package="uacme",
                       prefix=ns),
            ]
        clients = clients_for(make_csr(work, "bench", NAME))
        clients10 = clients_for(make_csr(work, "bench10", NAMES10[0], NAMES10))
        subprocess.run([*ns, *uacme, "new"], check=True, capture_output=True)
        launcher = build_launcher(work)
        for c in clients + clients10:
            c.run(launcher)                      # the account exists from here on
        for _ in range(RUNS):                    # interleaved, so drift hits all alike
            for c in clients + clients10:
                before = pebble_requests(p)
                wall, cpu, peak = c.run(launcher)
                c.samples.append((wall, cpu, peak, pebble_requests(p) - before))
        for c in clients + clients10:
            c.conns = c.connections(p.port)
        for c in clients[:2]:
            c.start_cpu, c.start_rss = c.startup(launcher)
    cron = not_due(work, launcher, ours, static)
    shutil.rmtree(work, ignore_errors=True)
    report(clients, clients10, ours, static)
    report_not_due(cron)


def not_due(work, launcher, ours, static):
    """A daily cron run when the certificate in --output is not due, against
    Debian 13's Pebble (ARI): the directory and the renewalInfo GET, nothing
    else. Both builds, after one run that issues."""
    runs = []
    with Pebble(binary=PEBBLE_ARI, config={"certificateValidityPeriod": 90 * 86400}) as p:
        key = make_key(work, "p256", "cron")
        csr = make_csr(work, "cron", "cron.bench.example.test")
        out = os.path.join(work, "cron.pem")
        for name, binary in (("acme-tiny", ours), ("acme-tiny (static musl)", static)):
            argv = [binary, "--account-key", key, "--csr", csr, "--acme-dir", p.acme_dir,
                    "--directory-url", p.directory, "--ca-file", p.ca_file, "--disable-check",
                    "--quiet", "--stats", "--output", out]
            if not os.path.exists(out):
                subprocess.run(argv, check=True, capture_output=True)     # issues: exit 0
            c = Client(name, argv, vmhwm=True, status=256)
            for _ in range(RUNS):
                before = pebble_requests(p)
                wall, cpu, peak = c.run(launcher)
                c.samples.append((wall, cpu, peak, pebble_requests(p) - before))
            c.conns = c.connections(p.port)
            runs.append(c)
    return runs


def report_not_due(runs):
    print("\nnot due (a daily cron run, --output's certificate fresh; Debian 13's Pebble, ARI):\n")
    print("| client | wall | CPU (user+sys) | peak RSS | HTTP requests | TCP connections |")
    print("| --- | --- | --- | --- | --- | --- |")
    for c in runs:
        wall, cpu_s, peak, reqs = zip(*c.samples)
        print(f"| {c.name} | {fmt(wall, 's', digits=3)} | {fmt(cpu_s, 'ms', 1000)} | "
              f"{fmt(peak, 'kB')} | {fmt(reqs, '')} | {c.conns} |")
    print("\ntargets (issue 13), not due:")
    for c in runs:
        reqs = max(x[3] for x in c.samples)
        ok = reqs <= 2 and c.conns == 1
        print(f"  {c.name}: {'met   ' if ok else 'MISSED'} {reqs} requests on {c.conns} "
              "connection(s); target 2 requests (directory, renewalInfo) on 1 connection")


def median_of(c, i):
    """The median of sample field i (0 wall, 1 CPU, 2 peak, 3 requests) of client c."""
    return statistics.median(x[i] for x in c.samples)


def report(clients, clients10, ours, static):
    cpu = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", cpu)
    print(f"{time.strftime('%Y-%m-%d')}, {os.uname().machine}, {os.cpu_count()} CPUs"
          f"{', ' + model[1] if model else ''}; {RUNS} runs each, median (min-max)\n")
    bear = installed_kb("libbearssl0")[0]
    sizes = {"acme-tiny": f"{stripped_kb(ours):.0f} kB + libbearssl0 {bear} kB",
             "acme-tiny (static musl)": f"{stripped_kb(static):.0f} kB"}
    print(f"one name ({NAME}):\n")
    print("| client | wall | CPU (user+sys) | peak RSS | HTTP requests | TCP connections | size on disk |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for c in clients:
        wall, cpu_s, peak, reqs = zip(*c.samples)
        if c.package:
            kb, n = installed_kb(c.package)
            size = f"{kb} kB ({n} packages beyond libc6)"
        else:
            size = sizes[c.name]
        print(f"| {c.name} | {fmt(wall, 's', digits=3)} | {fmt(cpu_s, 'ms', 1000)} | "
              f"{fmt(peak, 'kB')} | {fmt(reqs, '')} | {c.conns} | {size} |")
    base = clients[0]
    print("\nratios, peer / acme-tiny (medians):")
    for c in clients[2:]:
        print(f"  {c.name}: wall x{median_of(c, 0) / median_of(base, 0):.1f}, "
              f"CPU x{median_of(c, 1) / median_of(base, 1):.1f}, "
              f"peak memory x{median_of(c, 2) / median_of(base, 2):.1f}")
    print(f"\nten names ({NAMES10[0]} ... {NAMES10[-1]}); 'x one name' is the wall"
          " median over the same client's one-name median:\n")
    print("| client | wall | x one name | CPU (user+sys) | peak RSS | HTTP requests"
          " | TCP connections |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for c, one in zip(clients10, clients):
        wall, cpu_s, peak, reqs = zip(*c.samples)
        print(f"| {c.name} | {fmt(wall, 's', digits=3)} | "
              f"x{median_of(c, 0) / median_of(one, 0):.2f} | {fmt(cpu_s, 'ms', 1000)} | "
              f"{fmt(peak, 'kB')} | {fmt(reqs, '')} | {c.conns} |")
    targets(clients[:2])
    targets10(clients10[:2], clients[:2])


def targets(builds):
    """Issue 6's targets for acme-tiny, checked on the medians above, with the
    cost of starting and exiting alone beside CPU and memory. CPU and memory
    targets bind the router build (static musl, the last of builds); the glibc
    build's figures are reported beside it, marked 'figure'."""
    print("\ntargets (issue 6), medians; 'start-up' is the same binary run with --version:")
    for c in builds:
        wall, cpu_s, peak, reqs = (statistics.median(x) for x in zip(*c.samples))
        binds = c is builds[-1]
        checks = [
            (f"{c.conns} TCP connection(s)", c.conns == 1, "1"),
            (f"{reqs:.0f} requests", reqs <= 10, "at most 10"),
            (f"CPU {cpu_s * 1000:.1f} ms (start-up {c.start_cpu * 1000:.1f})",
             cpu_s < 0.020 if binds else None, "under 20 ms"),
            (f"wall {wall:.3f} s", wall < 0.5, "under 0.5 s"),
            (f"peak RSS {peak:.0f} kB (start-up {c.start_rss:.0f})",
             peak < 1024 if binds else None, "under 1 MiB"),
        ]
        print(f"  {c.name}:")
        for what, ok, goal in checks:
            mark = "figure" if ok is None else "met   " if ok else "MISSED"
            print(f"    {mark} {what}; target {goal}{' (router build)' if ok is None else ''}")


def targets10(builds10, builds):
    """Issue 12's targets for acme-tiny with ten names: at most 2n+8 requests
    in every run, on one connection, and a wall median at most twice the
    one-name median of the same build."""
    n = len(NAMES10)
    print(f"\ntargets (issue 12), {n} names:")
    for c, one in zip(builds10, builds):
        reqs = [x[3] for x in c.samples]
        ratio = median_of(c, 0) / median_of(one, 0)
        counts = f"{min(reqs)}-{max(reqs)}" if min(reqs) < max(reqs) else f"{max(reqs)}"
        checks = [
            (f"{counts} requests", max(reqs) <= 2 * n + 8, f"at most 2n+8 = {2 * n + 8} in every run"),
            (f"{c.conns} TCP connection(s)", c.conns == 1, "1"),
            (f"wall {median_of(c, 0):.3f} s, x{ratio:.2f} one name's {median_of(one, 0):.3f} s",
             ratio <= 2, "at most x2"),
        ]
        print(f"  {c.name}:")
        for what, ok, goal in checks:
            print(f"    {'met   ' if ok else 'MISSED'} {what}; target {goal}")


if __name__ == "__main__":
    main()
