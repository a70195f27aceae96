"""The catalog: models, precisions, GPUs, offers and API prices, loaded from costing/data/*.yaml.

Every entry keeps its `source` and `as_of` so a review can cite what it used.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from costing.errors import UserError

PRICINGS = ("on-demand", "spot", "reserved-1y", "reserved-3y")
CLOUDS = ("runpod", "aws", "gcp")


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    hf_repo: str
    aliases: tuple[str, ...]
    params_b: float
    layers: int
    hidden_size: int
    intermediate_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    tied_embeddings: bool
    max_context: int
    quantized_repos: dict[str, str]
    source: str
    as_of: str
    quant_methods: dict[str, str] = field(default_factory=dict)  # repo -> its config.json quant_method

    @property
    def embedding_params(self) -> float:
        """Parameters in the embedding table and lm_head (kept 16-bit by quantized checkpoints)."""
        tables = 1 if self.tied_embeddings else 2
        return float(tables * self.vocab_size * self.hidden_size)

    def kv_bytes_per_token(self, bytes_per_element: float = 2.0) -> float:
        """GQA-aware KV cache per token: 2 (K and V) x layers x KV heads x head dim x bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_element

    def repo_for(self, precision: str) -> str | None:
        """The Hugging Face repo to serve at `precision` (None: no known checkpoint)."""
        if precision in ("bf16", "fp16"):
            return self.hf_repo
        if precision == "fp8":  # no FP8 checkpoint: vLLM quantizes the 16-bit weights to FP8 as it loads them
            return self.quantized_repos.get(precision, self.hf_repo)
        return self.quantized_repos.get(precision)

    def quant_method_of(self, repo: str) -> str | None:
        """The quantization a checkpoint declares in its config.json (None: an unquantized repo)."""
        return self.quant_methods.get(repo)


@dataclass(frozen=True)
class Precision:
    id: str
    weight_bits: float
    group_overhead: float
    compute: str
    native_archs: tuple[str, ...]
    vllm_quantization: str | None
    vllm_dtype: str
    fallback: str | None
    source: str
    as_of: str

    @property
    def bits_per_weight(self) -> float:
        return self.weight_bits * (1 + self.group_overhead)


@dataclass(frozen=True)
class Gpu:
    name: str
    arch: str
    memory_gb: float
    usable_gib: float
    bandwidth_gbs: float
    tflops: dict[str, float | None]
    interconnect_gbs: float
    source: str
    as_of: str
    # a fabric of gpus.yaml's `allreduce` table (measured NCCL all-reduce times); None: the fitted
    # interconnect_gbs x allreduce_bw_eff term (NVLink parts)
    allreduce: str | None = None

    def dense_tflops(self, compute: str) -> float:
        """Dense TFLOPS for a compute type, falling back to bf16 where the GPU lacks it."""
        value = self.tflops.get(compute) or self.tflops.get("bf16")
        if value is None:
            raise UserError(f"GPU {self.name} has no bf16 TFLOPS in the catalog", "add it to costing/data/gpus.yaml")
        return float(value)

    def computes_natively(self, precision: Precision) -> bool:
        return self.arch in precision.native_archs


@dataclass(frozen=True)
class AllReduceCurve:
    """One server's measured NCCL all-reduce (nccl-tests all_reduce_perf) at one GPU count."""

    fabric: str
    gpus: int
    avg_busbw_gbs: float  # nccl-tests' 'Avg bus bandwidth' over the run's sizes: what the projection uses
    rows: tuple[tuple[float, float, float, float, float], ...]  # size B, out-of-place us, busbw, in-place us, busbw
    system: str
    source: str
    as_of: str

    @property
    def bus_bytes_per_s(self) -> float:
        return self.avg_busbw_gbs * 1e9


@dataclass(frozen=True)
class Price:
    usd_per_hour: float
    pricing: str
    source: str
    derived: bool
    region: str | None = None
    zone: str | None = None  # the availability zone of a spot market price
    as_of: str | None = None  # the date the figure was published or retrieved (YYYY-MM-DD)


@dataclass(frozen=True)
class PriceRow:
    """One figure of a price snapshot: an instance's hourly USD price in a region (and zone, for spot)."""

    cloud: str
    instance_type: str
    region: str
    pricing: str
    usd_per_hour: float
    source: str
    as_of: str
    zone: str | None = None


@dataclass(frozen=True)
class Offer:
    id: str
    cloud: str
    instance_type: str
    gpu: str
    gpus: int
    vcpus: int
    ram_gb: float
    region: str  # the default region: the one priced when neither the spec nor --region names one
    cloud_type: str | None
    prices: tuple[PriceRow, ...] = ()

    @cached_property
    def regions(self) -> list[str]:
        """Regions with an on-demand price for this offer (sorted)."""
        return sorted({r.region for r in self.prices if r.pricing == "on-demand"})

    def rows(self, pricing: str, region: str | None = None) -> list[PriceRow]:
        return self._by_market.get((pricing, region or self.region), [])

    @cached_property
    def _by_market(self) -> dict[tuple[str, str], list[PriceRow]]:
        """The price rows by (pricing, region): `selfhost compare` looks up hundreds of markets."""
        found: dict[tuple[str, str], list[PriceRow]] = {}
        for r in self.prices:
            found.setdefault((r.pricing, r.region), []).append(r)
        return found

    def by_zone(self, pricing: str, region: str | None = None) -> dict[str, PriceRow]:
        """The rows of a market priced per zone (spot), by zone ID."""
        return {r.zone: r for r in self.rows(pricing, region) if r.zone}

    @property
    def on_demand(self) -> float:
        """On-demand USD/h in the default region (inf when unpriced there)."""
        price = self.price("on-demand")
        return price.usd_per_hour if price else float("inf")

    @property
    def source(self) -> str:
        price = self.price("on-demand")
        return price.source if price else "unpriced"

    @property
    def as_of(self) -> str:
        price = self.price("on-demand")
        return price.as_of if price and price.as_of else "unpriced"

    def price(self, pricing: str, region: str | None = None) -> Price | None:
        """Hourly price under `pricing` in `region` (default: the offer's region), or None where unpriced.

        Spot is the cheapest zone's market price in the region; a spot price the snapshot lacks is derived
        from the cloud's spot rule, labelled as a last resort. A reserved or committed price comes only from the
        snapshot (the clouds' pricing APIs: `selfhost prices refresh`), never from a discount rule: None without.
        """
        region = region or self.region
        found = self.rows(pricing, region)
        if found:
            row = min(found, key=lambda r: (r.usd_per_hour, r.zone or ""))
            where = f"{region} {row.zone}" if row.zone else region
            return Price(
                row.usd_per_hour, pricing, f"{row.source}, {where} ({row.as_of})", False, region, row.zone, row.as_of
            )
        if pricing != "spot":
            return None
        rule = cloud_info(self.cloud)["discounts"].get(pricing)
        base = self.price("on-demand", region)
        if not rule or base is None:
            return None
        # A derived price is as old as the older of its inputs: the on-demand price and the discount rule.
        dates = [d for d in (base.as_of, str(rule.get("as_of") or "")) if d]
        return Price(
            round(base.usd_per_hour * rule["factor"], 6),
            pricing,
            f"derived (last resort, no {pricing} price in the snapshot): on-demand x {rule['factor']} "
            f"({rule['source']}, rule as of {rule.get('as_of') or 'undated'})",
            True,
            region,
            None,
            min(dates) if dates else None,
        )


@dataclass(frozen=True)
class ApiPrice:
    provider: str
    api_model: str
    models: tuple[str, ...]
    input: float
    output: float
    closed: bool
    source: str
    as_of: str

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.api_model}"

    def serves(self, model_id: str) -> bool:
        return "*" in self.models or model_id in self.models


@dataclass(frozen=True)
class Catalog:
    models: dict[str, Model]
    precisions: dict[str, Precision]
    gpus: dict[str, Gpu]
    offers: dict[str, Offer]
    clouds: dict[str, dict[str, Any]]
    apis: tuple[ApiPrice, ...]
    _alias: dict[str, str] = field(default_factory=dict)
    other_rows: tuple[PriceRow, ...] = ()  # snapshot rows of no offer (managed endpoints' machines)
    allreduce: dict[tuple[str, int], AllReduceCurve] = field(default_factory=dict)  # (fabric, GPUs) -> curve


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster, keeps `selfhost plan` instant


def _read(name: str) -> dict[str, Any]:
    return yaml.load(resources.files("costing").joinpath("data", name).read_text(), Loader=_LOADER)


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """Load the whole catalog once per process."""
    models = {}
    alias: dict[str, str] = {}
    for mid, m in _read("models.yaml")["models"].items():
        quantized = dict(m.pop("quantized_repos", {}) or {})
        models[mid] = Model(
            id=mid,
            aliases=tuple(m.pop("aliases", ())),
            quantized_repos={p: q["repo"] for p, q in quantized.items()},
            quant_methods={q["repo"]: q["quant_method"] for q in quantized.values()},
            **m,
        )
        for name in (mid, models[mid].hf_repo, *models[mid].aliases):
            alias[name.lower()] = mid
    precisions = {
        pid: Precision(id=pid, native_archs=tuple(p.pop("native_archs")), fallback=p.pop("fallback", None), **p)
        for pid, p in _read("precisions.yaml")["precisions"].items()
    }
    gpu_data = _read("gpus.yaml")
    gpus = {name: Gpu(name=name, **g) for name, g in gpu_data["gpus"].items()}
    allreduce = {
        (fabric, int(n)): AllReduceCurve(
            fabric=fabric,
            gpus=int(n),
            avg_busbw_gbs=float(c["avg_busbw_gbs"]),
            rows=tuple((float(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4])) for r in c["rows"]),
            system=c["system"],
            source=c["source"],
            as_of=c["as_of"],
        )
        for fabric, by_count in (gpu_data.get("allreduce") or {}).items()
        for n, c in by_count.items()
    }
    raw_offers = _read("offers.yaml")
    by_type: dict[tuple[str, str], list[PriceRow]] = {}
    rows = price_rows()
    for row in rows:
        by_type.setdefault((row.cloud, row.instance_type), []).append(row)
    offers = {}
    for oid, o in raw_offers["offers"].items():
        prices = tuple(by_type.get((o["cloud"], o["instance_type"]), ()))
        offers[oid] = Offer(id=oid, cloud_type=o.pop("cloud_type", None), prices=prices, **o)
    apis = tuple(
        ApiPrice(models=tuple(a.pop("models")), closed=a.pop("closed", False), **a) for a in _read("apis.yaml")["apis"]
    )
    offered = {(o["cloud"], o["instance_type"]) for o in raw_offers["offers"].values()}
    other = tuple(r for r in rows if (r.cloud, r.instance_type) not in offered)
    return Catalog(models, precisions, gpus, offers, raw_offers["clouds"], apis, alias, other, allreduce)


SHIPPED_SNAPSHOT = "costing/data/prices.yaml"
PRICES_ENV = "SELFHOST_PRICES"  # `shipped`: ignore refreshed snapshots (what `--offline` sets)


def snapshot_dir() -> Path:
    """Where `selfhost prices refresh` writes its dated snapshots (the user's cache folder)."""
    import platformdirs

    return platformdirs.user_cache_path("selfhost") / "prices"


_PRICED_BY: list[Path | None] = []  # `priced_by`'s snapshot (None: the shipped one), innermost last


@contextmanager
def priced_by(path: Path | None) -> Iterator[None]:
    """Price everything inside with the snapshot at `path` (JSON as `prices refresh` writes it, or YAML as
    shipped) laid over the shipped one; None: the shipped one alone. `selfhost watch` reviews one set of specs
    under two snapshots this way."""
    _PRICED_BY.append(path)
    catalog.cache_clear()
    try:
        yield
    finally:
        _PRICED_BY.pop()
        catalog.cache_clear()


def latest_snapshot() -> Path | None:
    """The newest refreshed snapshot, or None (then the shipped one is used)."""
    if _PRICED_BY:
        return _PRICED_BY[-1]
    if os.environ.get(PRICES_ENV, "").strip().lower() == "shipped":
        return None
    folder = snapshot_dir()
    found = sorted(folder.glob("prices-*.json")) if folder.is_dir() else []
    return found[-1] if found else None


def _rows(items: list[dict[str, Any]]) -> list[PriceRow]:
    return [
        PriceRow(
            cloud=str(r["cloud"]),
            instance_type=str(r["instance_type"]),
            region=str(r["region"]),
            pricing=str(r["pricing"]),
            usd_per_hour=float(r["usd_per_hour"]),
            source=str(r["source"]),
            as_of=str(r["as_of"]),
            zone=r.get("zone") or None,
        )
        for r in items
        if isinstance(r.get("usd_per_hour"), (int, float))
        and math.isfinite(r["usd_per_hour"])
        and r["usd_per_hour"] > 0
    ]


def shipped_rows() -> list[PriceRow]:
    return _rows(_read("prices.yaml")["prices"])


def price_rows() -> list[PriceRow]:
    """The price snapshot in use: the newest refreshed one laid over the shipped one (row by row)."""
    rows = {_key(r): r for r in shipped_rows()}
    path = latest_snapshot()
    if path is not None:
        try:
            text = path.read_text()
            data = yaml.load(text, Loader=_LOADER) if path.suffix in (".yaml", ".yml") else json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("prices"), list):
                raise ValueError("no `prices:` list of rows")
        except (OSError, ValueError, yaml.YAMLError) as err:
            raise UserError(
                f"price snapshot {path} is unreadable ({err})",
                "run `selfhost prices refresh` again, or delete that file to use the shipped prices",
            ) from None
        refreshed = _rows(list(data.get("prices", [])))
        for key in {(r.cloud, r.instance_type, r.region, r.pricing) for r in refreshed}:
            for old in [k for k in rows if k[:4] == key]:  # a refreshed market replaces all its zones
                del rows[old]
        rows.update({_key(r): r for r in refreshed})
    return list(rows.values())


def _key(r: PriceRow) -> tuple[str, str, str, str, str]:
    return (r.cloud, r.instance_type, r.region, r.pricing, r.zone or "")


def snapshot_label() -> str:
    """Which snapshot priced this run (for reviews)."""
    path = latest_snapshot()
    return f"refreshed snapshot {path}" if path else f"shipped snapshot {SHIPPED_SNAPSHOT}"


def cloud_info(cloud: str) -> dict[str, Any]:
    if cloud == "kubernetes":  # a team's cluster (costing.data.cluster_offer): its stated node rate is all there is
        return {"discounts": {}}
    return catalog().clouds[cloud]


ANY_REGION = "*"  # a rate that is the same in every region (RunPod's network volumes)


def regional_rate(cloud: str, kind: str, region: str | None) -> dict[str, Any] | None:
    """The cloud's dated `kind` rate in `region`: `storage` (the replicas' disks) or `bucket` (a weights
    bucket), a dict with usd_per_gb_month, source and as_of; None where no dated rate is shipped there."""
    rates: dict[str, Any] = cloud_info(cloud).get(kind) or {}
    return rates.get(str(region)) or rates.get(ANY_REGION)


def rate_regions(cloud: str, kind: str) -> list[str]:
    """Regions with a dated `kind` rate (sorted)."""
    return sorted(r for r in (cloud_info(cloud).get(kind) or {}) if r != ANY_REGION)


def stack_rate(cloud: str, kind: str, region: str | None) -> tuple[str, dict[str, Any] | None, str]:
    """(what, rate in `region` or None, why unpriced) of a stack resource (`load_balancer`, `waf`,
    `public_ipv4`, `secrets`, `egress`): a rate is `usd_per_hour`, `usd_per_month` or `usd_per_gb`; "*" prices
    every region."""
    row: dict[str, Any] = (cloud_info(cloud).get("stack_resources") or {}).get(kind) or {}
    what = str(row.get("what") or kind.replace("_", " "))
    regions = row.get("regions") or {}
    rate = regions.get(str(region)) or regions.get(ANY_REGION)
    why = str(row.get("not_priced") or "no price in the catalog")
    priced = rate and (rate.get("usd_per_hour") or rate.get("usd_per_month") or rate.get("usd_per_gb"))
    return what, (rate if priced else None), why


def _unknown(kind: str, value: str, known: list[str], flag: str) -> UserError:
    close = difflib.get_close_matches(value, known, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}? " if close else ""
    return UserError(f"unknown {kind} '{value}'", f"{hint}use {flag} with one of: {', '.join(known)}")


def get_model(name: str) -> Model:
    """A model by short id (`llama-3.1-8b`) or Hugging Face id (`meta-llama/Llama-3.1-8B-Instruct`)."""
    cat = catalog()
    mid = cat._alias.get(str(name).strip().lower())
    if mid is None:
        raise _unknown("model", name, list(cat.models), "--model")
    return cat.models[mid]


def get_precision(name: str) -> Precision:
    cat = catalog()
    key = str(name).strip().lower()
    if key not in cat.precisions:
        raise _unknown("precision", name, list(cat.precisions), "--precision")
    return cat.precisions[key]


def get_gpu(name: str) -> Gpu:
    cat = catalog()
    by_lower = {g.lower(): g for g in cat.gpus}
    key = by_lower.get(str(name).strip().lower())
    if key is None:
        raise _unknown("GPU", name, list(cat.gpus), "--gpu")
    return cat.gpus[key]


def allreduce_curve(gpu: Gpu, gpus: int) -> AllReduceCurve | None:
    """The measured all-reduce on this GPU's fabric (gpus.yaml `allreduce`) at `gpus` GPUs, else at the nearest GPU
    count the fabric has rows for (the larger on a tie): nccl-tests' bus bandwidth is corrected by 2(n-1)/n so that
    it is independent of the number of ranks and reflects the hardware bottleneck (nccl-tests doc/PERFORMANCE.md),
    which on a PCIe-only server is the host (NVIDIA/nccl#1639). None: one GPU, or the GPU names no fabric (NVLink
    parts keep the fitted term)."""
    if gpu.allreduce is None or gpus < 2:
        return None
    curves = {n: c for (fabric, n), c in catalog().allreduce.items() if fabric == gpu.allreduce}
    if not curves:
        return None
    return curves.get(gpus) or curves[min(curves, key=lambda n: (abs(n - gpus), -n))]


def get_offer(offer_id: str) -> Offer:
    cat = catalog()
    key = str(offer_id).strip()
    if key not in cat.offers:
        by_type = [o for o in cat.offers.values() if o.instance_type == key]
        if len(by_type) == 1:
            return by_type[0]
        raise _unknown("offer", offer_id, list(cat.offers), "--offer")
    return cat.offers[key]


def check_cloud(cloud: str) -> str:
    if cloud not in CLOUDS:
        raise _unknown("cloud", cloud, list(CLOUDS), "--cloud")
    return cloud


def check_pricing(pricing: str) -> str:
    if pricing not in PRICINGS:
        raise _unknown("pricing", pricing, list(PRICINGS), "--pricing")
    return pricing


def offers_for(gpu: str | None = None, gpus: int | None = None, cloud: str | None = None) -> list[Offer]:
    """Offers matching a GPU type, GPU count and cloud, cheapest on-demand first."""
    found = [
        o
        for o in catalog().offers.values()
        if (gpu is None or o.gpu == gpu) and (gpus is None or o.gpus == gpus) and (cloud is None or o.cloud == cloud)
    ]
    return sorted(found, key=lambda o: (o.on_demand, o.id))


def apis_for(model_id: str) -> list[ApiPrice]:
    """Every API that serves this model, plus the closed models people compare with."""
    return [a for a in catalog().apis if a.serves(model_id)]
