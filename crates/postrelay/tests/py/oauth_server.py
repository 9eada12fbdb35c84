#!/usr/bin/env python3
"""A small OAuth2 authorization server for the relay OAuth tests.

Real HTTP (stdlib http.server) on 127.0.0.1, an ephemeral port printed on
the first line of standard output. Grants: device code (RFC 8628; a code
is approved on the second poll, so the client sees authorization_pending
first), authorization code with PKCE (GET /authorize approves at once and
redirects to redirect_uri with a code and the state; the token endpoint
checks the redirect_uri and that the code_verifier hashes (S256) to the
code_challenge), refresh token (rotating the refresh token when --rotate is given)
and client credentials. Access tokens live --access-lifetime seconds.

For the tests' SMTP provider and assertions:
  GET  /introspect?token=T   {"active": bool, "user": ...}
  GET  /stats                counts of grants and refusals
  POST /admin/revoke         revokes every refresh token
  POST /admin/expire         expires every access token now

Every token contains MARKER so that a test can grep logs for any of them.
It stops by itself after --lifetime seconds. Loopback only; test use only.
"""

import argparse
import base64
import hashlib
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

LOCK = threading.Lock()
STATE = {
    "access": {},  # token -> (user, expires_at)
    "refresh": {},  # token -> user
    "devices": {},  # device_code -> polls
    "codes": {},  # authorization code -> (code_challenge, redirect_uri)
    "stats": {"device_grants": 0, "code_grants": 0, "bad_verifiers": 0, "refreshes": 0, "refused_refreshes": 0,
              "client_credentials": 0, "introspections": 0},
}
ARGS = None


def new_token(kind):
    return "MARKER%s-%s" % (kind, secrets.token_urlsafe(24))


def issue(user, with_refresh, old_refresh=None):
    access = new_token("ACCESS")
    STATE["access"][access] = (user, time.time() + ARGS.access_lifetime)
    body = {"access_token": access, "token_type": "Bearer",
            "expires_in": ARGS.access_lifetime}
    if with_refresh:
        refresh = old_refresh
        if refresh is None or ARGS.rotate:
            if old_refresh is not None:
                del STATE["refresh"][old_refresh]
            refresh = new_token("REFRESH")
            STATE["refresh"][refresh] = user
        body["refresh_token"] = refresh
    return body


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def error(self, code):
        self.reply(400, {"error": code, "error_description": "test server: " + code})

    def form(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n).decode()
        return {k: v[0] for k, v in parse_qs(raw).items()}

    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        with LOCK:
            if url.path == "/introspect":
                STATE["stats"]["introspections"] += 1
                entry = STATE["access"].get(q.get("token", ""))
                active = entry is not None and entry[1] > time.time()
                return self.reply(200, {"active": active,
                                        "user": entry[0] if entry else None})
            if url.path == "/authorize":
                return self.authorize(q)
            if url.path == "/stats":
                now = time.time()
                live = sum(1 for _, exp in STATE["access"].values() if exp > now)
                return self.reply(200, dict(STATE["stats"], live_access=live))
        self.reply(404, {"error": "not_found"})

    def authorize(self, q):
        if q.get("client_id") != ARGS.client_id:
            return self.error("invalid_client")
        if (q.get("response_type") != "code"
                or q.get("code_challenge_method") != "S256"
                or not q.get("code_challenge") or not q.get("redirect_uri")):
            return self.error("invalid_request")
        code = secrets.token_urlsafe(16)
        STATE["codes"][code] = (q["code_challenge"], q["redirect_uri"])
        target = q["redirect_uri"] + "?" + urlencode(
            {"code": code, "state": q.get("state", "")})
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def code_grant(self, f):
        entry = STATE["codes"].pop(f.get("code", ""), None)
        if entry is None or entry[1] != f.get("redirect_uri"):
            return self.error("invalid_grant")
        digest = hashlib.sha256(f.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != entry[0]:
            STATE["stats"]["bad_verifiers"] += 1
            return self.error("invalid_grant")
        STATE["stats"]["code_grants"] += 1
        return self.reply(200, issue(ARGS.user, True))

    def do_POST(self):
        url = urlparse(self.path)
        f = self.form()
        with LOCK:
            if url.path == "/admin/revoke":
                STATE["refresh"].clear()
                return self.reply(200, {})
            if url.path == "/admin/expire":
                STATE["access"].clear()
                return self.reply(200, {})
            if f.get("client_id") != ARGS.client_id:
                return self.error("invalid_client")
            if url.path == "/device":
                code = secrets.token_urlsafe(16)
                STATE["devices"][code] = 0
                return self.reply(200, {
                    "device_code": code, "user_code": "WDJB-MJHT",
                    "verification_uri": "http://127.0.0.1/activate",
                    "expires_in": 60, "interval": 1})
            if url.path != "/token":
                return self.reply(404, {"error": "not_found"})
            grant = f.get("grant_type")
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                code = f.get("device_code")
                if code not in STATE["devices"]:
                    return self.error("expired_token")
                STATE["devices"][code] += 1
                if STATE["devices"][code] < 2:
                    return self.error("authorization_pending")
                del STATE["devices"][code]
                STATE["stats"]["device_grants"] += 1
                return self.reply(200, issue(ARGS.user, True))
            if grant == "authorization_code":
                return self.code_grant(f)
            if grant == "refresh_token":
                user = STATE["refresh"].get(f.get("refresh_token", ""))
                if user is None:
                    STATE["stats"]["refused_refreshes"] += 1
                    return self.error("invalid_grant")
                STATE["stats"]["refreshes"] += 1
                return self.reply(200, issue(user, True, f["refresh_token"]))
            if grant == "client_credentials":
                if f.get("client_secret") != ARGS.client_secret:
                    return self.error("invalid_client")
                STATE["stats"]["client_credentials"] += 1
                return self.reply(200, issue(ARGS.user, False))
            return self.error("unsupported_grant_type")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--client-id", default="postrelay-test")
    p.add_argument("--client-secret", default="client-secret")
    p.add_argument("--user", default="relay@example.com")
    p.add_argument("--access-lifetime", type=int, default=4)
    p.add_argument("--rotate", action="store_true")
    p.add_argument("--lifetime", type=int, default=600)
    ARGS = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    threading.Timer(ARGS.lifetime, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
