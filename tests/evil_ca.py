"""A misbehaving ACME CA for tests: raw HTTP/1.1 over TLS on 127.0.0.1.

    with EvilCA("json_trailing_garbage", tls_dir) as ca:
        ... run acme-tiny with --directory-url ca.directory ...

Without a scenario ("normal") it serves enough of RFC 8555 for acme-tiny to
get a certificate: the directory, HEAD/GET newNonce, newAccount (201 +
Location), newOrder (201 + Location, one authorization, finalize), the
authorization (pending with an http-01 challenge, valid once the challenge
was POSTed), the challenge, the order (polled as "readyPoll": ready once the
challenge was POSTed), finalize (processing), the order again ("orderPoll":
valid with a certificate URL) and the certificate (a PEM chain); and for the
account's life, revokeCert (200, empty) and keyChange (200, the account).
JWS signatures are not verified; the protected header and payload are
decoded only to record them (and every request is kept whole in requests).

A scenario (see SCENARIOS) replaces one step's answer with something
hostile. Responses are written as raw bytes, so status lines, headers,
chunking, timing and the way a connection ends (close_notify, plain close,
TCP reset) are all under the scenario's control.

Bounds: every connection has a socket timeout, every endless or slow loop
stops when the socket errors, when stop() is called, after MAX_SEND_SECONDS
or after MAX_STREAM bytes. Threads are daemons; stop() shuts every socket
down and joins them.
"""
import base64
import email.utils
import json
import os
import secrets
import socket
import ssl
import struct
import threading
import time

DOMAIN = "evil.example.test"
IO_TIMEOUT = 30            # seconds a connection may sit idle
MAX_SEND_SECONDS = 30      # every drip/stream loop ends by then
MAX_STREAM = 256 << 20     # ... and after this many bytes
MAX_REQ_HEAD = 64 << 10    # what we accept from the client
MAX_REQ_BODY = 1 << 20

P = "urn:ietf:params:acme:error:"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def new_nonce():
    return b64u(secrets.token_bytes(16))


class Request:
    def __init__(self, method, path, headers, body):
        self.method, self.path, self.headers, self.body = method, path, headers, body
        self.protected = self.payload = None
        if body:
            try:
                jws = json.loads(body)
                self.protected = json.loads(b64u_decode(jws["protected"]))
                self.payload = b64u_decode(jws["payload"]).decode()
            except (ValueError, KeyError, TypeError):
                pass


class Reply:
    """An ordinary response; the server adds Content-Length and a Replay-Nonce."""

    def __init__(self, status="200 OK", body=b"", ctype="application/json", headers=(),
                 nonce=True, close=False):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        if isinstance(status, int):
            status = f"{status} {REASONS.get(status, 'Whatever')}"
        self.status, self.body, self.ctype = status, body, ctype
        self.headers, self.nonce, self.close = list(headers), nonce, close


class Raw:
    """A response written by fn(ca, conn, req); fn returns True to keep the connection."""

    def __init__(self, fn):
        self.fn = fn


REASONS = {200: "OK", 201: "Created", 204: "No Content", 302: "Found", 400: "Bad Request",
           403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error"}


def problem(status, kind, detail, headers=()):
    return Reply(status, {"type": P + kind, "detail": detail, "status": status},
                 ctype="application/problem+json", headers=headers)


class Conn:
    """One accepted TLS connection, with byte counting and the ways to end it."""

    def __init__(self, ca, sock):
        self.ca, self.sock, self.buf = ca, sock, bytearray()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)
        with self.ca.lock:
            self.ca.bytes_sent += len(data)

    def wait(self, seconds):
        """Sleeps; False once stop() was called."""
        return not self.ca.stopping.wait(seconds)

    def close_clean(self):
        """close_notify, then close: the peer sees a proper end of stream."""
        try:
            self.sock.settimeout(2)
            self.sock.unwrap()
        except (OSError, ValueError):
            pass
        self.sock.close()

    def reset(self):
        """SO_LINGER 0: close() sends a TCP RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def stream(self, chunk, limit=MAX_STREAM, count=None):
        """Sends chunk (bytes, or a function of its index) again and again until
        the peer goes away (send raises), stop(), MAX_SEND_SECONDS, limit bytes
        or count chunks."""
        end = time.monotonic() + MAX_SEND_SECONDS
        sent, k = 0, 0
        while (sent < limit and (count is None or k < count) and time.monotonic() < end
               and not self.ca.stopping.is_set()):
            data = chunk(k) if callable(chunk) else chunk
            self.send(data)
            sent += len(data)
            k += 1
        return sent

    def read_request(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_REQ_HEAD:
                raise ValueError("request head too large")
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        if n > MAX_REQ_BODY:
            raise ValueError("request body too large")
        rest = bytearray(rest)
        while len(rest) < n:
            data = self.sock.recv(65536)
            if not data:
                return None
            rest += data
        self.buf = rest[n:]
        return Request(method, path, headers, bytes(rest[:n]))


class EvilCA:
    def __init__(self, scenario, tls_dir, cert="tls", **opts):
        if scenario not in SCENARIOS:
            raise KeyError(f"unknown scenario {scenario}")
        self.scenario, self.hooks, self.opts = scenario, SCENARIOS[scenario], opts
        self.no_nonce = self.hooks.get("no_nonce", False)
        self.cert = f"{tls_dir}/{cert}.pem"
        self.key = f"{tls_dir}/{cert}.key"
        with open(f"{tls_dir}/leaf.pem") as f, open(f"{tls_dir}/ca.pem") as g:
            self.chain = f.read() + g.read()     # leaf.pem: for the client's CSR
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads, self.socks = [], []
        self.log = []              # (step, method, path, protected header) of every request
        self.requests = []         # (step, Request) of every request
        self.connections = 0
        self.handshake_failures = 0
        self.bytes_sent = 0
        self.challenged = self.finalized = False
        self.identifier = {"type": "dns", "value": DOMAIN}
        self.order_payload = None
        self.cert_id = None
        self.token = b64u(secrets.token_bytes(32))

    # ---- lifecycle ----

    def start(self):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(self.cert, self.key)
        if self.opts.get("tls") == "1.3":           # what the client cannot speak
            self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        elif self.opts.get("tls") == "chacha":
            self.ctx.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
        v6 = self.opts.get("v6")                    # on ::1, addressed as https://[::1]:PORT
        self.listener = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET,
                                      socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("::1" if v6 else "127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.base = f"https://{'[::1]' if v6 else 'localhost'}:{self.port}"
        self.directory = self.base + "/dir"
        self._spawn(self._accept_loop)
        return self

    def stop(self):
        """Stops the server; returns the number of threads still alive after 5 s."""
        self.stopping.set()
        for s in [self.listener] + self.socks:
            try:
                socket.socket.shutdown(s, socket.SHUT_RDWR)
            except OSError:
                pass
        self.listener.close()
        end = time.monotonic() + 5
        for t in list(self.threads):
            t.join(max(0.0, end - time.monotonic()))
        return sum(t.is_alive() for t in self.threads)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self.lock:
            self.threads.append(t)
        t.start()

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.socks.append(raw)
            self._spawn(self._serve, raw)

    def _serve(self, raw):
        raw.settimeout(IO_TIMEOUT)
        try:
            sock = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ValueError):
            with self.lock:
                self.handshake_failures += 1
            raw.close()
            return
        conn = Conn(self, sock)
        try:
            while not self.stopping.is_set():
                req = conn.read_request()
                if req is None:
                    break
                reply = self._respond(req)
                if isinstance(reply, Raw):
                    keep = reply.fn(self, conn, req)
                else:
                    keep = self._write(conn, reply, req)
                if not keep:
                    break
        except Exception:  # the client went away, or stop(): either way this thread ends
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    # ---- answers ----

    def nonce_header(self):
        return f"Replay-Nonce: {new_nonce()}\r\n"

    def head(self, status="200 OK", *headers, ctype="application/json", length=None, nonce=True):
        """A status line and headers as one string, ended by the blank line."""
        h = f"HTTP/1.1 {status}\r\n"
        if ctype:
            h += f"Content-Type: {ctype}\r\n"
        if length is not None:
            h += f"Content-Length: {length}\r\n"
        if nonce and not self.no_nonce:
            h += self.nonce_header()
        return h + "".join(x + "\r\n" for x in headers) + "\r\n"

    def _write(self, conn, r, req):
        h = f"HTTP/1.1 {r.status}\r\n"
        if r.ctype and (r.body or req.method == "HEAD"):
            h += f"Content-Type: {r.ctype}\r\n"
        h += f"Content-Length: {len(r.body)}\r\n"
        if self.opts.get("date_offset") is not None:   # the CA's clock, this far from ours
            date = email.utils.formatdate(time.time() + self.opts["date_offset"], usegmt=True)
            if self.opts.get("date_c1"):        # its day name raw 8-bit C1 bytes
                date = "\x9b\x9b\x9b" + date[3:]
            h += "Date: " + date + "\r\n"
        if r.nonce and not self.no_nonce:
            h += self.nonce_header()
        h += "".join(x + "\r\n" for x in r.headers) + "\r\n"
        conn.send(h.encode("latin-1") + (b"" if req.method == "HEAD" else r.body))
        if r.close:
            conn.close_clean()
            return False
        return True

    def _step(self, req):
        p = req.path
        if p == "/dir":
            return "directory"
        if p.startswith("/ari/") and req.method == "GET":
            return "renewalInfo"
        if p == "/nonce":
            return "newNonce"
        if p == "/acct" and req.method == "POST":
            return "newAccount"
        if p == "/order" and req.method == "POST":
            return "newOrder"
        if p == "/authz/1" and req.method == "POST":
            return "authzPoll" if self.challenged else "authz"
        if p == "/chal/1" and req.method == "POST":
            return "challenge"
        if p == "/finalize/1" and req.method == "POST":
            return "finalize"
        if p == "/order/1" and req.method == "POST":
            return "orderPoll" if self.finalized else "readyPoll"
        if p == "/cert/1" and req.method == "POST":
            return "cert"
        if p == "/revoke" and req.method == "POST":
            return "revokeCert"
        if p == "/key-change" and req.method == "POST":
            return "keyChange"
        return "other"

    def _respond(self, req):
        step = self._step(req)
        with self.lock:
            self.log.append((step, req.method, req.path, req.protected))
            self.requests.append((step, req))
        normal = getattr(self, "_" + step)
        hook = self.hooks.get(step) or self.hooks.get("any")
        return hook(self, req, lambda: normal(req)) if hook else normal(req)

    def count(self, step=None, method=None):
        with self.lock:
            return sum(1 for s, m, _, _ in self.log
                       if (step is None or s == step) and (method is None or m == method))

    def steps(self):
        with self.lock:
            return [s for s, _, _, _ in self.log]

    # ---- the normal flow ----

    def directory_obj(self):
        b = self.base
        d = {"newNonce": b + "/nonce", "newAccount": b + "/acct", "newOrder": b + "/order",
             "revokeCert": b + "/revoke", "keyChange": b + "/key-change",
             "meta": {"termsOfService": b + "/terms"}}
        if "window" in self.opts:     # EvilCA(..., window=(start, end)): ARI (RFC 9773)
            d["renewalInfo"] = b + "/ari"
        return d

    def order_obj(self, status):
        o = {"status": status, "expires": "2099-01-01T00:00:00Z",
             "identifiers": [self.identifier], "authorizations": [self.base + "/authz/1"],
             "finalize": self.base + "/finalize/1"}
        if status == "valid":
            o["certificate"] = self.base + "/cert/1"
        return o

    def challenge_obj(self, status):
        return {"type": "http-01", "url": self.base + "/chal/1", "status": status,
                "token": self.token}

    def authz_obj(self, status):
        return {"identifier": self.identifier, "status": status,
                "expires": "2099-01-01T00:00:00Z",
                # types the client must skip, one without a token (dns-persist-01)
                "challenges": [{"type": "dns-01", "url": self.base + "/chal/2",
                                "status": "pending", "token": b64u(b"dns" * 8)},
                               {"type": "dns-persist-01", "url": self.base + "/chal/3",
                                "status": "pending", "issuer-domain-names": ["ca.example"]},
                               self.challenge_obj("valid" if status == "valid" else "pending")]}

    def _directory(self, req):
        return Reply(200, self.directory_obj(), nonce=False)

    def _newNonce(self, req):
        return Reply(200 if req.method == "HEAD" else 204, ctype=None,
                     headers=["Cache-Control: no-store"])

    def _newAccount(self, req):
        return Reply(201, {"status": "valid", "orders": self.base + "/acct/1/orders"},
                     headers=[f"Location: {self.base}/acct/1"])

    def _newOrder(self, req):
        self.order_payload = req.payload
        try:
            self.identifier = json.loads(req.payload)["identifiers"][0]
        except (TypeError, ValueError, KeyError, IndexError):
            pass
        return Reply(201, self.order_obj("pending"), headers=[f"Location: {self.base}/order/1"])

    def _renewalInfo(self, req):
        self.cert_id = req.path[len("/ari/"):]
        start, end = self.opts["window"]
        return Reply(200, {"suggestedWindow": {"start": start, "end": end},
                           "explanationURL": self.base + "/why"}, nonce=False,
                     headers=["Retry-After: 21600"])

    def _authz(self, req):
        return Reply(200, self.authz_obj("pending"))

    def _challenge(self, req):
        self.challenged = True
        return Reply(200, self.challenge_obj("processing"),
                     headers=[f'Link: <{self.base}/authz/1>;rel="up"'])

    def _authzPoll(self, req):
        return Reply(200, self.authz_obj("valid"))

    def _finalize(self, req):
        self.finalized = True
        return Reply(200, self.order_obj("processing"), headers=[f"Location: {self.base}/order/1"])

    def _readyPoll(self, req):
        return Reply(200, self.order_obj("ready" if self.challenged else "pending"))

    def _orderPoll(self, req):
        return Reply(200, self.order_obj("valid"))

    def _cert(self, req):
        return Reply(200, self.chain, ctype="application/pem-certificate-chain")

    def _revokeCert(self, req):
        return Reply(200, b"", ctype=None)

    def _keyChange(self, req):
        return Reply(200, {"status": "valid", "orders": self.base + "/acct/1/orders"},
                     headers=[f"Location: {self.base}/acct/1"])

    def _other(self, req):
        return problem(404, "malformed", "no such resource")


# ===================== scenarios =====================
#
# Each scenario maps a step name (or "any") to hook(ca, req, normal), which
# returns a Reply or a Raw; normal() is the answer the CA would have given.


def body(data, status=200, ctype="application/json", **kw):
    """A hook answering with this body (bytes or str; a function of ca is called)."""
    def hook(ca, req, normal):
        normal()
        return Reply(status, data(ca) if callable(data) else data, ctype=ctype, **kw)
    return hook


def raw(fn):
    """A hook whose answer is written by fn(ca, conn, req)."""
    return lambda ca, req, normal: (normal(), Raw(fn))[1]


def chain_of(name):
    """A hook answering the download with keys/NAME.pem and the test CA's certificate."""
    def hook(ca, req, normal):
        normal()
        d = os.path.dirname(ca.cert)
        with open(os.path.join(d, name + ".pem")) as f, open(os.path.join(d, "ca.pem")) as g:
            return Reply(200, f.read() + g.read(), ctype="application/pem-certificate-chain")
    return hook


def with_token(token):
    def hook(ca, req, normal):
        ca.token = token
        return normal()
    return hook


def mutate(fn):
    """A hook that answers normal() with its JSON body rewritten by fn(obj) (a str or bytes)."""
    def hook(ca, req, normal):
        r = normal()
        r.body = fn(json.loads(r.body))
        if isinstance(r.body, str):
            r.body = r.body.encode()
        return r
    return hook


def busy_once(step, status=503, kind="serverInternal", detail="evil CA: busy"):
    """The first request of step gets status with Retry-After: 1; later ones are served."""
    return lambda ca, req, normal: normal() if ca.count(step) > 1 else \
        problem(status, kind, detail, headers=["Retry-After: 1"])


def retry_after(value, status):
    """The authorization stays pending (or the order processing) with this Retry-After."""
    def hook(ca, req, normal):
        r = normal()
        obj = ca.authz_obj(status) if req.path.startswith("/authz") else ca.order_obj(status)
        r.body = json.dumps(obj).encode()
        if value is not None:
            r.headers.append(f"Retry-After: {value}")
        return r
    return hook


# ---- HTTP ----

def _huge_header_line(ca, conn, req):
    conn.send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Huge: ")
    conn.stream(b"a" * 65536, limit=1 << 20)
    conn.send("\r\nContent-Length: 2\r\n\r\n{}")
    return False


def _many_headers(ca, conn, req):
    conn.send("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n" + ca.nonce_header())
    conn.stream(lambda k: "".join(f"X-Header-{k * 1000 + i}: {i}\r\n" for i in range(1000)).encode(),
                count=100)
    conn.send("Content-Length: 2\r\n\r\n{}")
    return False


def _content_length_200m(ca, conn, req):
    conn.send(ca.head("200 OK", length=200 << 20, nonce=False))
    conn.stream(b" " * 65536, limit=200 << 20)
    return False


def _close_delimited_200m(ca, conn, req):
    conn.send(ca.head("201 Created", f"Location: {ca.base}/order/1"))
    conn.stream(b" " * 65536, limit=200 << 20)
    return False


def _endless_chunked(ca, conn, req):
    conn.send(ca.head("200 OK", "Transfer-Encoding: chunked",
                      ctype="application/pem-certificate-chain"))
    conn.stream(b"1000\r\n" + b"A" * 0x1000 + b"\r\n")
    return False


def _chunk_size(size):
    def fn(ca, conn, req):
        conn.send(ca.head("200 OK", "Transfer-Encoding: chunked")
                  + f"{size}\r\n{{}}\r\n0\r\n\r\n")
        return False
    return fn


def _short_body_then_close(ca, conn, req):
    conn.send(ca.head("200 OK", length=1000) + '{"status":"valid"')
    conn.close_clean()
    return False


def _reset_mid_body(ca, conn, req):
    conn.send(ca.head("200 OK", length=1000) + '{"type":"http-01","status":"pro')
    conn.reset()
    return False


def _drip(ca, conn, req):
    """One byte every 2 seconds, forever (until the peer goes or MAX_SEND_SECONDS)."""
    text = ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Drip: "
            + "a" * 1000).encode()
    end = time.monotonic() + MAX_SEND_SECONDS
    k = 0
    while time.monotonic() < end:
        conn.send(text[k % len(text):k % len(text) + 1])
        k += 1
        if not conn.wait(2):
            break
    return False


def _silent(ca, conn, req):
    """The request taken, and not a byte back (until stop() or MAX_SEND_SECONDS)."""
    conn.wait(MAX_SEND_SECONDS)
    return False


def _garbage_status(ca, conn, req):
    """Letters O for zeros: garbage that looks almost right."""
    conn.send("HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\n{}")
    return False


def _close_delimited_directory(ca, conn, req):
    conn.send(ca.head("200 OK", nonce=False) + json.dumps(ca.directory_obj()))
    conn.close_clean()
    return False


def _close_after_each(ca, req, normal):
    if ca._step(req) == "cert":
        r = problem(500, "serverInternal", "evil CA reached the end, one connection per request")
    else:
        r = normal()

    def write_and_close(ca, conn, req):
        ca._write(conn, r, req)
        return False    # the connection then ends with a plain close(), no close_notify
    return Raw(write_and_close)


def _close_delimited_truncated(ca, conn, req):
    """A close-delimited directory that ends with a plain TCP close, no
    close_notify: over TLS that is a truncation, not an end of body."""
    conn.send(ca.head("200 OK", nonce=False) + json.dumps(ca.directory_obj()))
    return False


# ---- JSON ----

def _nested(depth, closers):
    return lambda ca: "[" * depth + "]" * closers


def _huge_number(ca):
    return ('{"status": ' + "9" * 100_000 + ', "finalize": "%s/finalize/1"}' % ca.base)


# ---- protocol ----

def _bad_nonce_forever(ca, req, normal):
    if req.method != "POST":
        return normal()
    return problem(400, "badNonce", "evil CA: JWS has an invalid anti-replay nonce")


def _without_location(ca, req, normal):
    r = normal()
    r.headers = [h for h in r.headers if not h.startswith("Location:")]
    return r


def _extra_response(ca, conn, req):
    """The directory, and straight after it a response nobody asked for: it
    must not become the answer to the next request (a nonce planted ahead)."""
    data = json.dumps(ca.directory_obj()).encode()
    conn.send(ca.head("200 OK", length=len(data), nonce=False).encode() + data +
              b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nReplay-Nonce: plantedNonce0\r\n\r\n")
    return True


def _extra_record(ca, req, normal):
    """The challenge's answer, then in a TLS record of its own a response nobody
    asked for: the client polls 20 ms later, and must not take it for the answer."""
    r = normal()

    def write_twice(ca, conn, req):
        # no Nagle: the second record may not wait for the ACK that our next request brings
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        kept = ca._write(conn, r, req)
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nReplay-Nonce: plantedNonce0\r\n\r\n")
        return kept
    return Raw(write_twice)


def _cut_after_status(ca, conn, req):
    """A status line, then the end of the kept-alive connection: the request
    got there, and must not be sent a second time."""
    conn.send("HTTP/1.1 201 Created\r\n")
    conn.close_clean()
    return False


def _record_cut(ca, conn, req):
    """The first 10 bytes of a TLS record (its header says 64 bytes follow), written straight
    to the socket beneath TLS, then a plain close: an answer cut off inside its first record.
    The request got there (the CA began to answer), and must not be sent a second time."""
    socket.socket.sendall(conn.sock, b"\x17\x03\x03\x00\x40" + secrets.token_bytes(5))
    return False


def _record_corrupt(ca, conn, req):
    """A whole TLS application-data record that does not decrypt (what a flipped bit on
    the way makes of an answer), then a plain close: a TLS error, and the request, which
    got there, not sent a second time."""
    socket.socket.sendall(conn.sock, b"\x17\x03\x03\x00\x40" + secrets.token_bytes(64))
    return False


def _dropped_once(how):
    """The first such request taken, and its kept-alive connection ended without a byte of an
    answer (how: "close_clean", with close_notify; "reset"), as by a CA that closed it just as
    the request came; not done, so it must go once more on a new connection."""
    def hook(ca, req, normal):
        if getattr(ca, "dropped", False):
            return normal()
        ca.dropped = True
        return Raw(lambda ca, conn, req: getattr(conn, how)())
    return hook


def _redirect(ca, req, normal):
    return Reply(302, b"", ctype=None, headers=[f"Location: {ca.base}/redirected"])


def _order_reply(ca, status):
    return Reply(201, ca.order_obj(status), headers=[f"Location: {ca.base}/order/1"])


def _order_invalid(ca, req, normal):
    return Reply(200, ca.order_obj("invalid"))


def _challenge_invalid(ca, req, normal):
    normal()
    a = ca.authz_obj("invalid")
    next(c for c in a["challenges"] if c["type"] == "http-01").update(status="invalid", error={
        "type": P + "connection", "status": 400,
        "detail": "evil CA could not connect to 192.0.2.1:80"})
    return Reply(200, a)


def _eab_single_use(ca, req, normal):
    """newAccount at a CA that requires External Account Binding and whose EAB
    keys are single-use, as Google's: EvilCA(..., exists=True) has an account
    for the key already, and a binding sent again is refused as unknown;
    none=KIND: the problem that says there is none (accountDoesNotExist)."""
    p, exists = json.loads(req.payload or "{}"), ca.opts["exists"]
    if p.get("onlyReturnExisting") and not exists:
        return problem(400, ca.opts.get("none", "accountDoesNotExist"), "evil CA: no account")
    if "externalAccountBinding" in p and exists:
        return problem(403, "unauthorized", "evil CA: Unknown external account binding (EAB) key")
    if "externalAccountBinding" not in p and not exists:
        return problem(403, "externalAccountRequired", "evil CA: EAB required")
    r = normal()
    r.status = "200 OK" if exists else r.status
    return r


def _control_chars(ca, req, normal):
    normal()
    detail = ('"red\\u001b[31mRED \\u001b]0;title\\u0007 CR\\rLF\\nBS\\b '
              'C1esc\\u009b31m rawC1\u009b31m rawDEL\x7f end"')
    data = ('{"type": "urn:ietf:params:acme:error:unauthorized\\u001b[0m", "detail": '
            + detail + ', "status": 403}').encode("utf-8")
    return Reply(403, data, ctype="application/problem+json",
                 headers=["Retry-After: \x1b[2J\x1b[H9\x08"])


def _http_order_directory(ca, req, normal):
    """The directory's newOrder is EvilCA(..., http_order="http://...")."""
    normal()
    d = ca.directory_obj()
    d["newOrder"] = ca.opts["http_order"]
    return Reply(200, d, nonce=False)


def _slow_bad_nonce(ca, req, normal):
    """Every poll of the authorization: 2 s of silence, then badNonce."""
    normal()
    def fn(ca, conn, req):
        if not conn.wait(2):
            return False
        body = json.dumps({"type": P + "badNonce", "detail": "evil CA: stale nonce"}).encode()
        conn.send(ca.head("400 Bad Request", ctype="application/problem+json", length=len(body)))
        conn.send(body)
        return True
    return Raw(fn)


SCENARIOS = {
    "normal": {},
    # challenge tokens
    "token_dotdot": {"authz": with_token("../x")},
    "token_dotdot2": {"authz": with_token("../../etc/x")},
    "token_absolute": {"authz": with_token("/tmp/acme-tiny-evil-abs")},
    "token_slash": {"authz": with_token("a/b")},
    "token_percent": {"authz": with_token("%2e%2e")},
    "token_nul": {"authz": with_token("abc\x00def")},
    "token_empty": {"authz": with_token("")},
    "token_5000": {"authz": with_token("A" * 5000)},
    "token_256": {"authz": with_token("A" * 256)},      # a file name's limit is 255 bytes
    "token_255": {"authz": with_token("A" * 255)},
    "token_existing_file": {"authz": with_token("index")},
    "token_hardlink": {"authz": with_token("outside")},
    "token_fifo": {"authz": with_token("fifo")},
    # HTTP
    "http_header_line_1m": {"directory": raw(_huge_header_line)},
    "http_headers_100000": {"newAccount": raw(_many_headers)},
    "http_content_length_200m": {"directory": raw(_content_length_200m)},
    "http_close_delimited_200m": {"newOrder": raw(_close_delimited_200m)},
    "http_chunked_endless": {"cert": raw(_endless_chunked)},
    "http_chunk_size_overflow": {"authz": raw(_chunk_size("fffffffffffffffff"))},
    "http_chunk_size_negative": {"authz": raw(_chunk_size("-1"))},
    "http_short_body_close": {"readyPoll": raw(_short_body_then_close)},
    "http_reset_mid_body": {"challenge": raw(_reset_mid_body)},
    "http_drip": {"directory": raw(_drip)},
    "http_silent_new_order": {"newOrder": raw(_silent)},
    "http_garbage_status": {"newOrder": raw(_garbage_status)},
    "http_close_delimited_directory": {
        "directory": raw(_close_delimited_directory),
        "cert": lambda ca, req, normal: problem(
            500, "serverInternal", "evil CA reached the end after a close-delimited directory")},
    "http_close_after_each": {"any": _close_after_each},
    "http_close_delimited_truncated": {"directory": raw(_close_delimited_truncated)},
    # JSON (100,000 "[" and 100,000 "]" would be over the 128 KiB body limit and
    # never reach the parser: 100,000 deep but only 31,000 closed, or 65,000 balanced)
    "json_nested_100000": {"directory": body(_nested(100_000, 31_000))},
    "json_nested_65000_balanced": {"directory": body(_nested(65_000, 65_000))},
    "json_invalid_utf8": {"newOrder": mutate(
        lambda o: (json.dumps(o)[:-1] + ', "note": "bad \xff\xfe byte"}').encode("latin-1"))},
    "json_lone_surrogate": {"authz": mutate(lambda o: json.dumps(o)[:-1] + ', "note": "\\ud800"}')},
    "json_nul_in_string": {"directory": mutate(
        lambda o: json.dumps(o).replace('/nonce"', '/nonce\\u0000evil"'))},
    "json_huge_number": {"finalize": body(_huge_number)},
    "json_duplicate_keys": {"authz": mutate(
        lambda o: '{"status": "pending", ' + json.dumps(o)[1:])},
    "json_trailing_garbage": {"readyPoll": mutate(lambda o: json.dumps(o) + ' {"status": "valid"}')},
    "json_not_json": {"finalize": body("<html><body>Service Unavailable</body></html>")},
    "json_status_number": {"readyPoll": mutate(lambda o: json.dumps(dict(o, status=1)))},
    "json_authorizations_string": {"newOrder": mutate(
        lambda o: json.dumps(dict(o, authorizations=o["authorizations"][0])))},
    # protocol
    "proto_no_nonce": {"no_nonce": True},
    "proto_bad_nonce_forever": {"any": _bad_nonce_forever},
    "proto_account_no_location": {"newAccount": _without_location},
    "proto_order_no_location": {"newOrder": _without_location},
    "proto_pending_retry_0": {"readyPoll": retry_after("0", "pending")},
    # the first poll: pending, to come back 2 s later by the CA's clock (date_offset from ours)
    "proto_retry_date_ca_clock": {"readyPoll": lambda ca, req, normal: retry_after(
        email.utils.formatdate(time.time() + ca.opts["date_offset"] + 2, usegmt=True),
        "pending")(ca, req, normal) if ca.count("readyPoll") == 1 else normal()},
    "proto_pending_retry_999999": {"readyPoll": retry_after("999999", "pending")},
    "proto_processing_forever": {"orderPoll": retry_after(None, "processing")},
    "proto_challenge_invalid": {"readyPoll": _order_invalid, "authzPoll": _challenge_invalid},
    # a dns-01 challenge for the hook, then an order status RFC 8555 does not have
    "proto_order_status_unknown": {
        "authz": lambda ca, req, normal: Reply(200, dict(ca.authz_obj("pending"), challenges=[
            dict(ca.challenge_obj("pending"), type="dns-01")])),
        "readyPoll": lambda ca, req, normal: Reply(
            200, ca.order_obj("expired" if ca.challenged else "pending"))},
    # an invalid order that lists its one authorization (valid) a thousand times
    "proto_invalid_long_list": {"readyPoll": lambda ca, req, normal: Reply(200, dict(
        ca.order_obj("invalid"), authorizations=[ca.base + "/authz/1"] * 1000))},
    "proto_cert_empty": {"cert": body(b"", ctype="application/pem-certificate-chain")},
    # a good chain from the trusted CA, but for another key (the server's own)
    "proto_cert_other_key": {"cert": lambda ca, req, normal: Reply(
        200, open(ca.cert).read() + ca.chain.split("-----END CERTIFICATE-----\n", 1)[1],
        ctype="application/pem-certificate-chain")},
    # for the CSR's key, but not what was ordered (keys/leaf-*.pem)
    "proto_cert_other_names": {"cert": chain_of("leaf-other-names")},
    "proto_cert_extra_name": {"cert": chain_of("leaf-extra-name")},
    "proto_cert_expired": {"cert": chain_of("leaf-expired")},
    "proto_cert_reversed": {"cert": chain_of("leaf-reversed")},
    "proto_cert_future": {"cert": chain_of("leaf-future")},
    "proto_cert_soon": {"cert": chain_of("leaf-soon")},
    "proto_cert_html": {"cert": body("<!DOCTYPE html>\n<html><body>Your certificate is ready"
                                     "</body></html>\n", ctype="text/html")},
    "proto_cert_trailing_escape": {"cert": lambda ca, req, normal: (
        lambda r: (setattr(r, "body", r.body + b"\x1b]0;pwned by CA\x07\x1b[2J\n"), r)[1])(normal())},
    "proto_slow_polls": {"readyPoll": _slow_bad_nonce},
    "proto_redirect_new_order": {"newOrder": _redirect},
    "proto_http_new_order": {"directory": _http_order_directory},
    # URLs on another port of the same host (EvilCA(..., elsewhere="https://...")):
    # a challenge, and a certificate, that would send us to another service
    "proto_challenge_elsewhere": {"authz": lambda ca, req, normal: Reply(200, dict(
        ca.authz_obj("pending"), challenges=[dict(ca.challenge_obj("pending"),
                                                  url=ca.opts["elsewhere"] + "/chal/1")]))},
    "proto_certificate_elsewhere": {"orderPoll": lambda ca, req, normal: Reply(200, dict(
        ca.order_obj("valid"), certificate=ca.opts["elsewhere"] + "/cert/1"))},
    # a challenge URL on the directory's port, but another host name for this machine
    "proto_challenge_other_host": {"authz": lambda ca, req, normal: Reply(200, dict(
        ca.authz_obj("pending"), challenges=[dict(ca.challenge_obj("pending"),
                                                  url=f"https://127.0.0.1:{ca.port}/chal/1")]))},
    "proto_account_http_location": {"newAccount": lambda ca, req, normal: Reply(
        201, {"status": "valid"}, headers=[f"Location: http://localhost:{ca.port}/acct/1"])},
    # an identifier of another type with our name's value; one authorization twice
    "proto_identifier_type": {"authz": lambda ca, req, normal: Reply(200, dict(
        ca.authz_obj("pending"), identifier={"type": "foo", "value": ca.identifier["value"]}))},
    "proto_authz_twice": {"newOrder": mutate(lambda o: json.dumps(
        dict(o, authorizations=o["authorizations"] * 2)))},
    "proto_authz_invalid": {"authz": lambda ca, req, normal: Reply(200, ca.authz_obj("invalid"))},
    # newNonce fails (a HEAD: no problem document can come); the order fails after finalize
    "proto_new_nonce_500": {"newNonce": lambda ca, req, normal: Reply(500, ctype=None)},
    "proto_invalid_after_finalize": {"orderPoll": lambda ca, req, normal: Reply(200, dict(
        ca.order_obj("invalid"), error={"type": P + "badCSR", "detail": "key too weak"}))},
    # every challenge but http-01: dns-01 and dns-persist-01, none for --acme-dir
    "proto_no_http01": {"authz": lambda ca, req, normal: Reply(200, dict(
        ca.authz_obj("pending"), challenges=ca.authz_obj("pending")["challenges"][:2]))},
    # an order without its list of authorizations; one whose list holds no URL, or a URL
    # that is not one (a space in its path); an answer that is JSON but no object
    "proto_order_no_authorizations": {"newOrder": mutate(lambda o: json.dumps(
        {k: v for k, v in o.items() if k != "authorizations"}))},
    "proto_authz_not_string": {"newOrder": mutate(lambda o: json.dumps(
        dict(o, authorizations=[1])))},
    "proto_authz_url_space": {"newOrder": mutate(lambda o: json.dumps(
        dict(o, authorizations=[o["authorizations"][0] + " x"])))},
    "proto_order_array": {"newOrder": mutate(lambda o: json.dumps([o]))},
    # "wildcard": false, as a CA may say of every name that is no wildcard
    "proto_wildcard_false": {"authz": mutate(lambda o: json.dumps(dict(o, wildcard=False)))},
    # the order never ready at finalize: orderNotReady every time
    "order_not_ready_always": {"finalize": lambda ca, req, normal: problem(
        403, "orderNotReady", "evil CA: the order is not ready")},
    # a problem type outside the ACME namespace that ends as badNonce does: no retry
    "problem_other_namespace": {"newAccount": lambda ca, req, normal: Reply(400, {
        "type": "urn:ietf:params:xxxx:error:badNonce", "detail": "evil CA: not ACME's"},
        ctype="application/problem+json")},
    # profiles (draft-ietf-acme-profiles) as a list of names, not an object
    "profiles_list": {"directory": lambda ca, req, normal: Reply(200, dict(
        ca.directory_obj(), meta={"profiles": ["classic", "shortlived"]}), nonce=False)},
    "http_extra_response": {"directory": raw(_extra_response)},
    "http_extra_record": {"challenge": _extra_record},
    "http_cut_after_status": {"newAccount": raw(_cut_after_status)},
    "http_record_cut": {"newOrder": raw(_record_cut)},
    "http_record_corrupt": {"newOrder": raw(_record_corrupt)},
    "http_dropped_notify": {"newOrder": _dropped_once("close_clean")},
    "http_dropped_reset": {"newOrder": _dropped_once("reset")},
    # an IMF-fixdate Retry-After whose day name is raw 8-bit C1 bytes
    "proto_retry_date_c1": {"readyPoll": retry_after("\x9b\x9b\x9b, 01 Jan 2099 00:00:00 GMT",
                                                     "pending")},
    # problem documents
    # RFC 8555 erratum 5732: a challenge may carry an error and still be
    # processing (the CA retries): the order stays pending, and the client
    # must keep polling it
    "retrying_with_error": {"readyPoll": lambda ca, req, normal: normal() if ca.count("readyPoll") > 2
                            else Reply(200, ca.order_obj("pending"))},
    # order states (RFC 8555 7.1.6): a CA whose order lags its authorizations
    # says orderNotReady to the first finalize
    "order_not_ready_once": {"finalize": lambda ca, req, normal: normal() if ca.count("finalize") > 1
                             else problem(403, "orderNotReady", "evil CA: the order is not ready")},
    # finalize answers with the order still ready (7.4 allows processing, valid or
    # invalid): the client must not finalize again without end
    "finalize_still_ready": {"finalize": lambda ca, req, normal: Reply(200, ca.order_obj("ready"))},
    # newOrder hands back an order that exists already, in each state
    "order_ready": {"newOrder": lambda ca, req, normal: (normal(), _order_reply(ca, "ready"))[1]},
    "order_processing": {"newOrder": lambda ca, req, normal: (
        normal(), setattr(ca, "finalized", True), _order_reply(ca, "processing"))[2]},
    "order_valid": {"newOrder": lambda ca, req, normal: (
        normal(), setattr(ca, "finalized", True), _order_reply(ca, "valid"))[2]},
    "order_invalid": {"newOrder": lambda ca, req, normal: (normal(), Reply(201, dict(
        ca.order_obj("invalid"), error={"type": P + "unauthorized", "detail": "evil CA: no"}),
        headers=[f"Location: {ca.base}/order/1"]))[1]},
    # the authorization is valid already: no file, no challenge, the order polled at once
    "authz_valid": {"authz": lambda ca, req, normal: (setattr(ca, "challenged", True),
                                                      Reply(200, ca.authz_obj("valid")))[1]},
    # the order is valid already at the first poll after the challenges (a CA that issues as
    # soon as they pass): no finalize, the certificate downloaded
    "order_valid_after_challenge": {"readyPoll": lambda ca, req, normal: Reply(
        200, ca.order_obj("valid" if ca.challenged else "pending"))},
    # the challenge is valid in the answer to its POST (a CA that validates at once)
    "challenge_valid": {"challenge": lambda ca, req, normal: (normal(), Reply(
        200, ca.challenge_obj("valid")))[1]},
    # new terms of service (RFC 8555 7.3.3): where the user must act
    "user_action_required": {"newOrder": lambda ca, req, normal: Reply(403, {
        "type": P + "userActionRequired", "detail": "evil CA: agree to the new terms",
        "instance": ca.base + "/terms/agree"}, ctype="application/problem+json",
        headers=[f'Link: <{ca.base}/dir>;rel="index"', f'Link: <{ca.base}/terms/v2>;rel="terms-of-service"'])},
    # a problem with subproblems (RFC 8555 6.7.1): which names, and why
    "subproblems": {"newOrder": lambda ca, req, normal: Reply(400, {
        "type": P + "rejectedIdentifier", "detail": "evil CA: cannot issue for 2 identifiers",
        "subproblems": [
            {"type": P + "rejectedIdentifier", "detail": "evil CA: forbidden name",
             "identifier": {"type": "dns", "value": "bad.example"}},
            {"type": P + "caa", "detail": "evil CA: CAA forbids it"}]},
        ctype="application/problem+json")},
    # subproblems that are no list: nothing to add to the problem
    "subproblems_not_list": {"newOrder": lambda ca, req, normal: Reply(400, {
        "type": P + "rejectedIdentifier", "detail": "evil CA: cannot issue for 1 identifier",
        "subproblems": {"type": P + "caa", "identifier": {"type": "dns", "value": "x.example"}}},
        ctype="application/problem+json")},
    # ARI answers (RFC 9773) that cannot be used: the client goes by the lifetime
    "ari_malformed": {"renewalInfo": body('{"suggestedWindow": {"start": "2020-01-01T00:00:00Z"')},
    "ari_wrong_types": {"renewalInfo": body('{"suggestedWindow": {"start": 1, "end": 2}}')},
    "ari_no_window": {"renewalInfo": body('{"explanationURL": "https://x.test/"}')},
    "ari_bad_date": {"renewalInfo": body('{"suggestedWindow": {"start": "2020-01-01", '
                                         '"end": "2020-01-02T00:00:00Z"}}')},
    "ari_end_before_start": {"renewalInfo": body('{"suggestedWindow": {"start": '
                                                 '"2020-01-02T00:00:00Z", "end": "2020-01-01T00:00:00Z"}}')},
    "ari_end_is_start": {"renewalInfo": body('{"suggestedWindow": {"start": '
                                             '"2020-01-01T00:00:00Z", "end": "2020-01-01T00:00:00Z"}}')},
    "ari_error": {"renewalInfo": lambda ca, req, normal: problem(404, "malformed", "evil CA: no")},
    # no answer at all: garbage for a status line, a body without end, a drip until --timeout
    "ari_garbage_status": {"renewalInfo": raw(_garbage_status)},
    "ari_endless": {"renewalInfo": raw(_endless_chunked)},
    "ari_drip": {"renewalInfo": raw(_drip)},
    # a usable window, but under a status other than 200: no answer to go by
    "ari_not_200": {"renewalInfo": body('{"suggestedWindow": {"start": "2020-01-01T00:00:00Z", '
                                        '"end": "2020-01-02T00:00:00Z"}}', status=404)},
    # a replacement refused: the same certificate replaced already (409)
    "ari_already_replaced": {"newOrder": lambda ca, req, normal: problem(
        409, "alreadyReplaced", "evil CA: replaced already") if "replaces" in (req.payload or "")
        else normal()},
    # ...and refused without it too: newOrder twice, then the failure
    "ari_already_replaced_always": {"newOrder": lambda ca, req, normal: problem(
        409, "alreadyReplaced", "evil CA: replaced already")},
    # ...refused in other words (Pebble 2.6: another account's certificate), or rate limited
    "ari_replaces_unauthorized": {"newOrder": lambda ca, req, normal: problem(
        403, "unauthorized", "evil CA: requester account did not request the certificate being"
        " replaced by this order") if "replaces" in (req.payload or "") else normal()},
    "ari_replaces_rate_limited": {"newOrder": lambda ca, req, normal: problem(
        429, "rateLimited", "evil CA: too many certificates") if "replaces" in (req.payload or "")
        else normal()},
    "ari_replaces_rate_limited_403": {"newOrder": lambda ca, req, normal: problem(
        403, "rateLimited", "evil CA: too many certificates") if "replaces" in (req.payload or "")
        else normal()},
    # ...or failing on it (Pebble 2.6, for a serial whose first byte is above 0x7F)
    "ari_replaces_server_error": {"newOrder": lambda ca, req, normal: problem(
        500, "serverInternal", "evil CA: broken") if "replaces" in (req.payload or "")
        else normal()},
    # ...or a rate limit by no name, or a busy CA (503, no Retry-After to wait for)
    "ari_replaces_429_unnamed": {"newOrder": lambda ca, req, normal: Reply(
        429, "Too Many Requests", ctype="text/plain") if "replaces" in (req.payload or "")
        else normal()},
    "ari_replaces_busy": {"newOrder": lambda ca, req, normal: Reply(
        503, "Service Unavailable", ctype="text/plain") if "replaces" in (req.payload or "")
        else normal()},
    "eab_single_use": {"newAccount": _eab_single_use},
    # a binding sent, and still externalAccountRequired (its key refused in those words):
    # the CA's problem, not advice to give what was given
    "eab_required_with_eab": {"newAccount": lambda ca, req, normal: problem(
        400, "accountDoesNotExist", "evil CA: no account")
        if json.loads(req.payload or "{}").get("onlyReturnExisting")
        else problem(403, "externalAccountRequired", "evil CA: that binding is no good")},
    # a directory that lists certificate profiles (draft-ietf-acme-profiles)
    "profiles": {"directory": lambda ca, req, normal: Reply(200, dict(
        ca.directory_obj(), meta={"profiles": {"classic": "90 days", "shortlived": "160 hours"}}),
        nonce=False)},
    # a busy CA: 503 + Retry-After once (then served), or every time; per-endpoint rate
    # limits answer GETs and HEADs too
    "busy_once": {"newOrder": busy_once("newOrder")},
    "busy_once_directory": {"directory": busy_once("directory")},
    "busy_once_nonce": {"newNonce": busy_once("newNonce")},
    # newNonce's HEAD answered 204 No Content, as RFC 8555 7.2 has it for GET
    "nonce_head_204": {"newNonce": lambda ca, req, normal: (normal(), Reply(
        204, ctype=None, headers=["Cache-Control: no-store"]))[1]},
    # pending with Retry-After 3, then 503 with Retry-After 4: past --max-wait 4
    "busy_while_polling": {"readyPoll": lambda ca, req, normal: problem(
        503, "serverInternal", "evil CA: busy", headers=["Retry-After: 4"])
        if ca.count("readyPoll") > 1 else retry_after(3, "pending")(ca, req, normal)},
    "busy_once_429": {"newOrder": busy_once("newOrder", 429, "rateLimited", "evil CA: slow down")},
    # busy, but without saying when to come back: not a wait the client may guess
    "busy_no_retry_after": {"newOrder": lambda ca, req, normal: problem(
        503, "serverInternal", "evil CA: busy")},
    # busy with Retry-After: 0 at the directory: no wait adds up to --max-wait
    "busy_forever_directory": {"directory": lambda ca, req, normal: problem(
        503, "serverInternal", "evil CA: busy", headers=["Retry-After: 0"])},
    "busy_forever": {"newOrder": lambda ca, req, normal: problem(
        503, "serverInternal", "evil CA: busy", headers=["Retry-After: 1"])},
    "problem_rate_limited": {"newOrder": lambda ca, req, normal: problem(
        429, "rateLimited", "evil CA: too many new orders recently",
        headers=["Retry-After: 3600"])},
    "problem_unauthorized": {"newAccount": lambda ca, req, normal: problem(
        403, "unauthorized", "evil CA: this account key is refused")},
    "problem_malformed": {"finalize": lambda ca, req, normal: problem(
        400, "malformed", "evil CA: the CSR is refused")},
    "problem_control_chars": {"newAccount": _control_chars},
    # a header value is not JSON, so not UTF-8-checked: raw 8-bit C1 (0x9B is
    # CSI for a terminal in 8-bit mode) and ESC in the Retry-After of a 429
    "problem_raw_c1_header": {"newOrder": lambda ca, req, normal: problem(
        429, "rateLimited", "evil CA: slow down",
        headers=["Retry-After: \x9b2J\x9b31m\x1b[5m60\x85"])},
    # TLS (the certificate is chosen by the cert= argument)
    "tls": {},
    # signals: the authorization stays pending, the client sleeps 3 s between polls
    "signal_pending": {"readyPoll": retry_after("3", "pending")},
    # the account's life (RFC 8555 7.6 and 7.3.5): revokeCert and keyChange
    # answered with an error, with garbage (not JSON, or no HTTP at all), or
    # without end (an endless chunked body; a drip until --timeout)
    **{f"{name}_{kind}": {step: hook} for name, step in (("revoke", "revokeCert"),
                                                          ("key_change", "keyChange"))
       for kind, hook in (
           ("unauthorized", lambda ca, req, normal: problem(
               403, "unauthorized", "evil CA: not yours to change")),
           ("not_json", body("<html><body>502 Bad Gateway</body></html>", status=502,
                             ctype="text/html")),
           ("garbage_status", raw(_garbage_status)),
           ("endless_chunked", raw(_endless_chunked)),
           ("drip", raw(_drip)))},
    # a directory without the revokeCert or keyChange URL
    "dir_no_revoke": {"directory": lambda ca, req, normal: Reply(200, {
        k: v for k, v in ca.directory_obj().items() if k != "revokeCert"}, nonce=False)},
    "dir_no_key_change": {"directory": lambda ca, req, normal: Reply(200, {
        k: v for k, v in ca.directory_obj().items() if k != "keyChange"}, nonce=False)},
}
