#!/usr/bin/env python3
"""A dns-01 hook for acme-tiny's --hook (uacme's protocol), for the tests:
puts the TXT record at pebble-challtestsrv's management API.

    dns-hook.py begin|done|failed TYPE IDENT TOKEN AUTH

begin dns-01: POST /set-txt {"host": "_acme-challenge.IDENT.", "value": AUTH}
(challtestsrv adds the value to those the host has: a name and its
wildcard share one host). done/failed dns-01: the value is taken away
again: POST /clear-txt for the host (which drops all its values), then
/set-txt for those of the host still in use, kept in DNS_HOOK_STATE.
Any other TYPE (http-01, ...) is declined: exit 1. Prints nothing
(unless DNS_HOOK_CHATTY=1).

Environment:
  DNS_HOOK_URL        challtestsrv's management URL, e.g. http://127.0.0.1:8055
  DNS_HOOK_STATE      a JSON file: {host: [values]} set by this hook and not
                      yet taken away (without it, done/failed clear the host)
  DNS_HOOK_LOG        a file to append each call's arguments to, one line each
  DNS_HOOK_PIDS       where a hanging hook appends "HOOKPID CHILDPID"
  DNS_HOOK_DECLINE=1  decline every challenge (exit 1)
  DNS_HOOK_HANG=METHOD[:N][,...]  hang on METHOD (begin, done, failed);
                      with N, only for the Nth IDENT the hook was asked
                      about (by DNS_HOOK_LOG): start a sleeping child,
                      record both PIDs in DNS_HOOK_PIDS, then sleep (60 s
                      at most)
  DNS_HOOK_FAIL_DONE=1  exit 3 on done, after doing its work
  DNS_HOOK_WRONG=1    put (and take away) a TXT value other than AUTH: the
                      CA's check fails
  DNS_HOOK_SLOW=METHOD  sleep 2 s on METHOD before doing its work (a slow DNS API)
  DNS_HOOK_CHATTY=1   print "dns-hook: METHOD TYPE IDENT to stdout" to stdout,
                      "... to stderr, stdin /dev/null" (or "stdin not
                      /dev/null") to stderr
"""
import json
import os
import subprocess
import sys
import time
import urllib.request


def post(path, body):
    url = os.environ["DNS_HOOK_URL"].rstrip("/") + path
    req = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def load_state():
    try:
        with open(os.environ["DNS_HOOK_STATE"]) as f:
            return json.load(f)
    except (KeyError, FileNotFoundError):
        return {}


def save_state(state):
    if "DNS_HOOK_STATE" in os.environ:
        with open(os.environ["DNS_HOOK_STATE"], "w") as f:
            json.dump(state, f)


def hangs(method, ident):
    for knob in filter(None, os.environ.get("DNS_HOOK_HANG", "").split(",")):
        what, _, nth = knob.partition(":")
        if what != method:
            continue
        if not nth:
            return True
        with open(os.environ["DNS_HOOK_LOG"]) as f:
            idents = list(dict.fromkeys(line.split()[2] for line in f))
        if idents.index(ident) == int(nth) - 1:
            return True
    return False


def main(argv):
    if len(argv) != 6:
        sys.stderr.write("usage: dns-hook.py begin|done|failed TYPE IDENT TOKEN AUTH\n")
        return 85
    method, typ, ident, _token, auth = argv[1:]
    if os.environ.get("DNS_HOOK_WRONG") == "1":
        auth = "wrong-" + auth
    if "DNS_HOOK_LOG" in os.environ:
        with open(os.environ["DNS_HOOK_LOG"], "a") as f:
            f.write(" ".join(argv[1:]) + "\n")
    if os.environ.get("DNS_HOOK_CHATTY") == "1":
        null = os.stat(os.devnull)
        stdin = os.fstat(0)
        devnull = (stdin.st_dev, stdin.st_ino) == (null.st_dev, null.st_ino)
        print(f"dns-hook: {method} {typ} {ident} to stdout", flush=True)
        print(f"dns-hook: {method} {typ} {ident} to stderr, stdin "
              f"{'' if devnull else 'not '}/dev/null", file=sys.stderr, flush=True)
    if hangs(method, ident):
        # neither holds acme-tiny's stderr open: a test reading it is not held up
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        child = subprocess.Popen(["sleep", "60"])
        with open(os.environ["DNS_HOOK_PIDS"], "a") as f:
            f.write(f"{os.getpid()} {child.pid}\n")
        time.sleep(60)
        return 1
    if typ != "dns-01" or os.environ.get("DNS_HOOK_DECLINE") == "1":
        return 1
    if os.environ.get("DNS_HOOK_SLOW") == method:
        time.sleep(2)
    host = f"_acme-challenge.{ident}."
    state = load_state()
    values = state.setdefault(host, [])
    if method == "begin":
        post("/set-txt", {"host": host, "value": auth})
        values.append(auth)
    elif method in ("done", "failed"):
        post("/clear-txt", {"host": host})
        if auth in values:
            values.remove(auth)
        for v in values:
            post("/set-txt", {"host": host, "value": v})
    else:
        sys.stderr.write(f"dns-hook.py: unknown method {method}\n")
        return 1
    if not values:
        del state[host]
    save_state(state)
    return 3 if method == "done" and os.environ.get("DNS_HOOK_FAIL_DONE") == "1" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
