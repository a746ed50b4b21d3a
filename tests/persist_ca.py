"""A test ACME CA that offers dns-persist-01 (draft-ietf-acme-dns-persist), on 127.0.0.1.

Debian's Pebble 2.4 has no dns-persist-01, so this CA, built on EvilCA (its
TLS server, nonces, request log; no JWS signature is checked), serves:

    with PersistCA(tls_dir, mode="draft-02") as ca:
        ca.set_record("_validation-persist.example.com", ['pebble.letsencrypt.org; accounturi=...'])
        ... acme-tiny --dns-persist --directory-url ca.directory ...

- newAccount: one account per key (RFC 7638 thumbprint of the protected
  header's JWK): https://localhost:PORT/acct/N, 201 when new, 200 after.
- newOrder: one authorization per identifier; "*.NAME" gives an authorization
  for NAME with "wildcard": true. Each pending authorization offers http-01,
  dns-01 and dns-persist-01 (challenges at /chal/AUTHZ/TYPE), in the order of
  `challenge_types`; a name in `no_persist` (as requested, "*." kept) gets no
  dns-persist-01. With stale_error, each dns-01 carries an error of an
  earlier attempt ("stale dns-01 attempt"), as a CA may keep one.
- mode "draft-01" (Pebble 2.10.1): the challenge carries
  "issuer-domain-names"; the record's accounturi is the account URL.
  mode "draft-02": the directory's meta carries "issuerDomainNames" and
  "accountHashPrefix", the challenge "issuerDomainNames"; accounturi is
  accountHashPrefix + "sha-256/" + account_hash(name, thumbprint, URL).
  mode "caa": only the directory's meta "caaIdentities"; accounturi is the URL.
- A POST to a dns-persist-01 challenge looks up the TXT strings the test put
  at _validation-persist.NAME (set_record) and checks them (check_record):
  the authorization, the challenge and the order become valid/ready, or
  invalid with an unauthorized error on the challenge. http-01 and dns-01
  are never validated: a POST to them makes the authorization invalid.
- finalize, the order and the certificate as EvilCA: the fixed chain of
  tls_dir/leaf.pem and ca.pem, so the CSR must be for leaf.pem's key.

Hostile values for tests: `issuers` (the names served, any strings) and
`hash_prefix` are served as given (JSON-escaped); `account_suffix` is
appended to the account URLs (raw, latin-1, in the Location header).
"""
import hashlib
import json
import re
import threading
import time

from evil_ca import EvilCA, P, Reply, b64u, problem

DRAFT01, DRAFT02, CAA = "draft-01", "draft-02", "caa"
MODES = (DRAFT01, DRAFT02, CAA)
ISSUER = "pebble.letsencrypt.org"
HASH_PREFIX = "ca.example:"
PERSIST = "dns-persist-01"


def jwk_thumbprint(jwk):
    """RFC 7638: SHA-256 of the required members, sorted, no spaces; base64url."""
    if jwk.get("kty") == "EC":
        members = ("crv", "kty", "x", "y")
    elif jwk.get("kty") == "RSA":
        members = ("e", "kty", "n")
    else:
        raise ValueError(f"unknown key type {jwk.get('kty')!r}")
    canon = json.dumps({k: jwk[k] for k in members}, sort_keys=True, separators=(",", ":"))
    return b64u(hashlib.sha256(canon.encode()).digest())


def account_hash(name, thumbprint, account_url):
    """draft-02's hashed accounturi, without prefix and "sha-256/":
    base64url(SHA-256(len(name) octet || name || thumbprint || account URL))."""
    name = name.lower().rstrip(".").encode()
    return b64u(hashlib.sha256(bytes([len(name)]) + name + thumbprint.encode()
                               + account_url.encode()).digest())


def parse_record(text):
    """'ISSUER; k=v; k2=v2' -> (issuer, {k lowercased: v}); spaces around ';' and '=' ignored."""
    fields = [f.strip(" \t") for f in text.split(";")]
    params = {}
    for f in fields[1:]:
        if not f:
            continue
        k, eq, v = f.partition("=")
        params.setdefault(k.strip(" \t").lower(), v.strip(" \t") if eq else None)
    return fields[0], params


class PersistCA(EvilCA):
    def __init__(self, tls_dir, mode=DRAFT02, issuers=(ISSUER,), hash_prefix=HASH_PREFIX,
                 no_persist=(), challenge_types=("http-01", "dns-01", PERSIST), cert="tls",
                 challenge_status="processing", account_suffix="", stale_error=False):
        if mode not in MODES:
            raise KeyError(f"unknown mode {mode}")
        super().__init__("normal", tls_dir, cert=cert)
        self.mode, self.issuers, self.hash_prefix = mode, list(issuers), hash_prefix
        self.no_persist, self.challenge_types = set(no_persist), tuple(challenge_types)
        self.challenge_status = challenge_status
        self.stale_error = stale_error
        self.account_suffix = account_suffix     # appended to account URLs (hostile ones)
        self.records = {}          # "_validation-persist.NAME" -> [TXT strings]
        self.accounts = {}         # thumbprint -> account URL
        self.account_keys = {}     # account URL -> thumbprint
        self.orders = {}           # id -> {"identifiers", "authzs", "finalized", "account"}
        self.authzs = {}           # id -> {"identifier", "wildcard", "requested", "status", "challenges"}
        self.posted_challenges = []    # URLs of the challenges POSTed
        self.validations = []      # (record name, ok, detail) of every dns-persist-01 check
        self.dlock = threading.RLock()

    # ---- what the test controls and reads ----

    def set_record(self, name, values):
        """The TXT strings at name (with or without the final dot); [] or None removes it."""
        name = name.lower().rstrip(".")
        with self.dlock:
            if values:
                self.records[name] = list(values)
            else:
                self.records.pop(name, None)

    def account_url(self, n=1):
        return f"{self.base}/acct/{n}{self.account_suffix}"

    def expected_accounturi(self, name, account_url):
        """What the record's accounturi must be for account_url and the base name."""
        if self.mode == DRAFT02:
            tp = self.account_keys[account_url]
            return self.hash_prefix + "sha-256/" + account_hash(name, tp, account_url)
        return account_url

    def issuer_names(self):
        return list(self.issuers)

    def zone_line(self, name, account_url, wildcard=False):
        """The zone-file line a client is expected to print for NAME (no "*.")."""
        value = f"{self.issuers[0]}; accounturi={self.expected_accounturi(name, account_url)}"
        if wildcard:
            value += "; policy=wildcard"
        return f'_validation-persist.{name}. IN TXT "{value}"'

    def check_record(self, name, wildcard, account_url, now=None):
        """(True, "") if a TXT string at _validation-persist.NAME passes for this
        account (and a wildcard authorization), else (False, why)."""
        now = time.time() if now is None else now
        rname = "_validation-persist." + name.lower()
        with self.dlock:
            texts = list(self.records.get(rname, ()))
        if not texts:
            return False, f"no TXT record found at {rname}"
        issuers = {i.lower() for i in self.issuers}
        expected = self.expected_accounturi(name, account_url)
        why = []
        for text in texts:
            issuer, params = parse_record(text)
            if issuer.lower() not in issuers:
                why.append(f"issuer-domain-name {issuer!r} is not one of {sorted(issuers)}")
                continue
            if params.get("accounturi") != expected:
                why.append(f"accounturi {params.get('accounturi')!r} is not this account's"
                           f" {expected!r}")
                continue
            if wildcard and (params.get("policy") or "").lower() != "wildcard":
                why.append("a wildcard authorization needs policy=wildcard")
                continue
            if "persistuntil" in params:
                until = params["persistuntil"] or ""
                if not re.fullmatch(r"[0-9]{1,19}", until):
                    why.append(f"persistUntil {until!r} is not a UNIX time")
                    continue
                if int(until) < now:
                    why.append(f"persistUntil {until} is in the past")
                    continue
            return True, ""
        return False, f"{rname}: " + "; ".join(why)

    def posted(self):
        with self.lock:
            return list(self.posted_challenges)

    # ---- routes ----

    def _step(self, req):
        p, post = req.path, req.method == "POST"
        if p == "/dir":
            return "directory"
        if p == "/nonce":
            return "newNonce"
        if p == "/acct" and post:
            return "newAccount"
        if re.fullmatch(r"/acct/\d+", p) and post:
            return "account"
        if p == "/order" and post:
            return "newOrder"
        if re.fullmatch(r"/authz/\d+", p) and post:
            return "authz"
        if re.fullmatch(r"/chal/\d+/[a-z0-9-]+", p) and post:
            return "challenge"
        m = re.fullmatch(r"/order/(\d+)", p)
        if m and post:
            o = self.orders.get(int(m[1]))
            return "orderPoll" if o and o["finalized"] else "readyPoll"
        if re.fullmatch(r"/finalize/\d+", p) and post:
            return "finalize"
        if re.fullmatch(r"/cert/\d+", p) and post:
            return "cert"
        if p == "/revoke" and post:
            return "revokeCert"
        if p == "/key-change" and post:
            return "keyChange"
        return "other"

    # ---- objects ----

    def directory_obj(self):
        d = super().directory_obj()
        meta = d.setdefault("meta", {})
        if self.mode == DRAFT02:
            meta["issuerDomainNames"] = list(self.issuers)
            meta["accountHashPrefix"] = self.hash_prefix
        elif self.mode == CAA:
            meta["caaIdentities"] = list(self.issuers)
        return d

    def _chal_obj(self, aid, ctype):
        a = self.authzs[aid]
        c = {"type": ctype, "url": f"{self.base}/chal/{aid}/{ctype}",
             "status": a["chal_status"].get(ctype, "pending")}
        if ctype == PERSIST:
            if self.mode == DRAFT01:
                c["issuer-domain-names"] = list(self.issuers)
            elif self.mode == DRAFT02:
                c["issuerDomainNames"] = list(self.issuers)
        else:
            c["token"] = a["tokens"][ctype]
        if ctype in a["errors"]:
            c["error"] = a["errors"][ctype]
        return c

    def authz_json(self, aid):
        a = self.authzs[aid]
        o = {"identifier": a["identifier"], "status": a["status"],
             "expires": "2099-01-01T00:00:00Z",
             "challenges": [self._chal_obj(aid, t) for t in a["types"]]}
        if a["wildcard"]:
            o["wildcard"] = True
        return o

    def order_json(self, oid):
        o = self.orders[oid]
        states = [self.authzs[a]["status"] for a in o["authzs"]]
        if o["status"] in ("processing", "valid"):
            status = o["status"]
        elif "invalid" in states:
            status = "invalid"
        elif all(s == "valid" for s in states):
            status = "ready"
        else:
            status = "pending"
        j = {"status": status, "expires": "2099-01-01T00:00:00Z",
             "identifiers": o["identifiers"],
             "authorizations": [f"{self.base}/authz/{a}" for a in o["authzs"]],
             "finalize": f"{self.base}/finalize/{oid}"}
        if status == "invalid":
            j["error"] = {"type": P + "unauthorized",
                          "detail": "persist CA: an authorization failed"}
        if status == "valid":
            j["certificate"] = f"{self.base}/cert/{oid}"
        return j

    # ---- handlers ----

    def _kid_account(self, req):
        kid = (req.protected or {}).get("kid")
        return kid if kid in self.account_keys else None

    def _newAccount(self, req):
        jwk = (req.protected or {}).get("jwk")
        try:
            tp = jwk_thumbprint(jwk)
        except (ValueError, KeyError, TypeError, AttributeError):
            return problem(400, "malformed", "persist CA: newAccount without a usable jwk")
        with self.dlock:
            new = tp not in self.accounts
            if new:
                payload = json.loads(req.payload or "{}")
                if payload.get("onlyReturnExisting"):
                    return problem(400, "accountDoesNotExist", "persist CA: no such account")
                self.accounts[tp] = self.account_url(len(self.accounts) + 1)
                self.account_keys[self.accounts[tp]] = tp
            url = self.accounts[tp]
        return Reply(201 if new else 200, {"status": "valid", "orders": url + "/orders"},
                     headers=[f"Location: {url}"])

    def _account(self, req):
        url = self.base + req.path
        if url not in self.account_keys:
            return problem(404, "accountDoesNotExist", "persist CA: no such account")
        return Reply(200, {"status": "valid", "orders": url + "/orders"})

    def _newOrder(self, req):
        self.order_payload = req.payload
        try:
            idents = json.loads(req.payload)["identifiers"]
            assert isinstance(idents, list) and idents
            assert all(isinstance(i, dict) and isinstance(i.get("value"), str) for i in idents)
        except (TypeError, ValueError, KeyError, AssertionError):
            return problem(400, "malformed", "persist CA: no identifiers")
        with self.dlock:
            oid = len(self.orders) + 1
            ids = []
            for ident in idents:
                aid = len(self.authzs) + 1
                value = ident["value"].lower()
                wild = value.startswith("*.")
                types = [t for t in self.challenge_types
                         if not (t == PERSIST and value in self.no_persist)
                         and not (t == "http-01" and wild)]
                self.authzs[aid] = {
                    "identifier": {"type": ident.get("type", "dns"), "value": value[2:] if wild else value},
                    "wildcard": wild, "requested": value, "status": "pending", "types": types,
                    "chal_status": {}, "order": oid,
                    "errors": {"dns-01": {"type": P + "unauthorized", "status": 403,
                                          "detail": "stale dns-01 attempt"}}
                    if self.stale_error and "dns-01" in types else {},
                    "tokens": {t: b64u(hashlib.sha256(f"{oid}/{aid}/{t}".encode()).digest())
                               for t in types if t != PERSIST}}
                ids.append(aid)
            self.orders[oid] = {"identifiers": idents, "authzs": ids, "finalized": False,
                                "status": "pending", "account": self._kid_account(req)}
        return Reply(201, self.order_json(oid), headers=[f"Location: {self.base}/order/{oid}"])

    def _authz(self, req):
        aid = int(req.path.rsplit("/", 1)[1])
        with self.dlock:
            if aid not in self.authzs:
                return problem(404, "malformed", "persist CA: no such authorization")
            return Reply(200, self.authz_json(aid))

    def _challenge(self, req):
        _, _, aid, ctype = req.path.split("/")
        aid = int(aid)
        with self.lock:
            self.posted_challenges.append(self.base + req.path)
        with self.dlock:
            a = self.authzs.get(aid)
            if a is None or ctype not in a["types"]:
                return problem(404, "malformed", "persist CA: no such challenge")
            if a["status"] == "pending":
                if ctype != PERSIST:
                    ok, why = False, f"persist CA: {ctype} is never validated here"
                else:
                    account = self._kid_account(req)
                    if account is None:
                        ok, why = False, "persist CA: the challenge POST has no known kid"
                    else:
                        ok, why = self.check_record(a["identifier"]["value"], a["wildcard"],
                                                    account)
                    self.validations.append((a["identifier"]["value"], a["wildcard"], ok, why))
                a["status"] = "valid" if ok else "invalid"
                a["chal_status"][ctype] = a["status"]
                if not ok:
                    a["errors"][ctype] = {"type": P + "unauthorized", "status": 403,
                                          "detail": why}
            c = self._chal_obj(aid, ctype)
        if self.challenge_status:
            c["status"] = self.challenge_status
            c.pop("error", None)
        return Reply(200, c, headers=[f'Link: <{self.base}/authz/{aid}>;rel="up"'])

    def _order_id(self, req):
        return int(req.path.rsplit("/", 1)[1])

    def _readyPoll(self, req):
        oid = self._order_id(req)
        with self.dlock:
            if oid not in self.orders:
                return problem(404, "malformed", "persist CA: no such order")
            return Reply(200, self.order_json(oid))

    _orderPoll = _readyPoll

    def _finalize(self, req):
        oid = self._order_id(req)
        with self.dlock:
            if oid not in self.orders:
                return problem(404, "malformed", "persist CA: no such order")
            if self.order_json(oid)["status"] != "ready":
                return problem(403, "orderNotReady", "persist CA: the order is not ready")
            self.orders[oid]["finalized"] = True
            self.orders[oid]["status"] = "valid"
            self.finalized = True
            return Reply(200, dict(self.order_json(oid), status="processing"),
                         headers=[f"Location: {self.base}/order/{oid}"])
