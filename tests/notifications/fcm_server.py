"""A local HTTP server that speaks the two Google endpoints firebase-admin uses to push:

* the OAuth 2.0 token endpoint (`POST /token`): checks the service account's signed JWT
  (RS256, with the public key of the generated test key) and hands out an access token;
* the FCM v1 send endpoint (`POST /v1/projects/<project>/messages:send`): checks the
  access token and answers like FCM, by default with a message name.

The real firebase-admin SDK talks to it: write `service_account_file()` and point the
backend at `url` (FCM_ENDPOINT_URL). Script per-token answers with `script(token, ...)`:
"ok", "unregistered", "invalid", "quota" or "unavailable", one per request, the last one
repeating; or "hold": accept the push (it counts as delivered) but keep the answer back until
`release()`, as when a worker dies after FCM accepted. `outage(seconds)` answers every send
with 503 for a while, whatever the scripts say. Every send request is recorded (`sends`),
with the time it arrived.
"""

from __future__ import annotations

import base64
import itertools
import json
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

PROJECT_ID = "fitness-test"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

ANSWERS = {
    "unregistered": (404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."),
    "invalid": (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "The registration token is not a valid FCM token"),
    "quota": (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded for the device."),
    "unavailable": (503, "UNAVAILABLE", None, "The service is currently unavailable."),
}


@dataclass(frozen=True)
class Send:
    arrived_at: float  # time.time()
    token: str
    message: dict
    status: int


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class FcmServer:
    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sends: list[Send] = []
        self.token_requests = 0
        self._access_tokens: set[str] = set()
        self._scripts: dict[str, list[str]] = {}
        self._ids = itertools.count(1)
        self._outage_until = 0.0
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self._http.handle_error = self._handle_error
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, name="fcm-server", daemon=True)

    def _handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed client is no error here
            ThreadingHTTPServer.handle_error(self._http, request, client_address)

    def start(self) -> FcmServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def reset(self) -> None:
        with self._lock:
            self.sends.clear()
            self._scripts.clear()
            self._outage_until = 0.0
        self._released.set()  # let go of any answer still held

    def outage(self, seconds: float) -> float:
        """Answer every send with 503 UNAVAILABLE for `seconds`; returns when it ends (time.time())."""
        with self._lock:
            self._outage_until = time.time() + seconds
            return self._outage_until

    def release(self) -> None:
        """Send the answers that "hold" keeps back (to whoever is still listening)."""
        self._released.set()

    def script(self, token: str, *answers: str) -> None:
        """Answer sends to `token` with `answers` in turn; the last one repeats."""
        with self._lock:
            if "hold" in answers:
                self._released.clear()
            self._scripts[token] = list(answers)

    def delivered_to(self, token: str) -> list[Send]:
        """The sends to `token` that FCM accepted (a phone would ring for each)."""
        return [send for send in self.sends_to(token) if send.status == 200]

    def sends_to(self, token: str) -> list[Send]:
        with self._lock:
            return [send for send in self.sends if send.token == token]

    def wait_for_sends(self, count: int, timeout: float = 30.0) -> list[Send]:
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.sends) >= count, timeout=timeout):
                raise AssertionError(f"timed out after {timeout} s: {len(self.sends)} of {count} pushes arrived")
            return list(self.sends)

    def service_account_file(self, directory: Path) -> Path:
        """A service-account JSON with the generated key, whose token_uri is this server."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        path = Path(directory) / "fcm-service-account.json"
        path.write_text(json.dumps({
            "type": "service_account",
            "project_id": PROJECT_ID,
            "private_key_id": "test-key-1",
            "private_key": pem,
            "client_email": f"push@{PROJECT_ID}.iam.gserviceaccount.com",
            "client_id": "100000000000000000001",
            "token_uri": f"{self.url}/token",
        }))
        return path

    # --- the endpoints -----------------------------------------------------------------

    def _issue_token(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return 400, {"error": "unsupported_grant_type"}
        try:
            header, claims, signature = form["assertion"][0].split(".")
            self.key.public_key().verify(
                _b64decode(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
            claims = json.loads(_b64decode(claims))
        except Exception as exc:
            return 400, {"error": "invalid_grant", "error_description": f"bad assertion: {exc}"}
        if claims.get("iss") != f"push@{PROJECT_ID}.iam.gserviceaccount.com" or claims.get("exp", 0) < time.time():
            return 400, {"error": "invalid_grant", "error_description": "wrong issuer or expired"}
        token = f"test-access-{next(self._ids)}"
        with self._lock:
            self._access_tokens.add(token)
            self.token_requests += 1
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    def _send(self, path: str, authorization: str, body: dict) -> tuple[int, dict]:
        if authorization.removeprefix("Bearer ") not in self._access_tokens:
            return 401, {"error": {"code": 401, "message": "Request had invalid credentials.",
                                   "status": "UNAUTHENTICATED"}}
        if path != f"/v1/projects/{PROJECT_ID}/messages:send":
            return 404, {"error": {"code": 404, "message": f"no such endpoint {path}", "status": "NOT_FOUND"}}
        message = body.get("message") or {}
        token = message.get("token") or message.get("fid") or ""
        with self._arrived:
            script = self._scripts.get(token)
            answer = (script.pop(0) if len(script) > 1 else script[0]) if script else "ok"
            if time.time() < self._outage_until:
                answer = "unavailable"
            if answer in ("ok", "hold"):
                status, reply = 200, {"name": f"projects/{PROJECT_ID}/messages/{next(self._ids)}"}
            else:
                status, grpc_status, fcm_code, text = ANSWERS[answer]
                error = {"code": status, "message": text, "status": grpc_status}
                if fcm_code:
                    error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": fcm_code}]
                reply = {"error": error}
            self.sends.append(Send(time.time(), token, message, status))
            self._arrived.notify_all()
        if answer == "hold":
            self._released.wait(timeout=300)
        return status, reply

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body are two writes: without TCP_NODELAY, Nagle's algorithm and
            # the client's delayed ACK would add ~40 ms to every answer (no real server does)
            disable_nagle_algorithm = True

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/token":
                    status, reply = server._issue_token(parse_qs(raw.decode()))
                else:
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        error = {"code": 400, "message": "not JSON", "status": "INVALID_ARGUMENT"}
                        status, reply = 400, {"error": error}
                    else:
                        status, reply = server._send(self.path, self.headers.get("Authorization", ""), body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client is gone (a killed worker, after "hold")
                    self.close_connection = True

            def log_message(self, *args):
                pass

        return Handler
