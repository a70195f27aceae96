"""A minimal OpenAI-compatible streaming server that emits tokens faster than any client reads them.

For the client benchmark (scripts/bench_clients.py) and the tests: it measures the client, not a
model. Raw asyncio (no framework): each request's whole SSE body is pre-rendered once per output
length and written in large slices, so the server side costs almost nothing per token.

    python tests/fake_vllm_server.py --port 18100 [--api-key K] [--guard all|v1] [--model fake] [--stall-after N]
        [--end-after N --end-as cut|abort|short]

Endpoints: GET /health, GET /v1/models, GET /metrics, GET /version, GET /openapi.json, POST
/v1/completions, /v1/chat/completions and /invocations (stream or not; `max_tokens` output tokens;
one token per chunk; a usage event when `stream_options.include_usage`). With --api-key, `--guard all`
(default) needs the key on every route but /health, as the kit's auth layer does; `--guard v1` guards
/v1 only, as plain vLLM's --api-key does. `--stall-after N` stops sending (without closing) after N
chunks: a server that stalls mid-stream. `--end-after N --end-as MODE` ends every stream of more than N tokens
after N token chunks, as a server that stops does: `cut` closes the HTTP stream there (no finish_reason, no
usage, no [DONE]); `abort` sends vLLM's abort ending (a last chunk with finish_reason "abort", the usage of
N tokens and [DONE], a clean end that looks like success); `short` ends with finish_reason "length", usage
N and [DONE] (a server that delivers fewer tokens than `max_tokens` with `ignore_eos`, and says it is done).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import ClassVar

_TOKEN_TEXT = " tok"


def _chunk(kind: str, model: str, i: int, finish: str | None = None) -> bytes:
    """One SSE event: i < 0 is the chat role chunk; `finish` marks the last token."""
    if kind == "chat":
        delta = {"role": "assistant", "content": ""} if i < 0 else {"content": _TOKEN_TEXT}
        obj = {
            "id": "chatcmpl-x",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    else:
        obj = {
            "id": "cmpl-x",
            "object": "text_completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "text": _TOKEN_TEXT, "logprobs": None, "finish_reason": finish}],
        }
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class Renderer:
    """Pre-rendered SSE bodies, cached per (kind, output tokens, prompt tokens)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.cache: dict[tuple, list[bytes]] = {}

    def events(self, kind: str, n: int, prompt_tokens: int, usage: bool, end: str | None = None) -> list[bytes]:
        """The stream of n tokens; `end` "abort"/"short": it ends on its last token with that ending, "cut":
        after its last token with nothing more."""
        key = (kind, n, prompt_tokens, usage, end)
        if key not in self.cache:
            one = _chunk(kind, self.model, 0)
            evs = [_chunk(kind, self.model, -1)] if kind == "chat" else []
            if end == "cut":
                self.cache[key] = [_chunked(e) for e in [*evs, *[one] * n]]
                return self.cache[key]
            evs += [one] * (n - 1) + [_chunk(kind, self.model, 0, "abort" if end == "abort" else "length")]
            if usage:
                u = {
                    "id": "x",
                    "object": "chunk",
                    "created": 0,
                    "model": self.model,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": n,
                        "total_tokens": prompt_tokens + n,
                    },
                }
                evs.append(b"data: " + json.dumps(u, separators=(",", ":")).encode() + b"\n\n")
            evs.append(b"data: [DONE]\n\n")
            self.cache[key] = [_chunked(e) for e in evs]
        return self.cache[key]


def _response(status: str, body: bytes, ctype: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class FakeServer:
    ROUTES: ClassVar[dict[str, str]] = {
        "/health": "GET",
        "/metrics": "GET",
        "/version": "GET",
        "/openapi.json": "GET",
        "/v1/models": "GET",
        "/v1/completions": "POST",
        "/v1/chat/completions": "POST",
        "/invocations": "POST",
    }

    def __init__(
        self,
        model: str,
        api_key: str | None,
        stall_after: int | None,
        slice_events: int = 64,
        guard: str = "all",
        end_after: int | None = None,
        end_as: str = "cut",
        token_ms: float = 0.0,
    ) -> None:
        self.model, self.api_key, self.stall_after, self.guard = model, api_key, stall_after, guard
        self.token_ms = token_ms  # generation time per token: each write waits for its tokens
        self.end_after, self.end_as = end_after, end_as
        self.render = Renderer(model)
        self.slice_events = slice_events
        self.served_tokens = 0
        self.version = "fake"  # what GET /version reports (--vllm-version)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                hdrs = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(hdrs.get("content-length", "0") or 0))
                await self.route(method, path.split("?")[0], hdrs, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def route(self, method: str, path: str, hdrs: dict, body: bytes, writer: asyncio.StreamWriter) -> None:
        if path == "/health":
            writer.write(_response("200 OK", b""))
            return
        guarded = self.api_key and (self.guard == "all" or path.startswith("/v1"))
        if guarded and hdrs.get("authorization") != f"Bearer {self.api_key}":
            writer.write(_response("401 Unauthorized", b'{"error":"Unauthorized"}'))
            return
        if path in self.ROUTES and method != self.ROUTES[path]:
            writer.write(_response("405 Method Not Allowed", b'{"detail":"Method Not Allowed"}'))
            return
        if path == "/metrics":
            text = f"# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total {self.served_tokens}\n"
            writer.write(_response("200 OK", text.encode(), "text/plain"))
            return
        if path == "/version":
            writer.write(_response("200 OK", json.dumps({"version": self.version}).encode()))
            return
        if path == "/openapi.json":
            paths = {p: {m.lower(): {}} for p, m in self.ROUTES.items()}
            writer.write(_response("200 OK", json.dumps({"openapi": "3.1.0", "paths": paths}).encode()))
            return
        if path == "/v1/models":
            data = {
                "object": "list",
                "data": [{"id": self.model, "object": "model", "owned_by": "fake", "max_model_len": 131072}],
            }
            writer.write(_response("200 OK", json.dumps(data).encode()))
            return
        kind = {"/v1/chat/completions": "chat", "/invocations": "chat", "/v1/completions": "text"}.get(path)
        if method != "POST" or kind is None:
            writer.write(_response("404 Not Found", b'{"error":"not found"}'))
            return
        req = json.loads(body or b"{}")
        if req.get("model") != self.model:
            msg = {"error": {"message": f"The model `{req.get('model')}` does not exist.", "code": 404}}
            writer.write(_response("404 Not Found", json.dumps(msg).encode()))
            return
        n = int(req.get("max_tokens") or req.get("max_completion_tokens") or 16)
        prompt = req.get("prompt") if kind == "text" else req.get("messages")
        prompt_tokens = len(prompt) if isinstance(prompt, list) and kind == "text" else len(json.dumps(prompt)) // 4
        if not req.get("stream"):
            finish = "length"
            if self.end_after is not None and n > self.end_after and self.end_as != "cut":  # cut: streams only
                n, finish = self.end_after, ("abort" if self.end_as == "abort" else "length")
            msg = {"role": "assistant", "content": _TOKEN_TEXT * n} if kind == "chat" else None
            choice = {"index": 0, "finish_reason": finish, **({"message": msg} if msg else {"text": _TOKEN_TEXT * n})}
            data = {
                "id": "x",
                "object": "chat.completion" if kind == "chat" else "text_completion",
                "model": self.model,
                "choices": [choice],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n},
            }
            self.served_tokens += n
            writer.write(_response("200 OK", json.dumps(data).encode()))
            return
        usage = bool((req.get("stream_options") or {}).get("include_usage"))
        end = None
        if self.end_after is not None and n > self.end_after:
            n, end = self.end_after, self.end_as
        events = self.render.events(kind, n, prompt_tokens, usage, end)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: keep-alive\r\n\r\n"
        )
        if self.stall_after is not None:
            writer.write(b"".join(events[: self.stall_after]))
            await writer.drain()
            await asyncio.sleep(3600)  # stalls without closing the connection
            return
        step = self.slice_events  # events per write; each event is its own HTTP chunk, as vLLM sends them
        for i in range(0, len(events), step):
            if self.token_ms:
                await asyncio.sleep(len(events[i : i + step]) * self.token_ms / 1000)
            writer.write(b"".join(events[i : i + step]))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        self.served_tokens += n


async def serve(host: str, port: int, server: FakeServer) -> None:
    srv = await asyncio.start_server(server.handle, host, port, backlog=1024)
    async with srv:
        await srv.serve_forever()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18100)
    ap.add_argument("--model", default="fake")
    ap.add_argument("--api-key")
    ap.add_argument("--guard", choices=("all", "v1"), default="all", help="routes the key guards")
    ap.add_argument("--stall-after", type=int, help="send this many events, then stall (never close)")
    ap.add_argument("--slice-events", type=int, default=64, help="events per write")
    ap.add_argument("--vllm-version", default="fake", help="the version GET /version reports")
    ap.add_argument("--end-after", type=int, help="end every longer stream after this many tokens (see --end-as)")
    ap.add_argument("--end-as", choices=("cut", "abort", "short"), default="cut", help="how such a stream ends")
    ap.add_argument("--token-ms", type=float, default=0.0, help="generation time per token (each write waits)")
    a = ap.parse_args(argv)
    server = FakeServer(a.model, a.api_key, a.stall_after, a.slice_events, a.guard, a.end_after, a.end_as, a.token_ms)
    server.version = a.vllm_version
    asyncio.run(serve(a.host, a.port, server))


if __name__ == "__main__":
    main()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc, timeout_s: float = 30.0, what: str = "stand-in") -> None:
    """Wait until a server the test started (`proc`) accepts connections on 127.0.0.1:`port`; raise if it
    exits first or the port stays closed past `timeout_s` (the caller stops it by PID)."""
    import socket

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with code {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not open port {port} in {timeout_s:g} s") from None
            time.sleep(0.05)


def start_subprocess(port: int, *args: str, python: str | None = None, preexec_fn=None):
    """Start this server in a child process and wait until it accepts connections; the caller stops
    it by PID (`proc.terminate()`)."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [python or sys.executable, __file__, "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=preexec_fn,
    )
    try:
        wait_port(port, proc, timeout_s=25, what="fake server")
    except RuntimeError:
        proc.terminate()
        raise
    return proc
