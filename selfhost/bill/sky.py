"""Price a SkyPilot task YAML as SkyPilot would run it: its resources (instance type or accelerators with
cpus/memory floors, the cheapest match as SkyPilot's optimizer picks), use_spot, num_nodes, disk_size;
and a SkyServe service's replica policy: min/max replicas, the on-demand base
(`base_ondemand_fallback_replicas`) and SpotHedge placement (`spot_placer: dynamic_fallback`: each spot
replica in the next cheapest zone). Pulumi- and SkyPilot-free: the YAML is read as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from costing.data.catalog import Offer, get_gpu, offers_for
from costing.data.cluster_offer import KUBERNETES, stated_offer
from costing.data.spec import KubernetesSpec
from costing.errors import UserError
from costing.money.spend import HOURS_PER_MONTH
from selfhost.bill.price import Bill, Usage, disk_rate, offer_for

SKY_CLOUDS = ("aws", "gcp", "runpod")
# SkyPilot's disk per node when a task declares no disk_size (sky.resources.DEFAULT_DISK_SIZE_GB; a test
# checks this copy against the installed SkyPilot: the bill does not import it).
SKY_DEFAULT_DISK_SIZE_GB = 256


def _floor(value: Any) -> float:
    text = str(value or "0").rstrip("+")
    try:
        return float(text)
    except ValueError:
        raise UserError(f"resources value {value!r} is not a number (or N+)", "write e.g. `cpus: 8+`") from None


def _kubernetes(res: dict[str, Any], stated: list[KubernetesSpec], pricing: str) -> tuple[Offer, str] | str | None:
    """A block on a Kubernetes context (`infra: k8s/<context>`), priced at the rate its spec states; None for
    any other block. SkyPilot itself prices a context at $0/h unless its config states a price."""
    infra = str(res.get("infra") or "")
    kind, _, context = infra.partition("/")
    if kind.lower() not in ("k8s", "kubernetes"):
        return None
    gpu, _, count = str(res.get("accelerators") or "").partition(":")
    named = [k for k in stated if k.context == context and get_gpu(k.gpu).name == get_gpu(gpu).name] if gpu else []
    if not named:
        return (
            f"Kubernetes context {context or '(any)'}: its price is the team's own and no spec states it "
            "(render the task from a spec whose candidate has kubernetes: {context, gpu, usd_per_node_hour, source})"
        )
    if pricing != "on-demand":
        return f"Kubernetes context {context}: SkyPilot launches no spot pods there"
    offer = stated_offer(named[0], int(float(count or 1)))
    return offer, context


def _stated(text: str) -> list[KubernetesSpec]:
    """The Kubernetes prices the spec embedded in a rendered task states (none for a hand-written task)."""
    from selfhost.skypilot.render import embedded_spec

    spec = embedded_spec(text)
    if spec is None:
        return []
    targets = [spec.target, *spec.sky.any_of]
    return [t.kubernetes for t in targets if t.kubernetes is not None]


def _choice(
    res: dict[str, Any], region_hint: str | None, pricing: str, stated: list[KubernetesSpec] | None = None
) -> tuple[Offer, str] | str:
    """The offer SkyPilot launches for one resources block, and its region; a string says why none."""
    on_cluster = _kubernetes(res, stated or [], pricing)
    if on_cluster is not None:
        return on_cluster
    cloud = str(res.get("cloud") or "").lower() or None
    if cloud and cloud not in SKY_CLOUDS:
        return f"cloud {cloud} is not in the catalog"
    itype = res.get("instance_type")
    if itype:
        clouds = [cloud] if cloud else list(SKY_CLOUDS)
        found = [o for c in clouds if (o := offer_for(c, str(itype)))]
        if not found:
            return f"instance type {itype} is not in the catalog"
        offer = found[0]
        return offer, str(res.get("region") or region_hint or offer.region)
    acc = str(res.get("accelerators") or "")
    if not acc:
        return "no instance_type nor accelerators: SkyPilot picks a CPU machine the catalog does not price"
    gpu, _, count = acc.partition(":")
    cpus, memory = _floor(res.get("cpus")), _floor(res.get("memory"))
    region = res.get("region") or region_hint
    candidates = []
    for o in offers_for(gpu=gpu, gpus=int(float(count or 1)), cloud=cloud):
        if o.vcpus < cpus or o.ram_gb < memory:
            continue
        where = str(region or o.region)
        price = o.price(pricing, where)
        if price is not None:
            candidates.append((price.usd_per_hour, o.id, o, where))
    if not candidates:
        return f"no catalog offer with {acc} ({cpus:g}+ vCPUs, {memory:g}+ GB) priced {pricing}"
    _, _, offer, where = min(candidates, key=lambda c: (c[0], c[1]))
    return offer, where


def bill_task(path: Path, usage: Usage | None = None) -> Bill:
    usage = (usage or Usage()).check()
    if not path.is_file():
        raise UserError(f"file '{path}' not found", "pass a SkyPilot task YAML or `pulumi preview --json` output")
    text = path.read_text()
    try:
        task = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"'{path}' is not YAML ({str(err).splitlines()[0]})", "pass a SkyPilot task YAML") from None
    if not isinstance(task, dict) or not isinstance(task.get("resources"), dict):
        raise UserError(
            f"'{path}' has no `resources:` mapping", "pass a SkyPilot task YAML (sky launch / sky serve up)"
        )
    name = str(task.get("name") or path.stem)
    res = task["resources"]
    bill = Bill(str(path))
    spot = bool(res.get("use_spot"))
    pricing = "spot" if spot else "on-demand"
    blocks = res.get("any_of") or res.get("ordered")
    if blocks:
        merged = [{**{k: v for k, v in res.items() if k not in ("any_of", "ordered")}, **b} for b in blocks]
        stated = _stated(text)
        choices = [_choice(b, None, pricing, stated) for b in merged]
        found = [c for c in choices if not isinstance(c, str)]
        unpriced_cluster = [c for b, c in zip(merged, choices, strict=True) if isinstance(c, str) and b.get("infra")]
        if unpriced_cluster:  # SkyPilot would compare the context at $0/h: no candidate can be named
            bill.not_priced(name, unpriced_cluster[0])
            return bill
        if not found:
            bill.not_priced(name, "no candidate of any_of/ordered is in the catalog")
            return bill
        if res.get("ordered"):
            offer, region = found[0]
        else:
            offer, region = min(found, key=lambda f: (f[0].price(pricing, f[1]).usd_per_hour, f[0].id))  # type: ignore[union-attr]
        bill.notes.append(
            f"{'ordered' if res.get('ordered') else 'any_of'}: priced {offer.id} in {region}, the candidate "
            "SkyPilot's optimizer launches first; a fallback to another candidate costs its own price"
        )
        if any(o.cloud == KUBERNETES for o, _ in found):
            bill.notes.append(
                "a Kubernetes context is priced at its stated rate: SkyPilot's optimizer compares it at that rate "
                "only with the pricing config the task's header shows (kubernetes.context_configs), else at $0/h"
            )
    else:
        choice = _choice(res, None, pricing, _stated(text))
        if isinstance(choice, str):
            bill.not_priced(name, choice)
            return bill
        offer, region = choice
    nodes = int(task.get("num_nodes") or 1)
    service = task.get("service")
    policy = (service or {}).get("replica_policy") or {}
    if service is not None:
        if policy:
            low = int(policy.get("min_replicas") or 1)
            high = int(policy.get("max_replicas") or low)
        else:
            low = high = int((service or {}).get("replicas") or 1)
        base = min(low, int(policy.get("base_ondemand_fallback_replicas") or 0)) if spot else 0
        hedge = spot and policy.get("spot_placer") == "dynamic_fallback"
    else:
        low = high = 1
        base, hedge = 0, False
        if res.get("autostop"):
            bill.notes.append("autostop: the cluster is billed while up; priced as up all month (idle time unknown)")
    share = usage.peak_hours_share
    od = offer.price("on-demand", region)
    zones = sorted(r.usd_per_hour for r in offer.rows("spot", region) if r.zone) if spot else []
    market = offer.price(pricing, region)
    if market is None or (base and od is None):
        bill.not_priced(name, f"no {pricing} price for {offer.instance_type} in {region}")
        return bill

    def spot_rate(first: int, count: int) -> float:
        if hedge and zones and count > 0:
            return sum(zones[i % len(zones)] for i in range(first, first + count)) / count
        return market.usd_per_hour

    each = f" x {nodes} nodes" if nodes > 1 else ""
    placement = " (SpotHedge: one zone each, cheapest first)" if hedge else ""
    always = low - base
    label = "replicas, always on" if service is not None else "cluster, up all month"
    bill.add(
        name,
        f"{offer.instance_type}{each} {pricing} {label}{placement}",
        pricing,
        always * nodes,
        HOURS_PER_MONTH,
        spot_rate(0, always),
        market.source,
    )
    if base and od is not None:
        bill.add(
            name,
            f"{offer.instance_type}{each} on-demand base replica",
            "on-demand",
            base * nodes,
            HOURS_PER_MONTH,
            od.usd_per_hour,
            od.source,
        )
    extra = high - low
    if extra:
        bill.add(
            name,
            f"{offer.instance_type}{each} {pricing} above min ({share:.0%} of hours){placement}",
            pricing,
            extra * share * nodes,
            HOURS_PER_MONTH,
            spot_rate(always, extra),
            market.source,
        )
    if policy.get("dynamic_ondemand_fallback") and spot:
        bill.notes.append(
            "dynamic_ondemand_fallback: a preempted spot replica runs on-demand until spot returns (not priced)"
        )
    disk = res.get("disk_size")
    if disk is None:
        disk = SKY_DEFAULT_DISK_SIZE_GB
        bill.notes.append(f"no disk_size: SkyPilot gives each node its default {disk} GB disk (priced)")
    if disk and offer.cloud == KUBERNETES:
        bill.notes.append(f"disk {float(disk):g} GB per node: the pod's disk on the cluster's node, in its stated rate")
    elif disk:
        rate = disk_rate(
            offer.cloud, {"aws": "gp3", "gcp": "pd-balanced", "runpod": "network-volume"}[offer.cloud], region
        )
        instances = (low + extra * share) * nodes
        if isinstance(rate, str):
            bill.not_priced(name, f"disk {disk} GB per node: {rate}")
        else:
            bill.storage(name, f"disk {float(disk):g} GB per node", instances, float(disk), rate)
    if service is not None:
        bill.not_priced(
            f"{name} (SkyServe controller)",
            "the controller VM SkyPilot starts for services: its machine is not in the task",
        )
    return bill
