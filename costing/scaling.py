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


def drain_seconds(review) -> int:  # costing.review.CostReview
    """The one drain time a deployment of `review` uses: vLLM's --shutdown-timeout the review sized
    (costing.drain: the projected p99 end-to-end latency, bounded), which the load balancer's deregistration
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
