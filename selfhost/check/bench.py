"""The load generator: streamed requests over aiohttp, a concurrency sweep or Poisson arrivals.

Hot loop: the response body is read as raw bytes (`iter_any`) and each read's events are counted and
classified together by C-level byte searches (selfhost.check.sse); only the final usage event is JSON-parsed.
One timestamp per network read: every chunk in that read arrived then (ITL gaps of 0 inside one read, as
vLLM's client sees them too). Output tokens come from the server's usage report (`stream_options.include_usage`),
or the count of streamed chunks (less the chat stream's opening role chunk) when the server sends none.
The event loop is uvloop's where it is installed (not on Windows), asyncio's otherwise (`run_async`).

Every request has a total timeout and a read timeout (the longest silence allowed mid-stream), so a
stalled server fails its requests instead of hanging the run.

A request is ok only when it delivered what was asked (`delivery_problem`): every requested token (the
requests set `ignore_eos`), a normal finish reason (`length` or `stop`; not `abort`, not missing) and the
closing `[DONE]`. A stream cut short by a server that stops (vLLM without a drain aborts its requests, and
may still close the stream cleanly) is a failure named by its cause, never a success.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from selfhost.check.bench_math import RequestResult, Slo, metrics
from selfhost.check.sse import StreamScan

T = TypeVar("T")
NORMAL_FINISH = ("length", "stop")
# The causes a stream that ended is failed for (the report's error keys; counts per cause).
NO_DONE = "cut: the stream ended without [DONE]"
NO_FINISH = "cut: no chunk carried a finish_reason"
SHORT = "short: fewer tokens than requested (ignore_eos)"


def delivery_problem(done: bool, finish: str | None, delivered: int, requested: int) -> str | None:
    """Why a stream that ended did not deliver what was asked (None: it did). `delivered` counts the server's
    usage report when the stream has one, else the streamed chunks."""
    if not done:
        return NO_DONE
    if finish is None:
        return NO_FINISH
    if finish not in NORMAL_FINISH:
        return f"aborted: finish_reason {finish}"
    if delivered < requested:
        return SHORT
    return None


@dataclass(frozen=True)
class BenchConfig:
    url: str  # base URL, e.g. http://127.0.0.1:8000
    api_key: str | None
    model: str
    input_tokens: int
    output_tokens: int
    num_prompts: int | None = None  # per point; None: max(32, 4 x concurrency)
    api: str = "completions"  # or "chat"
    timeout_s: float = 300.0  # whole request
    read_timeout_s: float = 30.0  # longest silence mid-stream
    seed: int = 0
    slo: Slo = field(default_factory=Slo)


def prompt_ids(rng: random.Random, n: int) -> list[int]:
    """n token ids every Llama vocabulary has (exact input length, no tokenizer needed); a random
    sequence per request so prefix caching does not shortcut the prefill."""
    return [rng.randrange(100, 4000) for _ in range(n)]


_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "it",
    "an",
    "are",
    "this",
    "be",
    "or",
    "has",
    "had",
    "not",
]


def prompt_text(rng: random.Random, n: int) -> str:
    """About n tokens of text (common words are one token each in Llama 3's tokenizer)."""
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def request_body(cfg: BenchConfig, rng: random.Random) -> tuple[str, bytes]:
    """Path and JSON body of one request: exact output length (ignore_eos), streamed, with usage."""
    common = {
        "model": cfg.model,
        "max_tokens": cfg.output_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if cfg.api == "chat":
        body = {**common, "messages": [{"role": "user", "content": prompt_text(rng, cfg.input_tokens)}]}
        return "/v1/chat/completions", json.dumps(body).encode()
    body = {**common, "prompt": prompt_ids(rng, cfg.input_tokens)}
    return "/v1/completions", json.dumps(body).encode()


def headers(api_key: str | None) -> dict[str, str]:
    h = {"Content-Type": "application/json"}
    if api_key:
        h["Authorization"] = f"Bearer {api_key}"
    return h


def _describe(err: BaseException, timeout_s: float, read_timeout_s: float) -> str:
    import aiohttp

    if isinstance(err, aiohttp.SocketTimeoutError):
        return f"no data for {read_timeout_s:g}s mid-request (read timeout)"
    if isinstance(err, asyncio.TimeoutError):
        return f"timed out after {timeout_s:g}s"
    if isinstance(err, aiohttp.ClientConnectorError):
        return f"cannot connect: {err.os_error.strerror if err.os_error else err}"
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(err, aiohttp.ClientPayloadError):
        return "stream broken (incomplete response body)"
    return f"{type(err).__name__}: {err}"


async def one_request(session, base_url: str, path: str, body: bytes, hdrs: dict, cfg: BenchConfig) -> RequestResult:
    """Send one streamed request; never raises (failures are recorded in the result)."""
    import aiohttp

    perf = time.perf_counter
    start = perf()
    res = RequestResult(ok=False, start=start, requested_tokens=cfg.output_tokens)
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, sock_read=cfg.read_timeout_s)
    try:
        async with session.post(base_url + path, data=body, headers=hdrs, timeout=timeout) as resp:
            if resp.status != 200:
                text = (await resp.text())[:200]
                res.error = f"HTTP {resp.status}: {' '.join(text.split())}"
                return res
            itl = res.itl
            scan = StreamScan()
            last = 0.0
            async for data in resp.content.iter_any():
                now = perf()
                n = scan.feed(data)
                if n:
                    if scan.chunks > n:
                        itl.append(now - last)
                    else:
                        res.ttft = now - start
                    if n > 1:
                        itl.extend(itertools.repeat(0.0, n - 1))  # the rest of this read arrived with it
                    last = now
                if scan.error is not None:
                    res.error = "error event mid-stream: " + scan.error
                    return res
                res.output_tokens = scan.tokens  # so far: a stream cut by an exception keeps its count
                if scan.done:
                    break
            if scan.usage_event:
                usage = json.loads(scan.usage_event[6:]).get("usage") or {}
                res.output_tokens = usage.get("completion_tokens") or res.output_tokens
                res.input_tokens = usage.get("prompt_tokens") or 0
            problem = delivery_problem(scan.done, scan.finish, res.output_tokens, cfg.output_tokens)
            if problem:
                res.error = problem
                return res
            res.latency = last - start
            res.ok = True
            return res
    except (Exception, asyncio.TimeoutError) as err:  # noqa: BLE001 - every failure is a recorded result
        res.error = _describe(err, cfg.timeout_s, cfg.read_timeout_s)
        return res


def _session(limit: int):
    import aiohttp

    connector = aiohttp.TCPConnector(limit=limit, force_close=False, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, read_bufsize=2**17)


def prompts_for(cfg: BenchConfig, concurrency: int | None) -> int:
    """Requests in one point: enough for several waves at that concurrency."""
    return cfg.num_prompts or max(32, 4 * (concurrency or 8))


@dataclass
class PointRun:
    """Raw outcome of one load point."""

    concurrency: int | None
    request_rate: float | None
    results: list[RequestResult]
    duration_s: float
    client_cpu_s: float


def point_rng(cfg: BenchConfig, concurrency: int | None, request_rate: float | None) -> random.Random:
    """The prompts' random source of one point: seeded by the run's seed, prompt length and the point, so
    a sweep's points (and runs of other lengths on the same server) never repeat a prompt the server's
    prefix cache already holds, which would skip their prefill and shorten their TTFT."""
    return random.Random(f"{cfg.seed}:{cfg.input_tokens}:{concurrency}:{request_rate}")


async def run_point(
    cfg: BenchConfig,
    *,
    concurrency: int | None = None,
    request_rate: float | None = None,
    on_done: Callable[[RequestResult], None] | None = None,
) -> PointRun:
    """num_prompts requests at a fixed concurrency, or with Poisson arrivals at request_rate/s
    (concurrency then caps the requests in flight when given)."""
    rng = point_rng(cfg, concurrency, request_rate)
    base = cfg.url.rstrip("/")
    hdrs = headers(cfg.api_key)
    n = prompts_for(cfg, concurrency)
    bodies = [request_body(cfg, rng) for _ in range(n)]
    limit = concurrency or n
    sem = asyncio.Semaphore(limit)
    async with _session(limit) as session:

        async def go(i: int) -> RequestResult:
            async with sem:
                r = await one_request(session, base, *bodies[i], hdrs, cfg)
            if on_done:
                on_done(r)
            return r

        cpu0, t0 = time.process_time(), time.perf_counter()
        if request_rate:
            tasks = []
            for i in range(n):
                tasks.append(asyncio.create_task(go(i)))
                if i < n - 1:
                    await asyncio.sleep(rng.expovariate(request_rate))
            results = list(await asyncio.gather(*tasks))
        else:
            results = list(await asyncio.gather(*(go(i) for i in range(n))))
        duration, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return PointRun(concurrency, request_rate, results, duration, cpu)


def point_metrics(run: PointRun, slo: Slo) -> dict:
    """Metrics of one point plus the client's own overhead (its CPU time over the wall time)."""
    m = metrics(run.results, run.duration_s, slo)
    tokens = m["total_output_tokens"]
    conc: float | None
    if run.request_rate is None:
        conc = run.concurrency
    else:  # Little's law: mean requests in flight
        conc = sum(r.latency for r in run.results if r.ok) / max(run.duration_s, 1e-9)
    return {
        "concurrency": conc,
        "request_rate": run.request_rate,
        **m,
        "client": {
            "cpu_s": run.client_cpu_s,
            "cpu_percent": 100 * run.client_cpu_s / max(run.duration_s, 1e-9),
            "cpu_us_per_output_token": (1e6 * run.client_cpu_s / tokens) if tokens else None,
        },
    }


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end on uvloop's event loop (less client CPU per streamed token than asyncio's),
    or on asyncio's where uvloop is not installed (it has no Windows build)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def run_sweep(
    cfg: BenchConfig,
    concurrencies: list[int] | None = None,
    request_rate: float | None = None,
    progress: Callable[[str, int], Callable[[RequestResult], None]] | None = None,
) -> list[dict]:
    """One point per concurrency (or one point at request_rate). `progress(label, total)` returns
    the per-request callback of a progress bar."""
    points = []
    loads = [(None, request_rate)] if request_rate else [(c, None) for c in (concurrencies or [1])]
    for conc, rate in loads:
        label = f"rate {rate:g}/s" if rate else f"concurrency {conc}"
        cb = progress(label, prompts_for(cfg, conc)) if progress else None
        run = run_async(run_point(cfg, concurrency=conc, request_rate=rate, on_done=cb))
        points.append(point_metrics(run, cfg.slo))
    return points
