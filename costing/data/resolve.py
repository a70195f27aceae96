"""Resolve a spec's target (offer, or GPU x count on a cloud) into a concrete offer and fit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from costing.data.catalog import Offer, Price, check_cloud, get_gpu, get_offer, offers_for
from costing.data.cluster_offer import fit_on_cluster
from costing.data.spec import DeploymentSpec
from costing.errors import UserError
from costing.money.spend import COMMITTED_PRICING
from costing.performance.fit import MULTI_NODE_CLOUDS, FitRequest, FitResult, fit_check, smallest_fit


@dataclass(frozen=True)
class Resolved:
    spec: DeploymentSpec
    fit: FitResult
    offer: Offer | None
    price: Price | None  # per node, under spec.target.pricing
    notes: tuple[str, ...] = ()  # how the GPU count was chosen when --gpus was not given

    @property
    def hourly_usd(self) -> float | None:
        """Per replica (all nodes)."""
        return None if self.price is None else self.price.usd_per_hour * self.fit.nodes


def fit_request(spec: DeploymentSpec, gpu: str, gpus: int) -> FitRequest:
    w, v = spec.workload, spec.vllm
    return FitRequest(
        model=spec.model,
        precision=spec.precision,
        gpu=gpu,
        gpus=gpus,
        nodes=spec.target.nodes,
        gpu_memory_utilization=v.gpu_memory_utilization,
        max_model_len=v.max_model_len,
        max_num_seqs=v.max_num_seqs,
        max_num_batched_tokens=v.max_num_batched_tokens,
        kv_cache_dtype=v.kv_cache_dtype,
        seq_len=(w.input_tokens + w.output_tokens) if w else None,
        model_repo=v.model_repo,
        served_model_name=v.served_model_name,
        enable_prefix_caching=v.enable_prefix_caching,
        port=v.port,
        extra_args=tuple(v.extra_args),
    )


# Where `selfhost prices refresh` reads each cloud's reserved/committed prices (selfhost.prices).
COMMITTED_APIS = {
    "aws": "the AWS Price List API (Reserved terms: standard, No Upfront)",
    "gcp": "the Cloud Billing Catalog API (commitment SKUs)",
}


def price_of(offer: Offer, pricing: str, region: str | None = None) -> Price:
    """The offer's price in `region` (default: its own); an unpriced region is refused, listing the priced ones."""
    if offer.cloud == "runpod" and offer.cloud_type == "COMMUNITY" and not offer.prices:
        # No dated 2026 source lists Community Cloud prices, so none is shipped: a refresh reads them from RunPod.
        secure = offer.id.replace("-community", "-secure")
        raise UserError(
            f"no dated RunPod Community Cloud price is shipped for {offer.id}",
            "run `selfhost prices refresh --cloud runpod` with RUNPOD_API_KEY set (it reads Community prices from "
            f"RunPod's API), or use Secure Cloud: --offer {secure} (the RunPod stack: cloudType SECURE)",
        )
    if region and region not in offer.regions:
        raise UserError(
            f"{offer.id} has no price for region {region}",
            f"use --region with one of: {', '.join(offer.regions) or 'none'} "
            f"(or `selfhost prices refresh --cloud {offer.cloud} --region {region}`)",
        )
    price = offer.price(pricing, region)
    if price is None and pricing in COMMITTED_PRICING and offer.cloud in COMMITTED_APIS:
        where = region or offer.region
        raise UserError(
            f"no {pricing} price for {offer.id} in {where} from {COMMITTED_APIS[offer.cloud]} in the price snapshot "
            "(a reserved or committed price is never derived from a discount factor)",
            f"run `selfhost prices refresh --cloud {offer.cloud} --region {where}` (it reads them), "
            "or use --pricing on-demand (or spot)",
        )
    if price is None:
        clouds_with = "aws or gcp" if pricing != "on-demand" else "another cloud"
        raise UserError(
            f"{offer.cloud} offers no {pricing} pricing for {offer.id}",
            f"use --pricing on-demand, or a {clouds_with} offer",
        )
    return price


def resolve(spec: DeploymentSpec, *, need_offer: bool = True) -> Resolved:
    """The offer and fit for a spec. With only --gpu, the fewest GPUs that fit are chosen."""
    t = spec.target
    if t.kubernetes is not None:  # the team's cluster, at the rate the spec states
        offer, fit = fit_on_cluster(spec, fit_request(spec, get_gpu(t.kubernetes.gpu).name, t.gpus or 1))
        return Resolved(spec, fit, offer, offer.price("on-demand"))
    if t.cloud:
        check_cloud(t.cloud)
    on_runpod = t.cloud == "runpod" or (t.offer or "").startswith("runpod-")
    if t.nodes > 1 and on_runpod:
        raise UserError(
            f"RunPod pods are single machines: {t.nodes} nodes cannot be deployed there",
            "use nodes: 1 with more GPUs or a smaller precision, or an aws/gcp offer for multi-node",
        )
    if t.offer:
        offer = get_offer(t.offer)
        if t.cloud and offer.cloud != t.cloud:
            raise UserError(
                f"offer {offer.id} is on {offer.cloud}, not {t.cloud}", "drop --cloud or pick a matching offer"
            )
        if t.gpu and get_gpu(t.gpu).name != offer.gpu:
            raise UserError(
                f"offer {offer.id} has {offer.gpu} GPUs, not {t.gpu}", "drop --gpu or pick a matching offer"
            )
        if t.gpus and t.gpus != offer.gpus:
            raise UserError(
                f"offer {offer.id} has {offer.gpus} GPUs, not {t.gpus}", "drop --gpus or pick a matching offer"
            )
        fit = fit_check(fit_request(spec, offer.gpu, offer.gpus))
        return Resolved(spec, fit, offer, price_of(offer, t.pricing, t.region))
    if not t.gpu:
        raise UserError("no GPU or offer given", "pass --gpu (e.g. --gpu A40) or --offer (e.g. --offer aws-g5.xlarge)")
    gpu = get_gpu(t.gpu).name
    req = fit_request(spec, gpu, t.gpus or 1)
    notes: tuple[str, ...] = ()
    if t.gpus:
        fit = fit_check(req)
    else:
        fit, notes = _fewest_gpus(req, gpu, t.cloud, need_offer)
    shaped = offers_for(gpu=gpu, gpus=fit.gpus_per_node, cloud=t.cloud)
    if t.region and shaped and not any(t.region in o.regions for o in shaped):
        priced = sorted({r for o in shaped for r in o.regions})
        raise UserError(
            f"no {fit.gpus_per_node}x {gpu} offer has a price for region {t.region}",
            f"use --region with one of: {', '.join(priced)} (or `selfhost prices refresh --region {t.region}`)",
        )
    offers = [o for o in shaped if (not t.region or t.region in o.regions) and o.price(t.pricing, t.region)]
    if fit.nodes > 1:
        offers = [o for o in offers if o.cloud in MULTI_NODE_CLOUDS]
    if not offers:
        if need_offer:
            where = f" on {t.cloud}" if t.cloud else ""
            raise UserError(
                f"no offer in the catalog has {fit.gpus_per_node}x {gpu}{where} with {t.pricing} pricing",
                "pick another --gpus/--cloud/--pricing, or --offer (see `selfhost compare`)",
            )
        return Resolved(spec, fit, None, None, notes)
    offer = min(offers, key=lambda o: price_of(o, t.pricing, t.region).usd_per_hour)
    return Resolved(spec, fit, offer, price_of(offer, t.pricing, t.region), notes)


GPU_COUNTS = (1, 2, 4, 8)  # tensor-parallel sizes per node


def _fewest_gpus(req: FitRequest, gpu: str, cloud: str | None, need_offer: bool) -> tuple[FitResult, tuple[str, ...]]:
    """The fewest GPUs per node that fit (what --gpus defaults to). When no offer sells that count: a
    projection alone (`estimate`) keeps it and says which counts are sold; a priced review (`plan`) costs
    the fewest sold count that fits and says so."""
    fewest = smallest_fit(req, GPU_COUNTS)
    sold = sorted({o.gpus for o in offers_for(gpu=gpu, cloud=cloud)})
    n = fewest.gpus_per_node
    if not sold or n in sold:
        return fewest, ()
    where = f" on {cloud}" if cloud else ""
    counts = ", ".join(f"{k}x" for k in sold)
    if not need_offer:
        return fewest, (f"{n}x {gpu} is the fewest that fit; no catalog offer{where} sells it (sold: {counts})",)
    larger = tuple(k for k in sold if k > n)
    if not larger:
        return fewest, ()
    fit = smallest_fit(req, larger)
    return fit, (
        f"{n}x {gpu} is the fewest that fit, but no catalog offer{where} sells it (sold: {counts}): "
        f"costed at {fit.gpus_per_node}x, the fewest sold count that fits",
    )


def across_zones(resolved: Resolved, zones: Sequence[str]) -> Resolved:
    """The spot price of a replica group spread over `zones` (zone IDs, e.g. use1-az1): an AWS Auto
    Scaling group balances its instances across its subnets' zones, so a replica costs the mean of those
    zones' market prices, not the cheapest zone's. Unchanged for other pricing, no zones, or a spot
    price the snapshot derives (no market rows at all, labelled as such). Refuses a zone with no price."""
    offer, price = resolved.offer, resolved.price
    if resolved.spec.target.pricing != "spot" or offer is None or price is None or not zones:
        return resolved
    by_zone = offer.by_zone("spot", price.region)
    if not by_zone:
        return resolved
    missing = sorted(set(zones) - set(by_zone))
    if missing:
        raise UserError(
            f"no {offer.instance_type} spot price for zone(s) {', '.join(missing)} of {price.region} "
            f"(priced: {', '.join(sorted(by_zone))})",
            f"run `selfhost prices refresh --cloud {offer.cloud} --region {price.region}`, "
            "or give subnets in priced zones",
        )
    rows = [by_zone[z] for z in sorted(set(zones))]
    mean = sum(r.usd_per_hour for r in rows) / len(rows)
    as_of = min((r.as_of for r in rows if r.as_of), default=price.as_of)
    each = ", ".join(f"{r.zone} ${r.usd_per_hour:.4f}" for r in rows)
    return replace(
        resolved,
        price=Price(
            round(mean, 6),
            "spot",
            f"{rows[0].source}, {price.region}: mean of the group's {len(rows)} zones ({each}) ({as_of})",
            False,
            price.region,
            ", ".join(r.zone or "" for r in rows),
            as_of,
        ),
    )
