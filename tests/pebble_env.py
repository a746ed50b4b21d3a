"""A local Pebble for tests and the demo: loopback only, stopped by PID.

Starts pebble-challtestsrv as the DNS server (every name answers 127.0.0.1,
its own challenge servers off), a static web server for the webroot on
Pebble's http-01 port, and Pebble itself with a TLS certificate made here
with openssl.
"""
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request


# The webroot's server: Python's own, with a listen backlog of 128, not 5: a
# CA validating ten names at once (three fetches each) overflows 5, and the
# SYNs it drops come back a second later (as nginx's 511 would not). It serves
# 127.0.0.1, and ::1 on the same port where it can (only the tests of IPv6
# identifiers need that: on a machine without ::1, they alone fail).
WEBROOT_SERVER = """
import functools, http.server, socket, sys, threading
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
class Server6(Server):
    address_family = socket.AF_INET6
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
try:
    v6 = Server6(("::1", int(sys.argv[2])), handler)
    threading.Thread(target=v6.serve_forever, daemon=True).start()
except OSError as e:
    print("webroot server: not on ::1:", e, file=sys.stderr)
Server(("127.0.0.1", int(sys.argv[2])), handler).serve_forever()
"""


# Debian 13's pebble (2.6.0), which serves ARI (RFC 9773): fetched, not
# installed, by tests/fetch-pebble-trixie.sh (make test and make check do it)
PEBBLE_ARI = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".pebble-trixie",
                          "usr", "bin", "pebble")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n):
    """n distinct ports free just now: another process may still take one before its
    server binds it, so Pebble.start tries again with new ones."""
    ports = set()
    while len(ports) < n:
        ports.add(free_port())
    return list(ports)


def wait_port(port, proc, what, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port}")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_tls_cert(d):
    """A test CA and a certificate for localhost and 127.0.0.1 signed by it."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=acme-tiny test CA", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "tls.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)


class Pebble:
    """with Pebble(nonce_reject=5) as p: p.directory, p.ca_file, p.acme_dir ...

    nonce_reject: the percentage of nonces refused (0: none, so that request
    counts are exact; None: Pebble's default, 5%);

    binary: the pebble to run (PEBBLE_ARI: Debian 13's, which serves ARI);
    config: more of pebble.json, e.g. {"certificateValidityPeriod": 30}."""

    def __init__(self, nonce_reject=0, env=None, binary="pebble", config=None):
        self.nonce_reject = nonce_reject
        self.extra_env = env or {}
        self.binary, self.config = binary, config or {}
        self.procs = []

    def start(self, tries=3):
        """Starts it all; a server that could not bind its port (taken meanwhile by another
        process) is tried again with new ports, and the last failure shows Pebble's log."""
        for attempt in range(tries):
            try:
                return self.start_once()
            except (RuntimeError, OSError) as e:
                with open(self.log_path, errors="replace") as f:
                    log = f.read()[-2000:]
                self.stop()
                if attempt == tries - 1:
                    raise RuntimeError(f"{e}; its log ends:\n{log}") from None

    def start_once(self):
        self.dir = tempfile.mkdtemp(prefix="acme-tiny-pebble-")
        d = self.dir
        self.log_path = os.path.join(d, "pebble.log")
        make_tls_cert(d)
        self.ca_file = os.path.join(d, "ca.pem")
        self.webroot = os.path.join(d, "www")
        self.acme_dir = os.path.join(self.webroot, ".well-known", "acme-challenge")
        os.makedirs(self.acme_dir)
        (self.port, self.mgmt_port, self.http_port, self.dns_port, self.dns_mgmt_port,
         tls_port) = free_ports(6)
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": os.path.join(d, "tls.pem"),
            "privateKey": os.path.join(d, "tls.key"),
            "httpPort": self.http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": False, **self.config}}
        with open(os.path.join(d, "pebble.json"), "w") as f:
            json.dump(config, f)
        self.log = open(self.log_path, "w")
        dns = self.spawn(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1",
                          "-defaultIPv6", "", "-http01", "", "-https01", "",
                          "-tlsalpn01", "", "-dns01", f"127.0.0.1:{self.dns_port}",
                          "-management", f"127.0.0.1:{self.dns_mgmt_port}"])
        wait_port(self.dns_mgmt_port, dns, "pebble-challtestsrv")
        web = self.spawn([sys.executable, "-c", WEBROOT_SERVER, self.webroot, str(self.http_port)])
        wait_port(self.http_port, web, "webroot server")
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", **self.extra_env)
        env.pop("PEBBLE_WFE_NONCEREJECT", None)
        if self.nonce_reject is not None:       # None: Pebble's own default, 5%
            env["PEBBLE_WFE_NONCEREJECT"] = str(self.nonce_reject)
        peb = self.spawn([self.binary, "-config", os.path.join(d, "pebble.json"),
                          "-dnsserver", f"127.0.0.1:{self.dns_port}"], env=env)
        wait_port(self.port, peb, "pebble")
        wait_port(self.mgmt_port, peb, "pebble management")
        self.directory = f"https://localhost:{self.port}/dir"
        # what listens is this Pebble, not a process that took a port first: its TLS, its CA
        ctx = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(self.directory, context=ctx, timeout=10) as r:
            r.read()
        self.management("/roots/0")
        return self

    def spawn(self, argv, env=None):
        p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env)
        self.procs.append(p)
        return p

    def management(self, path):
        """GET from Pebble's management port (its root and intermediate)."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        url = f"https://localhost:{self.mgmt_port}{path}"
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            return r.read().decode()

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
