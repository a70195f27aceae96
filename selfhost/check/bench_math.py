"""Benchmark metrics with the definitions of `vllm bench serve` (vllm/benchmarks/serve.py).

- TTFT: time from sending the request to the first streamed chunk.
- ITL: every gap between consecutive streamed chunks of a request (all requests pooled).
- TPOT: per request, (latency - TTFT) / (output tokens - 1); only requests with > 1 output token.
- E2E latency: time from sending the request to its last chunk.
- Merged requests: most of their tokens arrived together (median gap 0; the server's API process behind its
  engine, e.g. on a 2-vCPU host); their TTFT and TPOT time the delivery. `streamed_ttft_ms` and
  `streamed_tpot_ms` summarize the other requests.
- Percentiles: linear interpolation between closest ranks (numpy.percentile's default).
- Goodput: completed requests that meet every SLO given (TTFT, TPOT, E2E, in ms), per second.
  A request with one output token has TPOT 0 for the goodput test, as in vLLM.
- Throughputs divide by the wall time of the whole run, failed requests counting 0 tokens.
- A request is completed only when it delivered every requested token with a normal finish reason and
  [DONE] (selfhost.check.bench.delivery_problem); delivered/requested output tokens count every request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PERCENTILES = (50, 90, 99)


@dataclass
class RequestResult:
    """One request as the client saw it (seconds; `start` on the client's perf_counter clock)."""

    ok: bool
    start: float = 0.0
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0  # delivered: the usage report's count, else the streamed chunks (failed ones too)
    input_tokens: int = 0
    error: str = ""
    requested_tokens: int = 0  # max_tokens asked for (ignore_eos: the length an ok request delivers)

    @property
    def merged(self) -> bool:
        """Most of its tokens arrived together (median gap 0): the server's API process fell behind its engine
        and sent the stream in bursts, so its TTFT and TPOT time the delivery, not the generation."""
        gaps = sorted(self.itl)
        return len(gaps) > 1 and gaps[len(gaps) // 2] <= 0

    @property
    def tpot(self) -> float | None:
        """(latency - TTFT) / (output tokens - 1); None when there is no second token."""
        if self.output_tokens <= 1:
            return None
        return (self.latency - self.ttft) / (self.output_tokens - 1)


@dataclass(frozen=True)
class Slo:
    """Service-level objectives for goodput, in milliseconds; None means not checked."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2el_ms))


def percentile(values: Sequence[float], p: float) -> float:
    """numpy.percentile(values, p) (linear method) without numpy; 0.0 for no values, as vLLM."""
    if not values:
        return 0.0
    xs = sorted(values)
    rank = (len(xs) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


def summary_ms(values_s: Sequence[float], percentiles: Iterable[float] = PERCENTILES) -> dict[str, float]:
    """mean, median and the percentiles, in milliseconds."""
    out = {
        "mean": (sum(values_s) / len(values_s) * 1000) if values_s else 0.0,
        "median": percentile(values_s, 50) * 1000,
    }
    for p in percentiles:
        out[f"p{p:g}"] = percentile(values_s, p) * 1000
    return out


def meets_slo(r: RequestResult, slo: Slo) -> bool:
    if not r.ok:
        return False
    if slo.ttft_ms is not None and r.ttft * 1000 > slo.ttft_ms:
        return False
    if slo.tpot_ms is not None and (r.tpot or 0.0) * 1000 > slo.tpot_ms:
        return False
    return not (slo.e2el_ms is not None and r.latency * 1000 > slo.e2el_ms)


def metrics(results: Sequence[RequestResult], duration_s: float, slo: Slo = Slo()) -> dict:
    """The figures of one benchmark point (one concurrency or request rate)."""
    done = [r for r in results if r.ok]
    errors: dict[str, int] = {}
    for r in results:
        if not r.ok:
            errors[r.error] = errors.get(r.error, 0) + 1
    out_tokens = sum(r.output_tokens for r in done)
    in_tokens = sum(r.input_tokens for r in done)
    dur = max(duration_s, 1e-9)
    tpots = [t for t in (r.tpot for r in done) if t is not None]
    good = sum(meets_slo(r, slo) for r in done)
    streamed = [r for r in done if not r.merged]
    return {
        "num_requests": len(results),
        "completed": len(done),
        "failed": len(results) - len(done),
        "errors": errors,
        "duration_s": duration_s,
        "requests_per_s": len(done) / dur,
        "output_tokens_per_s": out_tokens / dur,
        "total_tokens_per_s": (in_tokens + out_tokens) / dur,
        "total_output_tokens": out_tokens,
        "total_input_tokens": in_tokens,
        # every request, failed ones too: a cut stream shows as delivered < requested
        "delivered_output_tokens": sum(r.output_tokens for r in results),
        "requested_output_tokens": sum(r.requested_tokens for r in results),
        "mean_input_tokens": in_tokens / len(done) if done else 0.0,
        "mean_output_tokens": out_tokens / len(done) if done else 0.0,
        "goodput_rps": good / dur if slo.any else None,
        "ttft_ms": summary_ms([r.ttft for r in done]),
        "tpot_ms": summary_ms(tpots),
        "itl_ms": summary_ms([g for r in done for g in r.itl]),
        "e2el_ms": summary_ms([r.latency for r in done]),
        # TTFT and TPOT of the requests streamed as generated (not merged): what a projection of the engine is
        # compared with; the figures above keep every request
        "merged_requests": len(done) - len(streamed),
        "streamed_ttft_ms": summary_ms([r.ttft for r in streamed]),
        "streamed_tpot_ms": summary_ms([r.tpot for r in streamed if r.tpot is not None]),
    }
