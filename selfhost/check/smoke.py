"""Smoke checks of an OpenAI-compatible (vLLM) endpoint: one pass/fail line per check, with the reason.

Every request has its own timeout (connect, and the longest silence between bytes), and a streamed
response also has a total deadline, so a stalled server fails a check instead of hanging it.
The "every route needs the key" check calls every route the server exposes without a key (the routes
from its /openapi.json, read with the key; else the pinned vLLM's list shipped in data/vllm_routes.json)
and fails naming each one that answers anything but 401/403. The chat checks pass only when the answer
delivered what was asked (`delivered`: a normal finish reason, at least min_tokens and, when cut by
`length`, exactly max_tokens; the stream also its [DONE]), the bench's rule. Checks raise CheckFailed, never
assert: they hold under `python -O`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROUTES_FILE = Path(__file__).resolve().parent / "data" / "vllm_routes.json"
OPEN_ROUTES = ("/health",)  # the one route the auth layer leaves open (load balancers, probes)
# FastAPI serves these beside the schema without listing them in it; vLLM mounts /metrics.
UNLISTED_ROUTES = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/metrics")
REFUSED = (401, 403)
PATH_PARAM = re.compile(r"\{[^}/]+\}")


NORMAL_FINISH = ("length", "stop")
MIN_TOKENS, MAX_TOKENS = 2, 8  # the chat checks' request


class CheckFailed(Exception):
    """A check's failure, with its reason (an explicit result, unlike assert)."""


def require(ok: object, reason: str) -> None:
    if not ok:
        raise CheckFailed(reason)


def shipped_routes() -> tuple[str, list[str]]:
    """The pinned vLLM version's routes (data/vllm_routes.json): (version, paths)."""
    data = json.loads(ROUTES_FILE.read_text())
    return data["vllm_version"], [r["path"] for r in data["routes"]]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _brief(resp) -> str:
    return " ".join(resp.text[:160].split())


class Smoke:
    """The checks, in order; `model` is discovered from /v1/models when not given."""

    def __init__(self, url: str, api_key: str, model: str | None = None, timeout_s: float = 30.0) -> None:
        import httpx

        self.base = url.rstrip("/")
        self.key = api_key
        self.model = model
        self.timeout_s = timeout_s
        self.client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)))

    def close(self) -> None:
        self.client.close()

    # each check returns its detail on success and raises CheckFailed(reason) on failure
    def health(self) -> str:
        r = self.client.get(f"{self.base}/health")
        require(r.status_code == 200, f"/health answered {r.status_code} {_brief(r)}")
        return "/health 200"

    def models(self) -> str:
        r = self.client.get(f"{self.base}/v1/models", headers=_auth(self.key))
        require(r.status_code == 200, f"/v1/models answered {r.status_code} {_brief(r)}")
        ids = [m.get("id") for m in r.json().get("data", [])]
        require(ids, "/v1/models lists no model")
        if self.model is None:
            self.model = ids[0]
        require(self.model in ids, f"model '{self.model}' is not served (served: {', '.join(map(str, ids))})")
        return f"serves {', '.join(map(str, ids))}"

    def _refused(self, key: str | None) -> None:
        r = self.client.get(f"{self.base}/v1/models", headers=_auth(key))
        require(r.status_code == 401, f"expected 401, got {r.status_code}: the endpoint is not protected by the key")

    def no_key(self) -> str:
        self._refused(None)
        return "refused without a key (401)"

    def wrong_key(self) -> str:
        self._refused(self.key + "-wrong" if self.key else "wrong-key")
        return "refused with a wrong key (401)"

    def routes(self) -> tuple[list[str], list[str], str]:
        """The routes to call without a key, but /health: (served, maybe served, where they came from).
        The schema's routes are served; FastAPI's unlisted ones and the shipped list may not be (404)."""
        why = ""
        try:
            r = self.client.get(f"{self.base}/openapi.json", headers=_auth(self.key))
            paths = r.json().get("paths") if r.status_code == 200 else None
            why = f"/openapi.json answered {r.status_code}"
        except (ValueError, AttributeError):
            paths, why = None, "/openapi.json is not a JSON schema"
        if isinstance(paths, dict) and paths:
            served, maybe, source = list(paths), [p for p in UNLISTED_ROUTES if p not in paths], "its /openapi.json"
        else:
            version, shipped = shipped_routes()
            served, maybe, source = [], shipped, f"vLLM {version}'s route list ({why})"
        return [p for p in served if p not in OPEN_ROUTES], [p for p in maybe if p not in OPEN_ROUTES], source

    def every_route_guarded(self) -> str:
        """GET each route without a key. A route that takes only POST answers 405 when the request reaches
        vLLM's router, so nothing runs; the auth layer refuses before routing (401)."""
        served, maybe, source = self.routes()
        answered, refused = [], 0
        for path in served + maybe:
            url = self.base + PATH_PARAM.sub("selfhost-smoke", path)
            with self.client.stream("GET", url) as r:  # headers only: /metrics or /docs need not be read
                status = r.status_code
            if status in REFUSED:
                refused += 1
            elif not (status == 404 and path in maybe):  # a 404 there: a route this server does not have
                answered.append(f"{path} ({status})")
        require(not answered, f"answered without a key: {', '.join(answered)} (routes from {source})")
        return f"{refused} routes refused without a key; only /health is open (routes from {source})"

    def _chat_body(self, stream: bool) -> dict:
        return {
            "model": self.model or "",
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": MAX_TOKENS,
            "min_tokens": MIN_TOKENS,
            "temperature": 0.0,
            "stream": stream,
            **({"stream_options": {"include_usage": True}} if stream else {}),
        }

    @staticmethod
    def delivered(finish: object, tokens: object, what: str) -> str:
        """The answer's finish reason and token count, checked against the request (the bench's rule)."""
        require(finish in NORMAL_FINISH, f"{what} finished with finish_reason {finish} (expected length or stop)")
        if not isinstance(tokens, int):
            raise CheckFailed(f"{what} reported no completion_tokens in its usage")
        require(
            MIN_TOKENS <= tokens <= MAX_TOKENS, f"{what} delivered {tokens} tokens (asked {MIN_TOKENS} to {MAX_TOKENS})"
        )
        require(finish != "length" or tokens == MAX_TOKENS, f"{what} cut at {tokens} of {MAX_TOKENS} tokens")
        return f"{tokens} tokens, finish_reason {finish}"

    def chat(self) -> str:
        r = self.client.post(f"{self.base}/v1/chat/completions", headers=_auth(self.key), json=self._chat_body(False))
        require(r.status_code == 200, f"chat completion answered {r.status_code} {_brief(r)}")
        body = r.json()
        choice = (body.get("choices") or [{}])[0]
        text = choice.get("message", {}).get("content")
        require(isinstance(text, str) and text, f"chat completion has no text: {json.dumps(body)[:160]}")
        tokens = (body.get("usage") or {}).get("completion_tokens")
        return self.delivered(choice.get("finish_reason"), tokens, "the chat completion") + " of text"

    def stream(self) -> str:
        deadline = time.monotonic() + self.timeout_s
        chunks, done, finish, tokens = 0, False, None, None
        with self.client.stream(
            "POST", f"{self.base}/v1/chat/completions", headers=_auth(self.key), json=self._chat_body(True)
        ) as r:
            if r.status_code != 200:
                r.read()
                raise CheckFailed(f"streamed chat answered {r.status_code} {_brief(r)}")
            for line in r.iter_lines():
                require(time.monotonic() < deadline, f"stream not finished after {self.timeout_s:g}s")
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                event = json.loads(line[6:])
                require("error" not in event, f"error event mid-stream: {line[6:166]}")
                if event.get("usage"):
                    tokens = event["usage"].get("completion_tokens")
                for choice in event.get("choices") or []:
                    chunks += 1
                    finish = choice.get("finish_reason") or finish
        require(chunks, "the stream had no chunks")
        require(done, f"the stream ended without [DONE] after {chunks} chunks")
        require(finish, "no chunk carried a finish_reason")
        return f"{chunks} chunks, " + self.delivered(finish, tokens, "the stream") + ", [DONE]"

    def metrics(self) -> str:
        r = self.client.get(f"{self.base}/metrics", headers=_auth(self.key))
        require(r.status_code == 200, f"/metrics answered {r.status_code}")
        names = {ln.split("{")[0].split(" ")[0] for ln in r.text.splitlines() if ln and not ln.startswith("#")}
        require(names, "/metrics has no samples")
        vllm = sorted(n for n in names if n.startswith("vllm:"))
        return f"{len(names)} series" + (f" (e.g. {vllm[0]})" if vllm else "")

    def checks(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("health", self.health),
            ("models", self.models),
            ("no key refused", self.no_key),
            ("every route needs the key", self.every_route_guarded),
            ("wrong key refused", self.wrong_key),
            ("chat completion", self.chat),
            ("streamed chat", self.stream),
            ("metrics", self.metrics),
        ]


def _reason(err: BaseException, timeout_s: float) -> str:
    import httpx

    if isinstance(err, CheckFailed):
        return str(err)
    if isinstance(err, httpx.ConnectError):
        return f"cannot connect ({err})"
    if isinstance(err, httpx.ReadTimeout):
        return f"no data for {timeout_s:g}s (read timeout): the server stalled"
    if isinstance(err, httpx.TimeoutException):
        return f"timed out ({type(err).__name__}, {timeout_s:g}s)"
    if isinstance(err, httpx.RemoteProtocolError):
        return f"broken response ({err})"
    return f"{type(err).__name__}: {err}"


def run_smoke(
    url: str,
    api_key: str,
    model: str | None = None,
    timeout_s: float = 30.0,
    on_check: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Run every check (a failure does not stop the others)."""
    smoke = Smoke(url, api_key, model, timeout_s)
    out = []
    try:
        for name, fn in smoke.checks():
            t0 = time.perf_counter()
            try:
                c = Check(name, True, fn())
            except Exception as err:  # noqa: BLE001 - a failed check is a result, with its reason
                c = Check(name, False, _reason(err, timeout_s))
            c.seconds = time.perf_counter() - t0
            out.append(c)
            if on_check:
                on_check(c)
    finally:
        smoke.close()
    return out


def server_version(url: str, api_key: str | None, timeout_s: float = 30.0) -> str | None:
    """The vLLM version the server reports on /version (with the key: the auth layer guards it), or None."""
    import httpx

    try:
        r = httpx.get(f"{url}/version", headers=_auth(api_key), timeout=min(timeout_s, 30))
        version = r.json().get("version") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return version if isinstance(version, str) and version.strip() else None


def render(checks: list[Check], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps({"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}, indent=2)
    width = max(len(c.name) for c in checks)
    lines = [
        f"{'PASS' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}  ({c.seconds * 1000:.0f} ms)" for c in checks
    ]
    failed = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - failed}/{len(checks)} checks passed")
    return "\n".join(lines)
