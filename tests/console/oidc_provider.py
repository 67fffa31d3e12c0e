"""A small OpenID Connect provider for the console's sign-in tests: discovery, a login form
that asks for an email, the token endpoint (authorization code with PKCE, client secret),
and its signing keys. ID tokens are RS256-signed with a key made at start.

It is a test double for the identity provider, so that what is tested is Missive's side of
the flow: the redirect, state, PKCE, the token's signature, issuer, audience, expiry and
nonce, and the mapping of the email to an organization user.
"""

import base64
import hashlib
import html
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Provider:
    def __init__(self, client_id: str, client_secret: str):
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        self.codes = {}
        # Tests set this to make the next token carry a different nonce or audience.
        self.tamper = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()

    def jwks(self):
        numbers = self.key.public_key().public_numbers()
        length = (numbers.n.bit_length() + 7) // 8
        return {"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": b64(numbers.n.to_bytes(length, "big")), "e": b64(numbers.e.to_bytes(3, "big")),
        }]}

    def id_token(self, email: str, nonce: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "sub": hashlib.sha256(email.encode()).hexdigest(),
                  "email": email, "email_verified": True, "nonce": nonce, "iat": now, "exp": now + 300}
        claims.update(self.tamper)
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64(signature)}"

    def handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body, content_type="application/json", headers=()):
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/.well-known/openid-configuration":
                    self.reply(200, json.dumps({
                        "issuer": provider.issuer,
                        "authorization_endpoint": f"{provider.issuer}/authorize",
                        "token_endpoint": f"{provider.issuer}/token",
                        "jwks_uri": f"{provider.issuer}/jwks",
                        "response_types_supported": ["code"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }))
                elif url.path == "/jwks":
                    self.reply(200, json.dumps(provider.jwks()))
                elif url.path == "/authorize":
                    assert query["client_id"] == provider.client_id
                    assert query["code_challenge_method"] == "S256"
                    fields = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                                     for k, v in query.items())
                    self.reply(200, f"""<!doctype html><title>Test identity provider</title>
<form method="post" action="/authorize">{fields}
<label>Email <input id="email" name="email"></label><button id="login">Log in</button></form>""",
                               "text/html")
                else:
                    self.reply(404, "{}")

            def form(self):
                length = int(self.headers.get("content-length", 0))
                return dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))

            def do_POST(self):
                if self.path == "/authorize":
                    form = self.form()
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = form
                    target = form["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": form["state"]})
                    self.reply(302, "", headers=[("location", target)])
                elif self.path == "/token":
                    form = self.form()
                    granted = provider.codes.pop(form.get("code", ""), None)
                    challenge = b64(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
                    if (granted is None or form.get("client_secret") != provider.client_secret
                            or form.get("client_id") != provider.client_id
                            or form.get("redirect_uri") != granted["redirect_uri"]
                            or challenge != granted["code_challenge"]):
                        self.reply(400, json.dumps({"error": "invalid_grant"}))
                        return
                    token = provider.id_token(granted["email"], granted["nonce"])
                    self.reply(200, json.dumps({"access_token": "unused", "token_type": "Bearer", "id_token": token}))
                else:
                    self.reply(404, "{}")

        return Handler
