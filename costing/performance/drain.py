"""How long a stopping vLLM server lets its in-flight requests finish (vLLM's `--shutdown-timeout`).

vLLM 0.32 (vllm/engine/arg_utils.py, `--shutdown-timeout`, "0 = abort, >0 = wait"; vllm/v1/engine/core.py
`_handle_shutdown`): on SIGTERM the API server stops taking requests; with 0 the engine aborts every
request in flight (their streams end cut short), with N > 0 it keeps generating until no request is left
or N seconds have passed. Every target sends that SIGTERM when a replica is stopped (spot reclaim,
scale-in, update, `selfhost down local`), so N is how long a stop may wait for the longest answer.

N is sized from the review's projection: the p99 end-to-end latency of one request at the concurrency the
review sizes a replica for (a request in flight when the signal comes has at most that much left), rounded
up to a whole second, and bounded:
- DRAIN_MIN_S: short answers still get a few seconds (the projection's tail is a model, and a replica
  under a burst runs slower than projected);
- DRAIN_MAX_S: 300 s, the longest any stop is worth waiting for: AWS's default target-group
  deregistration delay (300 s) and the bench's whole-request timeout (300 s); a request longer than that
  is one a client of the kit has already given up on.
"""

from __future__ import annotations

import math

DRAIN_MIN_S = 10
DRAIN_MAX_S = 300
SHUTDOWN_TIMEOUT_FLAG = "--shutdown-timeout"


def drain_timeout_s(p99_e2e_latency_s: float) -> int:
    """vLLM's shutdown timeout for a projected p99 end-to-end latency: ceil(p99), within the bounds (a
    non-finite or negative latency gets the maximum: a stop then waits the longest bounded time)."""
    if not math.isfinite(p99_e2e_latency_s) or p99_e2e_latency_s < 0:
        return DRAIN_MAX_S
    return int(min(DRAIN_MAX_S, max(DRAIN_MIN_S, math.ceil(p99_e2e_latency_s))))
