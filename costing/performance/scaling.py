"""What the Pulumi stacks' groups scale on and how long a replica drains, both from the projection.

An LLM replica saturates on requests in flight (vLLM's running batch plus its queue), not on requests a
second: 100 short and 100 long requests are the same QPS and very different loads. The stacks' replicas
publish vLLM's `vllm:num_requests_running + vllm:num_requests_waiting` (and `vllm:kv_cache_usage_perc`
beside it), and the groups track the projection's SLO-bound concurrency at the target utilisation per
replica. SkyServe scales on QPS only: the review shows both figures.

Draining: a replica leaving (scale-in, update, spot reclaim) stops taking requests, then vLLM finishes
the ones in flight within a drain time sized from the projection's p99 end-to-end latency, bounded."""

from __future__ import annotations

INFLIGHT_SIGNAL = "vllm:num_requests_running + vllm:num_requests_waiting"
KV_SIGNAL = "vllm:kv_cache_usage_perc"
# The notice a cloud gives before it reclaims a spot VM (AWS: the two-minute spot interruption notice;
# GCP: the 30 s preemption notice in which the shutdown script runs), from each cloud's documentation.
RECLAIM_NOTICE_S = {"aws": 120, "gcp": 30}
DRAIN_MARGIN_S = 10  # the load balancer's last routed request reaching vLLM, the engine's own stop


def inflight_target(slo_concurrency: int, utilization: float) -> float:
    """Requests in flight per replica the groups keep: the SLO-bound concurrency at the target utilisation."""
    return max(0.1, round(slo_concurrency * utilization, 1))


def drain_seconds(review) -> int:  # costing.money.review.CostReview
    """The one drain time a deployment of `review` uses: vLLM's --shutdown-timeout the review sized
    (costing.performance.drain: the projected p99 end-to-end latency, bounded), which the load balancer's deregistration
    delay and the termination hook follow, so none cuts what vLLM is still finishing."""
    return int(review.resolved.fit.settings.shutdown_timeout_s)


def reclaim_note(cloud: str, e2e_p99_s: float, e2e_s: float) -> str | None:
    """What a spot reclaim's notice cannot finish on `cloud` (None: a cloud the stacks do not drain)."""
    notice = RECLAIM_NOTICE_S.get(cloud)
    if notice is None:
        return None
    if e2e_p99_s <= notice - DRAIN_MARGIN_S:
        return (
            f"a spot reclaim gives {notice} s notice: the replica stops taking requests and finishes those in "
            f"flight (p99 end-to-end {e2e_p99_s:,.1f} s), so none is cut"
        )
    return (
        f"a spot reclaim gives {notice} s notice, less than the p99 end-to-end latency ({e2e_p99_s:,.1f} s, mean "
        f"{e2e_s:,.1f} s): requests in flight with more than {notice - DRAIN_MARGIN_S} s left when the notice "
        "arrives are cut (clients retry on another replica)"
    )


# SkyServe (SkyPilot 0.14, sky/serve): what a replica's stop does to requests in flight. Copied figures,
# checked against the installed SkyPilot by tests/test_review_scaling.py:
SKYSERVE_SCALE_DOWN_DRAIN_S = 120  # replica_managers._DEFAULT_DRAIN_SECONDS: scale-down/update waits, then `sky down`
SKYSERVE_LB_SYNC_S = 20  # constants.LB_CONTROLLER_SYNC_INTERVAL_SECONDS: the load balancer's view of ready replicas
SKYSERVE_LB_RETRIES = 3  # constants.LB_MAX_RETRY: a request that fails to reach a replica is tried again


def skyserve_stop_note(spot: bool, e2e_p99_s: float, drain_s: int) -> str:
    """What a SkyServe service does with requests in flight when a replica goes: SkyServe (not the kit) owns
    the replica's end. Scale-down and rolling updates mark it shutting down (the load balancer stops routing
    to it within its sync interval), wait a fixed drain, then terminate the cluster; a spot preemption is
    found by a failed readiness probe and the replica is recycled with no drain (the VM is already gone)."""
    down = SKYSERVE_SCALE_DOWN_DRAIN_S - SKYSERVE_LB_SYNC_S  # the least a request routed just before the stop gets
    if e2e_p99_s <= down:
        scale = (
            f"SkyServe's scale-down and rolling updates stop routing to a replica (within {SKYSERVE_LB_SYNC_S} s) "
            f"and terminate it {SKYSERVE_SCALE_DOWN_DRAIN_S} s later: the p99 request ({e2e_p99_s:,.1f} s) finishes"
        )
    else:
        scale = (
            f"SkyServe's scale-down and rolling updates terminate a replica {SKYSERVE_SCALE_DOWN_DRAIN_S} s after "
            f"it stops routing to it (within {SKYSERVE_LB_SYNC_S} s), less than the p99 request "
            f"({e2e_p99_s:,.1f} s; vLLM's drain {drain_s} s): longer requests in flight are cut"
        )
    if not spot:
        return scale
    return (
        f"{scale}; a spot preemption gets no drain: SkyServe finds it by a failed readiness probe and recycles "
        f"the replica, so streams in flight on it are cut (the load balancer retries a request that cannot reach "
        f"a replica, up to {SKYSERVE_LB_RETRIES} times, but not a stream already answering)"
    )


PUBLISHED_METRICS = 3  # requests in flight, waiting, KV cache usage: one point each a minute per replica


def metrics_note(cloud: str) -> str | None:
    """The stacks' replicas publish vLLM's load; what that costs is not in the monthly total (no dated rate
    in costing/data), so the review says so rather than count it as free."""
    if cloud == "aws":
        return (
            f"the replicas publish {PUBLISHED_METRICS} CloudWatch custom metrics (the group's scaling signal), one "
            "PutMetricData call a minute each: CloudWatch bills custom metrics and API requests (not priced: no "
            "dated CloudWatch rate in costing/data); not in the monthly total"
        )
    if cloud == "gcp":
        return (
            f"the replicas write {PUBLISHED_METRICS} Cloud Monitoring custom metrics a minute each (the autoscaler's "
            "signal): Cloud Monitoring bills ingested bytes beyond its monthly free allotment (not priced: no dated "
            "Cloud Monitoring rate in costing/data); not in the monthly total"
        )
    return None
