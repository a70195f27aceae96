"""Render a SkyPilot task (dev cluster) or SkyServe service from a deployment spec.

The offer and the vLLM settings come from `costing.data.resolve.resolve` (the fit check the cost review
uses) and the `vllm serve` line from `costing.performance.vllm_args`, so the server SkyPilot starts is the one
that was costed. Needs only PyYAML: SkyPilot itself is imported by the tests and `selfhost launch`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from costing.data.catalog import Offer, offers_for
from costing.data.cluster_offer import KUBERNETES
from costing.data.resolve import Resolved, price_of, resolve
from costing.data.spec import DeploymentSpec, TargetSpec, spec_from_dict
from costing.errors import UserError
from costing.money.review import drained
from costing.performance.fit import FitResult
from costing.performance.readiness import BUCKET_READ_BYTES_PER_S, ENGINE_START_S, startup_allowance_s
from costing.performance.vllm_args import (
    API_KEY_ENV,
    HF_TOKEN_ENV,
    MASTER_PORT,
    SERVE_ENV,
    VLLM_VERSION,
    NodeRole,
    shell_command,
    vllm_serve_argv,
)
from selfhost import auth_install

SECRETS = (HF_TOKEN_ENV, API_KEY_ENV)
HF_HOME = '"$HOME/.cache/huggingface"'  # on the cluster's own disk: kept across job re-runs and stop/start
IGNORE_PATTERNS = ["original/*"]  # meta-llama repos also ship consolidated .pth weights vLLM never reads
SPEC_MARKER = "# selfhost-spec: "
# A weights bucket (spec `sky.weights_store`) is mounted here with SkyPilot's MOUNT_CACHED mode (rclone's
# VFS cache: reads cached on the local disk, writes uploaded in the background). The first replica fills
# it from Hugging Face; every later or replacement replica reads the weights from the bucket.
WEIGHTS_MOUNT = "/weights"
WEIGHTS_DONE = ".selfhost-complete"  # written last, after every file of the snapshot is in the bucket
BUCKET_CLOUD = {"s3": "aws", "gs": "gcp"}

# Dev clusters: a serving job never lets a cluster go idle, so autostop waits for nothing and
# tears the cluster down this long after launch (`sky autostop -i N` extends it).
DEV_CLUSTER_MINUTES = 120
# Probe timeout: a one-token probe may wait behind this many full chunked-prefill steps of a busy engine.
PROBE_QUEUE_STEPS = 20
PREFILL_MFU = 0.3
MIN_PROBE_TIMEOUT_S = 15  # SkyServe's default
# SkyServe spot fallback: of N target replicas it runs BASE on-demand and N - BASE spot, so one
# on-demand replica is kept only when at least one spot replica remains beside it; a single-replica
# service relies on dynamic_ondemand_fallback (on-demand stands in while spot is short).
BASE_ONDEMAND_FALLBACK_REPLICAS = 1
# network_tier: best (EFA on AWS, GPUDirect on GCP) for the pipeline-parallel traffic between nodes;
# it adds no charge on these instances. RunPod has no network tiers.
NETWORK_TIER_CLOUDS = ("aws", "gcp")
QPS_KEY = re.compile(r"[A-Z0-9]+(?::[0-9]+)?")  # SkyServe's pattern for per-accelerator target QPS

# `nvidia-smi --query-gpu=name` patterns, to pick the fitted command on an any_of cluster.
NVIDIA_SMI_NAMES = {
    "A40": "'NVIDIA A40'",
    "A10G": "'NVIDIA A10G'",
    "L4": "'NVIDIA L4'",
    "L40S": "'NVIDIA L40S'",
    "A100": "*A100*40GB*",
    "A100-80GB": "*A100*80GB*",
    "H100": "*H100*",
}


@dataclass(frozen=True)
class Choice:
    """One placement SkyPilot may launch: its spec (offer pinned where needed) and resolution."""

    spec: DeploymentSpec
    resolved: Resolved
    pin_instance_type: bool  # the user named an offer: render its instance type

    @property
    def offer(self) -> Offer:
        if self.resolved.offer is None:  # resolve(need_offer=True) always finds one
            raise RuntimeError("choice without an offer")
        return self.resolved.offer

    @property
    def fit(self) -> FitResult:
        return self.resolved.fit

    @property
    def hourly_usd(self) -> float:
        return float(self.resolved.hourly_usd or 0.0)


def sky_launchable(offer: Offer) -> bool:
    """SkyPilot's RunPod catalog lists Secure Cloud pods only (its fetcher skips Community Cloud)."""
    return not (offer.cloud == "runpod" and (offer.cloud_type or "SECURE") != "SECURE")


def _refuse_spot_on_runpod(spec: DeploymentSpec) -> None:
    t = spec.target
    on_runpod = t.cloud == "runpod" or (t.offer or "").startswith("runpod-")
    if t.pricing == "spot" and on_runpod:
        raise UserError(
            "spot on RunPod is not offered: RunPod is removing interruptible pods from its API",
            "use --on-demand on RunPod, or --spot with --cloud aws or --cloud gcp",
        )


def choose(spec: DeploymentSpec) -> Choice:
    """The offer SkyPilot will launch for one target, priced as the cost review prices it."""
    _refuse_spot_on_runpod(spec)
    refuse_part_time(spec)
    refuse_single_machine_availability(spec)
    resolved = drained(spec, resolve(spec))  # vLLM's shutdown timeout as the review sizes it
    offer = resolved.offer
    if offer is None:  # resolve(need_offer=True) raises instead
        raise RuntimeError("resolved without an offer")
    if sky_launchable(offer):
        return Choice(spec, resolved, pin_instance_type=bool(spec.target.offer))
    if spec.target.offer:
        raise UserError(
            f"offer {offer.id} is a RunPod Community Cloud pod, which SkyPilot does not launch",
            "pick a Secure Cloud offer (e.g. --offer runpod-a40x1-secure)",
        )
    pricing, region = spec.target.pricing, spec.target.region
    secure = [
        o
        for o in offers_for(gpu=offer.gpu, gpus=offer.gpus, cloud=offer.cloud)
        if sky_launchable(o) and (not region or region in o.regions) and o.price(pricing, region)
    ]
    if not secure:
        raise UserError(
            f"no Secure Cloud {offer.gpus}x {offer.gpu} offer on RunPod in the catalog", "pick another --gpu or --cloud"
        )
    best = min(secure, key=lambda o: (price_of(o, pricing, region).usd_per_hour, o.id))
    pinned = spec.model_copy(update={"target": spec.target.model_copy(update={"offer": best.id})})
    return Choice(pinned, drained(pinned, resolve(pinned)), pin_instance_type=False)


def candidate_specs(spec: DeploymentSpec) -> list[DeploymentSpec]:
    """The spec itself, or one spec per `sky.any_of` target (replacing the target's placement)."""
    if not spec.sky.any_of:
        return [spec]
    base = spec.target.model_dump(exclude={"cloud", "offer", "gpu", "gpus", "region"}, exclude_unset=True)
    out = []
    for cand in spec.sky.any_of:
        target = TargetSpec.model_validate({**base, **cand.model_dump(exclude_unset=True)})
        # any_of stays on each candidate's spec: its review knows SkyPilot may pick another candidate
        # (no SpotHedge across candidates with different GPUs).
        out.append(spec.model_copy(update={"target": target}))
    return out


def choices(spec: DeploymentSpec) -> list[Choice]:
    """Every candidate placement, in the spec's order.

    An any_of spec may also name a `target` (so `selfhost plan` can cost it): it must then be the
    cheapest candidate, the one SkyPilot picks, or plan and launch would price different offers.
    """
    found = [choose(s) for s in candidate_specs(spec)]
    nodes = {c.fit.nodes for c in found}
    if len(nodes) > 1:
        raise UserError(
            "any_of candidates need different node counts", "give candidates that fit on the same number of nodes"
        )
    if spec.sky.any_of and (spec.target.offer or spec.target.gpu):
        planned = choose(spec.model_copy(update={"sky": spec.sky.model_copy(update={"any_of": ()})}))
        best = cheapest(found)
        if planned.offer.id != best.offer.id:
            raise UserError(
                f"the spec's target ({planned.offer.id}) is not the cheapest any_of candidate "
                f"({best.offer.id}, what SkyPilot picks): plan and launch would price different offers",
                f"set target.offer to {best.offer.id}, or drop the target",
            )
    return found


def cheapest(found: list[Choice]) -> Choice:
    """What SkyPilot's optimizer picks among any_of candidates: the lowest hourly price."""
    return min(found, key=lambda c: c.hourly_usd)


# ----------------------------------------------------------------------------- sizes and timings


def disk_size_gb(choice: Choice) -> int:
    """The weights plus headroom (costing.money.review.storage_gb_for) plus the system part: what the review costs."""
    from costing.money.review import sky_disk_size_gb, storage_gb_for

    return sky_disk_size_gb(storage_gb_for(choice.spec, choice.fit.weight_gib))


def initial_delay_s(fit: FitResult, weights_store: str | None = None) -> int:
    """Seconds a new replica may take to answer: engine start plus fetching the weights (from Hugging
    Face, or from the weights bucket the first replica filled)."""
    if not weights_store:
        return startup_allowance_s(fit.weight_gib)
    read = fit.weight_gib * 1024**3 / BUCKET_READ_BYTES_PER_S
    return int(math.ceil((ENGINE_START_S + read) / 60) * 60)


def weights_dir(repo: str) -> str:
    return f"{WEIGHTS_MOUNT}/{repo}"


def refuse_weights_store_elsewhere(spec: DeploymentSpec, found: list[Choice]) -> None:
    """A bucket is read by every replica: on the replicas' cloud only (cross-cloud reads are billed egress)."""
    store = spec.sky.weights_store
    if not store:
        return
    cloud = BUCKET_CLOUD[store.split("://", 1)[0]]
    others = sorted({c.offer.cloud for c in found} - {cloud})
    if others:
        raise UserError(
            f"weights bucket {store} is on {cloud}, but replicas may run on {', '.join(others)}: every replica "
            "would read the weights across clouds (billed egress, not in the review)",
            f"use a {'gs' if others == ['gcp'] else 's3'}:// bucket for {', '.join(others)} replicas, "
            "or keep the candidates on one cloud",
        )


def probe_timeout_s(fit: FitResult) -> int:
    """A one-token probe on a busy engine waits behind full chunked-prefill steps of the batch."""
    flops = 2 * fit.model.params_b * 1e9 * fit.settings.max_num_batched_tokens
    compute = fit.precision.compute if fit.gpu.computes_natively(fit.precision) else "bf16"
    step_s = flops / (fit.total_gpus * fit.gpu.dense_tflops(compute) * 1e12 * PREFILL_MFU)
    return max(MIN_PROBE_TIMEOUT_S, math.ceil(PROBE_QUEUE_STEPS * step_s))


def replica_policy(choice: Choice, spot: bool) -> dict[str, Any]:
    """SkyServe's replica policy is the cost review's fleet: min replicas for the off-peak load (at least 2
    with availability high), max for the peak, the QPS target at the spec's target utilization, and the
    on-demand base replica of a spot service. What SkyServe runs is what the review priced."""
    spec = choice.spec
    policy: dict[str, Any]
    if spec.workload is None:
        n = spec.target.replicas or (2 if spec.effective_availability == "high" else 1)
        policy = {"min_replicas": n, "max_replicas": n}
        base = base_ondemand_replicas(n) if spot else 0
    else:
        from costing.money.review import cost_review

        fleet = cost_review(spec, resolved=choice.resolved).fleet
        if fleet is None:  # cost_review always sets it
            raise RuntimeError("cost review without a fleet")
        policy = {"min_replicas": fleet.min_replicas, "max_replicas": fleet.max_replicas}
        if fleet.max_replicas > fleet.min_replicas:
            policy["target_qps_per_replica"] = max(0.01, math.floor(fleet.requests_per_s_per_replica * 100) / 100)
        base = fleet.base_ondemand_replicas
    if spot:
        if base:
            policy["base_ondemand_fallback_replicas"] = base
        policy["dynamic_ondemand_fallback"] = True
        if spot_hedge([choice]):
            # SpotHedge: spot replicas spread over the region's zones, cheapest first, moving away from
            # a zone that preempts them (the review prices each replica at its zone's price).
            policy["spot_placer"] = "dynamic_fallback"
    return policy


def base_ondemand_replicas(min_replicas: int) -> int:
    """On-demand replicas always kept in a spot service (never all of them)."""
    return BASE_ONDEMAND_FALLBACK_REPLICAS if min_replicas > BASE_ONDEMAND_FALLBACK_REPLICAS else 0


def refuse_single_machine_availability(spec: DeploymentSpec) -> None:
    """A dev cluster is one machine: it cannot give the >= 2 replicas `availability: high` asks for."""
    if spec.availability == "high" and not spec.sky.service:
        raise UserError(
            "availability high needs at least 2 replicas, and a SkyPilot dev cluster is one machine",
            "render a SkyServe service (--service), or drop `availability: high`",
        )


def refuse_one_machine_short(choice: Choice) -> None:
    """A dev cluster is one machine: a workload whose review needs more replicas would be priced for them
    and run on one (what is costed is what runs)."""
    spec = choice.spec
    if spec.workload is None:
        return
    from costing.money.review import cost_review

    fleet = cost_review(spec, resolved=choice.resolved).fleet
    if fleet is not None and fleet.max_replicas > 1:
        raise UserError(
            f"the workload needs {fleet.max_replicas} replicas at its peak, and a SkyPilot dev cluster is one machine",
            "render a SkyServe service (--service) that runs them, or lower the workload (--requests-per-day)",
        )


def refuse_part_time(spec: DeploymentSpec) -> None:
    """SkyPilot clusters and SkyServe replicas run until torn down: nothing here stops them on a schedule."""
    sc = spec.schedule
    if sc.part_time:
        kind = "SkyServe service" if spec.sky.service else "SkyPilot dev cluster"
        raise UserError(
            f"a {kind} cannot run on a schedule ({sc.hours_per_day:g} h/day, {sc.days_per_week:g} days/week): "
            "it would run, and be billed, around the clock",
            "drop the schedule (24 h/day, 7 days/week) for SkyPilot, or deploy with the aws/gcp Pulumi stack, "
            "which turns the schedule into scheduled scaling",
        )


# ----------------------------------------------------------------------------- scripts


def _setup(repo: str, weights_store: str | None = None) -> str:
    if weights_store:
        target = weights_dir(repo)
        fill = (
            f"from huggingface_hub import snapshot_download; "
            f"snapshot_download({repo!r}, local_dir={target!r}, ignore_patterns={IGNORE_PATTERNS!r})"
        )
        return "\n".join(
            [
                "set -e",
                f"python3 -m pip install --quiet 'vllm=={VLLM_VERSION}'",
                f"# Weights: in {weights_store} (mounted at {WEIGHTS_MOUNT}), filled from Hugging Face once;",
                "# a later or replacement replica finds the marker and downloads nothing.",
                f'if [ ! -f "{target}/{WEIGHTS_DONE}" ]; then',
                f"  python3 -c {json.dumps(fill)}",
                f'  touch "{target}/{WEIGHTS_DONE}"',
                "fi",
                "",
            ]
        )
    download = (
        f"from huggingface_hub import snapshot_download; "
        f"snapshot_download({repo!r}, ignore_patterns={IGNORE_PATTERNS!r})"
    )
    return "\n".join(
        [
            "set -e",
            f"export HF_HOME={HF_HOME}",
            f"python3 -m pip install --quiet 'vllm=={VLLM_VERSION}'",
            "# Weights go to HF_HOME on the cluster disk once; later runs and restarts reuse them.",
            f"python3 -c {json.dumps(download)}",
            "",
        ]
    )


def _node_block(c: Choice, model: str | None) -> list[str]:
    """The `vllm serve` line(s) of one fit: one line on one node; on several nodes the head's line and the
    workers' line (vLLM's multiprocessing backend: every node runs `vllm serve`, the workers `--headless`)."""
    s = c.fit.settings
    if c.fit.nodes == 1:
        return [shell_command(vllm_serve_argv(s, model=model))]
    head = NodeRole(c.fit.nodes, "0", "$HEAD_IP")
    worker = NodeRole(c.fit.nodes, "$SKYPILOT_NODE_RANK", "$HEAD_IP")
    return [
        'if [ "$SKYPILOT_NODE_RANK" = "0" ]; then',
        f"  {shell_command(vllm_serve_argv(s, model=model, node=head))}",
        "else",
        f"  {shell_command(vllm_serve_argv(s, model=model, node=worker))}",
        "fi",
    ]


def _serve_block(found: list[Choice]) -> list[str]:
    """`vllm serve ...` from the one builder; on an any_of cluster, the line fitted to its GPU."""
    commands: dict[str, list[str]] = {}
    store = found[0].spec.sky.weights_store
    for c in found:
        model = weights_dir(c.fit.settings.model_repo) if store else None
        block = _node_block(c, model)
        if commands.setdefault(c.fit.gpu.name, block) != block:
            raise UserError(
                f"any_of candidates with {c.fit.gpu.name} GPUs need different vLLM settings",
                "give each GPU type once (the same GPU count) in any_of",
            )
    blocks = list(commands.values())
    if all(b == blocks[0] for b in blocks):
        return blocks[0]
    lines = ['GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)"', 'case "$GPU_NAME" in']
    for gpu, block in commands.items():
        lines += [f"  {NVIDIA_SMI_NAMES.get(gpu, repr('*' + gpu + '*'))})", *(f"    {x}" for x in block), "    ;;"]
    lines += ["  *)", '    echo "no fitted vLLM command for GPU $GPU_NAME" >&2', "    exit 1", "    ;;", "esac"]
    return lines


def _run(found: list[Choice]) -> str:
    lines = ["set -e", f"export HF_HOME={HF_HOME}", *(f"export {k}={v}" for k, v in SERVE_ENV.items())]
    if found[0].spec.sky.weights_store:
        lines.append("export HF_HUB_OFFLINE=1  # the weights come from the bucket: no Hugging Face at serve time")
    if found[0].fit.nodes > 1:
        # Pipeline parallel across nodes with vLLM's own multiprocessing backend (`--nnodes/--node-rank/
        # --master-addr`), not Ray: SkyPilot runs this script on every node and switches its own Ray off
        # before it, and vLLM 0.32 refuses a world size larger than one node's GPUs unless told the nodes.
        # The head (rank 0) serves the API; each worker joins it `--headless` at HEAD_IP:MASTER_PORT
        # (torch.distributed), announcing its own address (VLLM_HOST_IP). Nothing to install, nothing to loop on.
        lines += [
            'HEAD_IP="$(echo "$SKYPILOT_NODE_IPS" | head -n1)"',
            'VLLM_HOST_IP="$(echo "$SKYPILOT_NODE_IPS" | sed -n "$((SKYPILOT_NODE_RANK + 1))p")"',
            "export VLLM_HOST_IP",
        ]
    lines += [
        # vLLM's --middleware loads the auth layer from here; the key stays in the environment (secrets).
        auth_install.install_shell(auth_install.SKY_DIR),
        f'export PYTHONPATH="{auth_install.SKY_DIR}${{PYTHONPATH:+:$PYTHONPATH}}"',
        # the auth layer's key rules before any model loads: a missing or weak key ends the run here (exit 2)
        auth_install.KEY_CHECK,
        *_serve_block(found),
    ]
    return "\n".join([*lines, ""])


# ----------------------------------------------------------------------------- the task


def spot_hedge(found: list[Choice]) -> bool:
    """SpotHedge for this service's spot replicas (the review prices them zone by zone when it is)."""
    from costing.money.review import spot_hedge as priced_with_hedge

    return len(found) == 1 and priced_with_hedge(found[0].spec, found[0].resolved)


def _resources(
    found: list[Choice], service: bool, autostop_minutes: int | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    spot = found[0].spec.target.pricing == "spot"
    hedge = service and spot_hedge(found)

    def placement(c: Choice) -> dict[str, Any]:
        if c.offer.cloud == KUBERNETES:  # SkyPilot's infra syntax: the context is the "region"
            return {"infra": f"k8s/{c.offer.region}", "accelerators": accelerator(c)}
        p: dict[str, Any] = {"cloud": c.offer.cloud}
        price = c.resolved.price
        region = (price.region if price else None) or c.spec.target.region or c.offer.region  # the priced region
        if region:
            p["region"] = region
        p["accelerators"] = accelerator(c)
        if c.pin_instance_type and hedge:
            # SpotHedge needs SkyPilot to pick the instance in each zone: the offer's shape picks it
            # (it is the cheapest with these GPUs and at least these vCPUs and memory).
            p["cpus"] = f"{c.offer.vcpus}+"
            p["memory"] = f"{c.offer.ram_gb:g}+"
        elif c.pin_instance_type:
            p["instance_type"] = c.offer.instance_type
        return p

    res: dict[str, Any] = {}
    if len(found) == 1:
        res.update(placement(found[0]))
    if found[0].fit.nodes > 1 and all(c.offer.cloud in NETWORK_TIER_CLOUDS for c in found):
        res["network_tier"] = "best"
    res["use_spot"] = spot
    res["disk_size"] = max(disk_size_gb(c) for c in found)
    res["ports"] = found[0].fit.settings.port
    if not service:
        minutes = autostop_minutes or DEV_CLUSTER_MINUTES
        res["autostop"] = {"idle_minutes": minutes, "down": True, "wait_for": "none"}
    if labels:  # the kit's owner and expiry marks on the VMs (AWS tags, GCP labels): see selfhost.reap.ttl
        res["labels"] = dict(labels)
    if len(found) > 1:
        res["any_of"] = [placement(c) for c in found]
    return res


LABEL = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def check_labels(text: str) -> dict[str, str]:
    """`--labels`: a JSON object of GCP-label-safe keys and values (the `tags` `selfhost ttl` prints)."""
    fix = 'pass the tags `selfhost ttl --format github` prints, e.g. --labels \'{"owner": "acme_sapp"}\''
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--labels is not JSON ({err.msg})", fix) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and LABEL.fullmatch(k) and LABEL_VALUE.fullmatch(v)
        for k, v in data.items()
    ):
        raise UserError("--labels must map lowercase label keys to label values (a-z, 0-9, _ and -)", fix)
    return data


PLAIN_HTTP_FIX = (
    "give the service a certificate: sky.tls_keyfile and sky.tls_certfile in the spec (or --tls-keyfile KEY.pem "
    "--tls-certfile CERT.pem), or opt in to plain HTTP with sky.allow_plain_http: true (or --allow-plain-http), "
    "e.g. behind your own TLS terminator"
)


def service_tls(spec: DeploymentSpec) -> dict[str, str] | None:
    """SkyServe's `service.tls` for the spec, or None for a plain-HTTP service the user opted in to.

    A SkyServe endpoint is plain HTTP unless the service names a key and certificate (SkyServe's load
    balancer then serves HTTPS with them): every request carries the API key, so a service without TLS is
    refused unless the spec opts in (sky.allow_plain_http), as the Pulumi stacks refuse plain HTTP without
    allowPlainHttp. The files are read where `sky serve up` runs (SkyPilot uploads them)."""
    sk = spec.sky
    given = (sk.tls_keyfile is not None, sk.tls_certfile is not None)
    if any(given) and not sk.service:
        raise UserError(
            "tls_keyfile/tls_certfile apply to a SkyServe service (a dev cluster's port serves vLLM directly)",
            "render a service (--service, sky.service: true), or drop the TLS files",
        )
    if sk.allow_plain_http and not sk.service:
        raise UserError("allow_plain_http applies to a SkyServe service", "drop it, or render a service (--service)")
    if given[0] != given[1]:
        missing = "tls_certfile (--tls-certfile)" if given[0] else "tls_keyfile (--tls-keyfile)"
        raise UserError(f"TLS needs both a key and a certificate; {missing} is missing", f"give {missing}")
    if all(given):
        if sk.allow_plain_http:
            raise UserError(
                "the spec gives TLS files and allow_plain_http: the endpoint would serve HTTPS",
                "drop allow_plain_http (or the TLS files)",
            )
        return {"keyfile": str(sk.tls_keyfile), "certfile": str(sk.tls_certfile)}
    if sk.service and not sk.allow_plain_http:
        raise UserError(
            "a SkyServe service without TLS serves plain HTTP: every request's API key would cross the network "
            "unencrypted",
            PLAIN_HTTP_FIX,
        )
    return None


def _service(found: list[Choice]) -> dict[str, Any]:
    chosen = cheapest(found)
    fit = max((c.fit for c in found), key=lambda f: (f.weight_gib, probe_timeout_s(f)))
    s = chosen.fit.settings
    probe = {
        "path": "/v1/chat/completions",
        "post_data": {"model": s.served_model_name, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1},
        # SkyPilot fills $VLLM_API_KEY from `--secret VLLM_API_KEY` when the service is brought up.
        "headers": {"Authorization": f"Bearer ${API_KEY_ENV}"},
        "initial_delay_seconds": initial_delay_s(fit, chosen.spec.sky.weights_store),
        "timeout_seconds": max(probe_timeout_s(c.fit) for c in found),
    }
    spot = chosen.spec.target.pricing == "spot"
    policy = replica_policy(chosen, spot)
    if len(found) > 1 and "target_qps_per_replica" in policy:
        # SkyServe takes a QPS per accelerator: each candidate's own projection, not the cheapest's.
        per_gpu = {accelerator(c): replica_policy(c, spot).get("target_qps_per_replica") for c in found}
        known = all(v is not None for v in per_gpu.values())
        if known and all(QPS_KEY.fullmatch(k) for k in per_gpu) and len(set(per_gpu.values())) > 1:
            policy["target_qps_per_replica"] = per_gpu
            # SkyServe requires this policy with per-accelerator QPS: it routes by each replica's capacity.
            out = {
                "readiness_probe": probe,
                "replica_policy": policy,
                "load_balancing_policy": "instance_aware_least_load",
            }
            tls = service_tls(chosen.spec)
            return {**out, "tls": tls} if tls else out
    out = {"readiness_probe": probe, "replica_policy": policy}
    tls = service_tls(chosen.spec)
    if tls:
        out["tls"] = tls
    return out


def sky_pricing_config(found: list[Choice]) -> dict[str, Any]:
    """SkyPilot's config for the Kubernetes candidates (`kubernetes.context_configs.<context>.pricing`, USD per
    accelerator-hour, what `sky.catalog.kubernetes_catalog.get_hourly_cost` reads); empty without one."""
    contexts: dict[str, Any] = {}
    for c in found:
        if c.offer.cloud == KUBERNETES:
            rate = c.hourly_usd / c.offer.gpus
            accelerators = contexts.setdefault(c.offer.region, {"pricing": {"accelerators": {}}})["pricing"]
            accelerators["accelerators"][c.offer.gpu] = round(rate, 6)
    return {"kubernetes": {"context_configs": contexts}} if contexts else {}


def accelerator(c: Choice) -> str:
    return f"{c.fit.gpu.name}:{c.fit.gpus_per_node}"


# SkyPilot's own name rules (SkyPilot 0.14), copied because rendering does not import SkyPilot; a test checks the
# copies against SkyPilot's constants. A cluster or service name: sky.skylet.constants.CLUSTER_NAME_VALID_REGEX
# (sky.utils.common_utils.check_cluster_name_is_valid; `sky serve up` holds service names to the same regex). A
# task name: sky.task._VALID_NAME_REGEX (Task.name). A spec's `name` is both (the task's name and the default
# cluster/service name), and a file name (`launch sky` writes NAME.yaml): these rules admit no '/', no '..'
# start, no spaces or shell characters.
SKY_CLUSTER_NAME = re.compile(r"[a-zA-Z]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?")
SKY_TASK_NAME = re.compile(r"[a-zA-Z0-9]+(?:[._-]{1,2}[a-zA-Z0-9]+)*")


def check_name(name: str | None, what: str = "name") -> None:
    """Refuse a spec `name` (what="name") or a `--cluster` (what="--cluster") SkyPilot would refuse."""
    if name is None:
        return
    ok = SKY_CLUSTER_NAME.fullmatch(name) and (what == "--cluster" or SKY_TASK_NAME.fullmatch(name))
    if not ok:
        raise UserError(
            f"{what} {name!r} is not a SkyPilot name (a letter first, then letters, digits, '-', '_' or '.', "
            "ending in a letter or digit)",
            "give e.g. --cluster llama-8b-dev"
            if what == "--cluster"
            else "set the spec's name (--name) to e.g. llama-8b-dev",
        )


def task_name(spec: DeploymentSpec, found: list[Choice]) -> str:
    if spec.name:
        check_name(spec.name)
        return spec.name
    c = found[0]
    where = "any" if len(found) > 1 else f"{c.offer.cloud}-{c.fit.gpu.name.lower()}"
    return f"{c.fit.model.id}-{c.fit.precision.id}-{where}x{c.fit.total_gpus}".replace(".", "-")


def render_task(
    spec: DeploymentSpec,
    found: list[Choice] | None = None,
    autostop_minutes: int | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The SkyPilot task (with a `service:` section when spec.sky.service) as a dict. `autostop_minutes`: a dev
    cluster's hard stop that long after launch (default DEV_CLUSTER_MINUTES; a preview: `selfhost ttl`'s, the
    minutes to its expiry)."""
    check_name(spec.name)
    service = spec.sky.service
    if autostop_minutes is not None and (service or autostop_minutes < 1):
        raise UserError(
            "--autostop-minutes applies to a dev cluster (a task), at least 1 minute",
            "drop it for a SkyServe service, or render with --task and e.g. --autostop-minutes 480",
        )
    service_tls(spec)  # a service: TLS or the plain-HTTP opt-in
    found = found or choices(spec)
    repos = {c.fit.settings.model_repo for c in found}
    if len(repos) > 1:
        raise UserError("any_of candidates serve different checkpoints", "give candidates with the same precision")
    task: dict[str, Any] = {"name": task_name(spec, found)}
    if not service:
        refuse_one_machine_short(found[0])
    if service:
        task["service"] = _service(found)
    task["resources"] = _resources(found, service, autostop_minutes, labels)
    if found[0].fit.nodes > 1:
        task["num_nodes"] = found[0].fit.nodes
    refuse_weights_store_elsewhere(spec, found)
    if spec.sky.weights_store:
        task["file_mounts"] = {WEIGHTS_MOUNT: {"source": spec.sky.weights_store, "mode": "MOUNT_CACHED"}}
    task["secrets"] = dict.fromkeys(SECRETS)
    task["setup"] = _setup(next(iter(repos)), spec.sky.weights_store)
    task["run"] = _run(found)
    return task


# ----------------------------------------------------------------------------- YAML


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def spec_data(spec: DeploymentSpec) -> dict[str, Any]:
    """The spec as the smallest mapping that reloads to it (embedded in rendered files)."""
    return spec.model_dump(mode="json", exclude_defaults=True)


def header(
    spec: DeploymentSpec, found: list[Choice], service: bool, source: str | None, autostop_minutes: int | None = None
) -> str:
    chosen = cheapest(found)
    kind = "SkyServe service" if service else "SkyPilot dev-cluster task"
    minutes = autostop_minutes or DEV_CLUSTER_MINUTES
    launch = "sky serve up -n NAME" if service else (f"sky launch -c NAME -i {minutes} --down --wait-for none")
    lines = [
        f"# {kind}, rendered by `selfhost render sky`{f' from {source}' if source else ''}. Do not edit:",
        "# re-render (`make templates`) so the server launched stays the server that was costed.",
    ]
    for c in found:
        price = c.resolved.price
        lines.append(
            f"#   {c.offer.id}: {c.offer.instance_type} {c.offer.region}, ${c.hourly_usd:.4f}/h "
            f"{c.spec.target.pricing} ({price.source if price else ''})"
        )
        lines.append(f"#     {c.fit.describe()}")
    if len(found) > 1:
        lines.append(f"#   cheapest (what SkyPilot picks and the cost review prices): {chosen.offer.id}")
    pricing = sky_pricing_config(found)
    if pricing:
        lines += [
            "# SkyPilot prices a Kubernetes context at $0/h unless its config states a price: without this its",
            "# optimizer would always pick the context. With it, it compares the context with the clouds at the rate",
            "# the review priced. `selfhost launch sky` passes it (--config FILE); by hand, save it to a file and",
            "# add `--config FILE` to the command below (or put it in ~/.sky/config.yaml):",
            *(f"#   {line}" for line in dump(pricing).splitlines()),
        ]
    if found[0].fit.nodes > 1:
        lines += [
            f"# {found[0].fit.nodes} nodes: vLLM's own multi-node (multiprocessing backend, no Ray): every node runs "
            "`vllm serve --nnodes --node-rank",
            f"#   $SKYPILOT_NODE_RANK --master-addr <head>`, the workers --headless, joining the head on port "
            f"{MASTER_PORT}.",
        ]
    lines += [
        "# Launch: selfhost launch sky THIS_FILE  (cost review first), or by hand:",
        f"#   {launch} THIS_FILE --secret {HF_TOKEN_ENV} --secret {API_KEY_ENV}",
        SPEC_MARKER + json.dumps(spec_data(spec), separators=(",", ":"), sort_keys=True),
    ]
    return "\n".join(lines) + "\n"


def dump(task: dict[str, Any]) -> str:
    return yaml.dump(task, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100_000)


def render_yaml(
    spec: DeploymentSpec,
    *,
    source: str | None = None,
    autostop_minutes: int | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """The YAML file: a header naming the offers, the fit and the spec, then the task."""
    found = choices(spec)
    task = render_task(spec, found, autostop_minutes, labels)
    return header(spec, found, spec.sky.service, source, autostop_minutes) + dump(task)


def embedded_spec(text: str) -> DeploymentSpec | None:
    """The spec a rendered file carries in its header, or None for a hand-written file."""
    for line in text.splitlines():
        if line.startswith(SPEC_MARKER):
            return spec_from_dict(json.loads(line[len(SPEC_MARKER) :]))
        if line and not line.startswith("#"):
            break
    return None


def render_spec_file(path: str | Path, *, source: str | None = None) -> str:
    """Render one spec file (what `make templates` does for templates/specs/*.yaml)."""
    from costing.data.spec import load_spec

    return render_yaml(load_spec(path), source=source or str(path))
