"""Price what a deployment declares, from the catalog: every recognised resource a row, the rest listed.

Compute is priced from what the resources say (instance type, group sizes, market, disks, schedules);
what the declaration cannot say (how busy a group is between its min and max, how many requests a load
balancer carries, what a bucket holds, which zones a subnet is in) is a usage assumption with a
default or a flag, printed with the bill. A resource with no dated price is a "not priced" entry, never
a silent zero; a resource type that carries no charge of its own (a security group, an IAM role, a
launch template: billed through what launches it) is counted as such.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from costing.data.catalog import Offer, catalog, regional_rate, stack_rate
from costing.errors import UserError
from costing.money.review import NOT_PRICED, PEAK_HOURS_SHARE, alb_lcu_hours, egress_line
from costing.money.spend import COMMITTED_PRICING, DAYS_PER_MONTH, HOURS_PER_MONTH
from selfhost.bill.declared import Declared, Preview

HOURS_PER_WEEK = 168.0
MAX_MONTHLY = 1e9  # a bill above this is refused as input no deployment declares sensibly

# Types with no charge of their own (they configure, authorise or describe what is billed elsewhere).
FREE_TYPES = {
    "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/securityGroupRule:SecurityGroupRule",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    "aws:ec2/launchTemplate:LaunchTemplate",
    "aws:ec2/volumeAttachment:VolumeAttachment",
    "aws:ec2/keyPair:KeyPair",
    "aws:iam/role:Role",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/policy:Policy",
    "aws:iam/instanceProfile:InstanceProfile",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:secretsmanager/secretVersion:SecretVersion",
    "aws:lb/listener:Listener",
    "aws:lb/listenerRule:ListenerRule",
    "aws:lb/targetGroup:TargetGroup",
    "aws:lb/targetGroupAttachment:TargetGroupAttachment",
    "aws:acm/certificate:Certificate",
    "aws:acm/certificateValidation:CertificateValidation",
    "aws:autoscaling/policy:Policy",
    "aws:autoscaling/schedule:Schedule",
    "aws:autoscaling/lifecycleHook:LifecycleHook",
    "gcp:compute/network:Network",
    "gcp:compute/subnetwork:Subnetwork",
    "gcp:compute/firewall:Firewall",
    "gcp:compute/healthCheck:HealthCheck",
    "gcp:compute/backendService:BackendService",
    "gcp:compute/uRLMap:URLMap",
    "gcp:compute/targetHttpProxy:TargetHttpProxy",
    "gcp:compute/targetHttpsProxy:TargetHttpsProxy",
    "gcp:compute/managedSslCertificate:ManagedSslCertificate",
    "gcp:compute/instanceTemplate:InstanceTemplate",
    "gcp:compute/regionAutoscaler:RegionAutoscaler",
    "gcp:compute/autoscaler:Autoscaler",
    "gcp:compute/resourcePolicy:ResourcePolicy",
    "gcp:serviceaccount/account:Account",
    "gcp:serviceaccount/iAMMember:IAMMember",
    "gcp:projects/iAMMember:IAMMember",
    "gcp:storage/bucketIAMMember:BucketIAMMember",
    "gcp:secretmanager/secretIamMember:SecretIamMember",
    "gcp:secretmanager/secret:Secret",  # billed per active version (its SecretVersions), not per secret
    "random:index/randomId:RandomId",  # random bytes kept in the stack's state (the bucket names' suffix)
}
GROUP_TYPES = ("aws:autoscaling/group:Group",)
MIG_TYPES = (
    "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager",
    "gcp:compute/instanceGroupManager:InstanceGroupManager",
)
AUTOSCALER_TYPES = ("gcp:compute/regionAutoscaler:RegionAutoscaler", "gcp:compute/autoscaler:Autoscaler")
NO_RATE = {
    "aws:ec2/capacityReservation:CapacityReservation": (
        "On-Demand Capacity Reservation: billed at the on-demand rate whether used or not, overlapping the "
        "instances that use it; not priced here"
    ),
    "gcp:compute/globalAddress:GlobalAddress": "static external IP: no dated rate in the catalog",
    "gcp:compute/address:Address": "static external IP: no dated rate in the catalog",
}


@dataclass(frozen=True)
class Usage:
    """What a declaration cannot say, assumed (defaults) or given (flags)."""

    peak_hours_share: float = PEAK_HOURS_SHARE  # share of running hours a group runs at its max
    requests_per_day: float | None = None  # load balancer LCUs
    input_tokens: int | None = None
    output_tokens: int | None = None
    days_per_week: float = 7.0  # days with traffic (LCUs)
    zones: tuple[str, ...] = ()  # AWS zone IDs of a spot group's subnets (the preview shows subnet ids)
    bucket_gb: float | None = None  # what each bucket holds
    reserved: str | None = None  # reserved-1y/-3y: an owned reservation covers the on-demand capacity
    region: str | None = None  # the region when the preview's config does not say
    subnet_public_ip: bool = True  # AWS instances not declaring associatePublicIpAddress get one (default VPC)

    def check(self) -> Usage:
        if not (0 <= self.peak_hours_share <= 1):
            raise UserError(f"--peak-hours-share {self.peak_hours_share:g} is not in 0..1", "pass e.g. 0.25")
        for name, value in (("requests-per-day", self.requests_per_day), ("bucket-gb", self.bucket_gb)):
            if value is not None and not (math.isfinite(value) and 0 <= value <= 1e12):
                raise UserError(f"--{name} {value:g} is not a finite number >= 0", f"pass --{name} with a real figure")
        if not (1 <= self.days_per_week <= 7):
            raise UserError(f"--days-per-week {self.days_per_week:g} is not in 1..7", "pass --days-per-week 5 (or 7)")
        if self.reserved is not None and self.reserved not in COMMITTED_PRICING:
            raise UserError(f"--reserved {self.reserved} is not a commitment", "pass reserved-1y or reserved-3y")
        return self


@dataclass(frozen=True)
class BillLine:
    resource: str  # type::name, or the SkyPilot task's name
    item: str
    pricing: str
    units: float
    hours: float
    usd_per_hour: float
    usd: float
    source: str


@dataclass(frozen=True)
class Unpriced:
    resource: str
    why: str


@dataclass
class Bill:
    source: str
    lines: list[BillLine] = field(default_factory=list)
    unpriced: list[Unpriced] = field(default_factory=list)
    free: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def monthly_usd(self) -> float:
        return sum(line.usd for line in self.lines)

    def add(self, resource: str, item: str, pricing: str, units: float, hours: float, rate: float, source: str) -> None:
        if units > 0 and hours > 0:
            usd = units * hours * rate
            if not (math.isfinite(usd) and 0 <= usd <= MAX_MONTHLY):
                raise UserError(f"{resource}: {item} comes to ${usd:,.0f}/month", "check the declared counts and sizes")
            self.lines.append(BillLine(resource, item, pricing, units, hours, rate, usd, source))

    def not_priced(self, resource: str, why: str) -> None:
        self.unpriced.append(Unpriced(resource, why))

    def storage(self, resource: str, item: str, units: float, gb: float, rate: dict[str, Any]) -> None:
        per_gb = float(rate["usd_per_gb_month"])
        self.add(resource, item, "storage", units, HOURS_PER_MONTH, gb * per_gb / HOURS_PER_MONTH, _src(rate))


def _src(rate: dict[str, Any]) -> str:
    return f"{rate.get('source')} ({rate.get('as_of')})"


def rid(r: Declared) -> str:
    return f"{r.type}::{r.name}"


# ---- catalog look-ups -------------------------------------------------------------------------------


def offer_for(cloud: str, instance_type: str) -> Offer | None:
    for offer in catalog().offers.values():
        if offer.cloud == cloud and offer.instance_type == instance_type:
            return offer
    return None


@dataclass(frozen=True)
class Rate:
    usd_per_hour: float
    source: str


def hourly(offer: Offer, pricing: str, region: str, zones: tuple[str, ...] = ()) -> Rate | str:
    """The hourly rate of `offer` under `pricing` in `region`; a string says why there is none. Spot priced
    per zone is the mean of `zones` (a group balances across them), else of every priced zone of the region."""
    if pricing == "spot":
        by_zone = offer.by_zone("spot", region)
        if by_zone:
            where = [z for z in zones if z in by_zone] if zones else sorted(by_zone)
            missing = sorted(set(zones) - set(by_zone))
            if missing:
                return f"no {offer.instance_type} spot price for zone(s) {', '.join(missing)} of {region}"
            rows = [by_zone[z] for z in where]
            mean = sum(r.usd_per_hour for r in rows) / len(rows)
            each = ", ".join(f"{r.zone} ${r.usd_per_hour:.4f}" for r in rows)
            return Rate(mean, f"spot, mean of {len(rows)} zones ({each}): {rows[0].source} ({rows[0].as_of})")
    price = offer.price(pricing, region)
    if price is None:
        return f"no {pricing} price for {offer.instance_type} in {region}"
    return Rate(price.usd_per_hour, price.source)


def worst(cloud: str, types: list[str], pricing: str, region: str, zones: tuple[str, ...]) -> tuple[str, Rate] | str:
    """The most expensive of the types a group may launch under `pricing`: what the bill can promise."""
    found: list[tuple[str, Rate]] = []
    for t in dict.fromkeys(types):
        offer = offer_for(cloud, t)
        if offer is None:
            return f"instance type {t} is not in the catalog"
        rate = hourly(offer, pricing, region, zones)
        if isinstance(rate, str):
            return rate
        found.append((t, rate))
    if not found:
        return "no instance type declared"
    return max(found, key=lambda f: (f[1].usd_per_hour, f[0]))


# ---- schedules: a week of (running hours, min, max) states ------------------------------------------

CRON = re.compile(r"^(\d{1,2}) (\d{1,2}) \* \* ([0-9,\-*]+)$")


def cron_days(field_: str) -> list[int]:
    if field_ == "*":
        return list(range(7))
    days: list[int] = []
    for part in field_.split(","):
        if "-" in part:
            a, b = (int(x) for x in part.split("-", 1))
            days += list(range(a, b + 1))
        else:
            days.append(int(part))
    return sorted({d % 7 for d in days})


def cron_minutes(cron: str) -> list[int] | None:
    """Minutes of the week (0 = Sunday 00:00) a `m h * * dow` recurrence fires; None: not understood."""
    match = CRON.match(str(cron).strip())
    if not match:
        return None
    minute, hour, dow = int(match.group(1)), int(match.group(2)), match.group(3)
    return [d * 1440 + hour * 60 + minute for d in cron_days(dow)]


def weekly_states(events: list[tuple[int, tuple[int, int]]]) -> list[tuple[float, int, int]]:
    """(minute of week, (min, max)) events -> (hours a month, min, max) states, the week wrapping round."""
    events = sorted(events)
    out = []
    for i, (at, (low, high)) in enumerate(events):
        nxt = events[(i + 1) % len(events)][0] + (10080 if i + 1 == len(events) else 0)
        hours = (nxt - at) / 60 * HOURS_PER_MONTH / HOURS_PER_WEEK
        if hours > 0:
            out.append((hours, low, high))
    return out


# ---- groups -----------------------------------------------------------------------------------------


@dataclass
class Group:
    """A replica group as declared: types, market split, sizes over the week, disks per instance."""

    resource: str
    cloud: str
    region: str
    types: list[str]
    spot: bool  # the capacity above the on-demand base is spot
    base: int  # on-demand base
    percent_on_demand: float  # above the base
    states: list[tuple[float, int, int]]  # (hours a month, min, max)
    disks: list[tuple[float, str]]  # (GB, disk kind) per instance
    disk_unpriced: str | None = None
    zones: tuple[str, ...] = ()
    ipv4: str | None = None  # each instance's public IPv4 address: why it has one (None: it has none)


def price_group(bill: Bill, g: Group, usage: Usage) -> None:
    def on_demand(n: int) -> float:
        first = min(n, g.base)
        return first + g.percent_on_demand / 100 * max(0, n - first)

    share = usage.peak_hours_share
    od_always = od_peak = spot_always = spot_peak = 0.0
    od_max = 0.0
    for hours, low, high in g.states:
        od_always += on_demand(low) * hours
        od_peak += (on_demand(high) - on_demand(low)) * hours * share
        spot_always += (low - on_demand(low)) * hours
        spot_peak += ((high - on_demand(high)) - (low - on_demand(low))) * hours * share
        od_max = max(od_max, on_demand(high))
    several = f"; the priciest of {len(set(g.types))} types it may launch" if len(set(g.types)) > 1 else ""
    segments = [("on-demand", od_always, od_peak)]
    if g.spot:
        segments.append(("spot", spot_always, spot_peak))
    for market, always, peak in segments:
        if always + peak <= 0 and not (market == "on-demand" and usage.reserved and od_max):
            continue
        pricing = usage.reserved if market == "on-demand" and usage.reserved else market
        found = worst(g.cloud, g.types, pricing, g.region, g.zones if market == "spot" else ())
        if isinstance(found, str):
            bill.not_priced(g.resource, f"{market} capacity: {found}")
            continue
        itype, rate = found
        if pricing in COMMITTED_PRICING:  # the reservation covers the most on-demand instances, every hour
            bill.add(
                g.resource,
                f"{itype} {pricing} (owned reservation){several}",
                pricing,
                od_max,
                HOURS_PER_MONTH,
                rate.usd_per_hour,
                rate.source,
            )
            continue
        bill.add(
            g.resource,
            f"{itype} {market}, always on{several}",
            market,
            always / HOURS_PER_MONTH,
            HOURS_PER_MONTH,
            rate.usd_per_hour,
            rate.source,
        )
        bill.add(
            g.resource,
            f"{itype} {market}, above min ({share:.0%} of running hours){several}",
            market,
            peak / HOURS_PER_MONTH,
            HOURS_PER_MONTH,
            rate.usd_per_hour,
            rate.source,
        )
    instance_hours = sum(low * h + (high - low) * h * share for h, low, high in g.states)
    if g.disk_unpriced:
        bill.not_priced(g.resource, g.disk_unpriced)
    for gb, kind in g.disks:
        rate_ = disk_rate(g.cloud, kind, g.region)
        if isinstance(rate_, str):
            bill.not_priced(g.resource, f"{gb:g} GB {kind} disk per instance: {rate_}")
            continue
        bill.storage(g.resource, f"{kind} disk {gb:g} GB per instance", instance_hours / HOURS_PER_MONTH, gb, rate_)
    if g.ipv4:
        address(bill, g.resource, g.cloud, g.region, instance_hours / HOURS_PER_MONTH, f"per instance ({g.ipv4})")


def address(bill: Bill, resource: str, cloud: str, region: str, units: float, detail: str) -> None:
    """`units` public IPv4 addresses held all month, at the catalog's dated rate, or "not priced"."""
    what, row, why = stack_rate(cloud, "public_ipv4", region)
    if row is None:
        bill.not_priced(resource, f"{what} {detail}: {why} ({region})")
    else:
        bill.add(resource, f"{what} {detail}", "stack", units, HOURS_PER_MONTH, float(row["usd_per_hour"]), _src(row))


def secret_rate(bill: Bill, resource: str, cloud: str, region: str, units: float, what_: str) -> None:
    """A secret (AWS) or an active secret version per location (GCP) a month; API calls are not counted."""
    what, row, why = stack_rate(cloud, "secrets", region)
    if row is None:
        bill.not_priced(resource, f"{what}: {why} ({region})")
        return
    monthly = float(row["usd_per_month"])
    bill.add(resource, f"{what} {what_}", "stack", units, HOURS_PER_MONTH, monthly / HOURS_PER_MONTH, _src(row))


def aws_public_ip(declared: Any, usage: Usage) -> str | None:
    """Why an AWS instance holds a public IPv4 address (None: it does not): declared, or its subnet's default."""
    if declared is True or str(declared).lower() == "true":
        return "associatePublicIpAddress"
    if declared is None and usage.subnet_public_ip:
        return "not declared: its subnet assigns one, as a default VPC's do; --no-subnet-public-ip if not"
    return None


DISK_KINDS = {"aws": ("gp3",), "gcp": ("pd-balanced",), "runpod": ("network-volume",)}


def disk_rate(cloud: str, kind: str, region: str) -> dict[str, Any] | str:
    """The catalog's disk rate (EBS gp3, pd-balanced, RunPod network volume) in `region`."""
    if kind not in DISK_KINDS.get(cloud, ()):
        return f"no dated {kind} rate in the catalog (priced: {', '.join(DISK_KINDS.get(cloud, ()))})"
    rate = regional_rate(cloud, "storage", region)
    return rate if rate else f"no dated {kind} rate for {region}"


def _num(value: Any, default: int = 0) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _pick(candidates: list[Declared], ref: Any, what: str) -> Declared | str:
    """The resource `ref` names; the only candidate when the reference is unknown (a preview of a create)."""
    named = [c for c in candidates if c.refers_to(ref)]
    if len(named) == 1:
        return named[0]
    if len(candidates) == 1 and not named:
        return candidates[0]
    return f"cannot tell which {what} it uses ({len(candidates)} declared, reference {ref!r})"


def aws_region(preview: Preview, usage: Usage) -> str:
    return str(preview.config.get("aws:region") or usage.region or "us-east-1")


def aws_groups(preview: Preview, bill: Bill, usage: Usage) -> None:
    region = aws_region(preview, usage)
    templates = preview.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    schedules = preview.of_type("aws:autoscaling/schedule:Schedule")
    groups = preview.of_type(*GROUP_TYPES)
    for r in groups:
        mixed = r.get("mixedInstancesPolicy") or {}
        spec = r.get("mixedInstancesPolicy", "launchTemplate", "launchTemplateSpecification") or r.get("launchTemplate")
        if not spec:
            bill.not_priced(rid(r), "no launch template (launch configurations are not read)")
            continue
        ref = spec.get("launchTemplateId") or spec.get("id") or spec.get("launchTemplateName") or spec.get("name")
        template = _pick(templates, ref, "launch template")
        if isinstance(template, str):
            bill.not_priced(rid(r), template)
            continue
        overrides = r.get("mixedInstancesPolicy", "launchTemplate", "overrides") or []
        named = [str(o["instanceType"]) for o in overrides if isinstance(o, dict) and o.get("instanceType")]
        types = named or ([str(template.get("instanceType"))] if template.get("instanceType") else [])
        dist = mixed.get("instancesDistribution") or {} if isinstance(mixed, dict) else {}
        spot_market = template.get("instanceMarketOptions", "marketType") == "spot"
        base = _num(dist.get("onDemandBaseCapacity"), 0) if mixed else 0
        pct = float(dist.get("onDemandPercentageAboveBaseCapacity", 100)) if mixed else (0.0 if spot_market else 100.0)
        low, high = _num(r.get("minSize")), _num(r.get("maxSize"))
        mine = [s for s in schedules if r.refers_to(s.get("autoscalingGroupName"))] or (
            schedules if len(groups) == 1 else []
        )
        states: list[tuple[float, int, int]] = [(HOURS_PER_MONTH, low, high)]
        if mine:
            events: list[tuple[int, tuple[int, int]]] = []
            for s in mine:
                minutes = cron_minutes(s.get("recurrence", default=""))
                if minutes is None:
                    bill.not_priced(rid(s), f"recurrence {s.get('recurrence')!r} not understood (m h * * dow)")
                    events = []
                    break
                sizes = (_num(s.get("minSize"), low), _num(s.get("maxSize"), high))
                events += [(m, sizes) for m in minutes]
            if events:
                states = weekly_states(events)
        nics = [n for n in template.get("networkInterfaces") or [] if isinstance(n, dict)]
        ipv4 = aws_public_ip(nics[0].get("associatePublicIpAddress") if nics else None, usage)
        disks, unpriced = [], None
        mappings = template.get("blockDeviceMappings") or []
        if not mappings:
            unpriced = "root volume: its size comes from the AMI (not declared)"
        for m in mappings:
            ebs = m.get("ebs") if isinstance(m, dict) else None
            if not isinstance(ebs, dict) or not ebs.get("volumeSize"):
                unpriced = f"volume {m.get('deviceName') if isinstance(m, dict) else m}: size not declared"
                continue
            disks.append((float(ebs["volumeSize"]), str(ebs.get("volumeType") or "gp2")))
        price_group(
            bill,
            Group(rid(r), "aws", region, types, pct < 100, base, pct, states, disks, unpriced, usage.zones, ipv4),
            usage,
        )


def aws_instance(r: Declared, bill: Bill, usage: Usage, region: str) -> None:
    itype = r.get("instanceType")
    spot = r.get("instanceMarketOptions", "marketType") == "spot"
    offer = offer_for("aws", str(itype)) if itype else None
    if offer is None:
        bill.not_priced(rid(r), f"instance type {itype} is not in the catalog")
    else:
        pricing = "spot" if spot else (usage.reserved or "on-demand")
        rate = hourly(offer, pricing, region, usage.zones if spot else ())
        if isinstance(rate, str):
            bill.not_priced(rid(r), rate)
        else:
            bill.add(rid(r), f"{itype} {pricing}", pricing, 1, HOURS_PER_MONTH, rate.usd_per_hour, rate.source)
    root = r.get("rootBlockDevice") or {}
    volumes = [("root", root)] if root.get("volumeSize") else []
    if not root.get("volumeSize"):
        bill.not_priced(rid(r), "root volume: its size comes from the AMI (not declared)")
    volumes += [(str(v.get("deviceName")), v) for v in r.get("ebsBlockDevices") or [] if isinstance(v, dict)]
    for dev, v in volumes:
        aws_volume_line(bill, rid(r), f"{dev} volume", v.get("volumeSize"), v.get("volumeType"), region)
    ipv4 = aws_public_ip(r.get("associatePublicIpAddress"), usage)
    if ipv4:
        address(bill, rid(r), "aws", region, 1, f"({ipv4})")


def aws_volume_line(bill: Bill, resource: str, what: str, size: Any, kind: Any, region: str) -> None:
    if not size:
        bill.not_priced(resource, f"{what}: size not declared")
        return
    rate = disk_rate("aws", str(kind or "gp2"), region)
    if isinstance(rate, str):
        bill.not_priced(resource, f"{what} {float(size):g} GB {kind or 'gp2'}: {rate}")
        return
    bill.storage(resource, f"{what} {float(size):g} GB {kind or 'gp2'}", 1, float(size), rate)


def load_balancer(r: Declared, bill: Bill, usage: Usage, cloud: str, region: str) -> None:
    kind = r.get("loadBalancerType", default="application")
    if cloud == "aws" and kind != "application":
        bill.not_priced(rid(r), f"{kind} load balancer: no dated rate in the catalog (priced: application)")
        return
    if not r.get("internal", default=False) and r.get("loadBalancingScheme", default="EXTERNAL") != "INTERNAL":
        egress(bill, rid(r), usage, cloud, region)
    if cloud == "aws" and not r.get("internal", default=False):  # its addresses are billed whatever its rate
        zones = len(r.get("subnetMappings") or r.get("subnets") or [])
        if zones:
            address(bill, rid(r), "aws", region, zones, f"of an internet-facing load balancer ({zones} subnets)")
        else:
            bill.not_priced(rid(r), "public IPv4 addresses of an internet-facing load balancer: subnets not declared")
    what, row, why = stack_rate(cloud, "load_balancer", region)
    if row is None:
        bill.not_priced(rid(r), f"{what}: {why} ({region})")
        return
    hourly_ = float(row["usd_per_hour"])
    bill.add(rid(r), what, "stack", 1, HOURS_PER_MONTH, hourly_, _src(row))
    if row.get("lcu_usd_per_hour"):
        if usage.requests_per_day is None or usage.input_tokens is None or usage.output_tokens is None:
            bill.not_priced(rid(r), "LCUs: usage-based; pass --requests-per-day, --input-tokens, --output-tokens")
        else:
            requests = usage.requests_per_day * DAYS_PER_MONTH * usage.days_per_week / 7
            label, lcu_hours = alb_lcu_hours(row, requests, usage.input_tokens + usage.output_tokens)
            lcu = float(row["lcu_usd_per_hour"])
            bill.add(rid(r), f"{what} LCUs, minimum: {label}", "stack", 1, lcu_hours, lcu, _src(row))


def egress(bill: Bill, resource: str, usage: Usage, cloud: str, region: str) -> None:
    """The responses an internet-facing load balancer sends out: internet egress, from the usage given."""
    if usage.requests_per_day is None or usage.output_tokens is None:
        bill.not_priced(resource, "internet egress: usage-based; pass --requests-per-day and --output-tokens")
        return
    requests = usage.requests_per_day * DAYS_PER_MONTH * usage.days_per_week / 7
    line = egress_line(cloud, region, requests, usage.output_tokens)
    if NOT_PRICED in line.item:
        bill.not_priced(resource, line.item.replace(NOT_PRICED, ": "))
        return
    row = stack_rate(cloud, "egress", region)[1] or {}
    bill.add(resource, line.item, "stack", line.replicas, line.hours, line.usd_per_hour, _src(row))


def bucket(r: Declared, bill: Bill, usage: Usage, cloud: str, region: str) -> None:
    rate = regional_rate(cloud, "bucket", region)
    if rate is None:
        bill.not_priced(rid(r), f"no dated {cloud} bucket rate for {region}")
    elif usage.bucket_gb is None:
        bill.not_priced(rid(r), "contents: pass --bucket-gb (what the bucket holds)")
    else:
        bill.storage(rid(r), f"bucket {usage.bucket_gb:,.1f} GB", 1, usage.bucket_gb, rate)


# ---- GCP ----------------------------------------------------------------------------------------------


def gcp_template(t: Declared) -> tuple[str | None, bool, list[tuple[float, str]], str | None]:
    """(machine type, spot, disks, why a disk is unpriced) of an instance template."""
    sched = t.get("scheduling") or {}
    spot = sched.get("provisioningModel") == "SPOT" or bool(sched.get("preemptible"))
    disks, unpriced = [], None
    for d in t.get("disks") or []:
        if not isinstance(d, dict):
            continue
        if not d.get("diskSizeGb"):
            unpriced = "a disk's size comes from its image (not declared)"
            continue
        disks.append((float(d["diskSizeGb"]), str(d.get("diskType") or "pd-standard")))
    return t.get("machineType"), spot, disks, unpriced


def gcp_external_ip(nics: Any) -> str | None:
    """Why a VM holds an external IPv4 address (an access config on an interface), None: it holds none."""
    has = any(isinstance(n, dict) and n.get("accessConfigs") for n in nics or [])
    return "accessConfigs" if has else None


def gcp_groups(preview: Preview, bill: Bill, usage: Usage) -> None:
    templates = preview.of_type("gcp:compute/instanceTemplate:InstanceTemplate")
    scalers = preview.of_type(*AUTOSCALER_TYPES)
    groups = preview.of_type(*MIG_TYPES)
    for r in groups:
        region = str(r.get("region") or str(r.get("zone") or "")[:-2] or preview.config.get("gcp:region") or "")
        ref = r.get("versions", 0, "instanceTemplate") or r.get("instanceTemplate")
        template = _pick(templates, ref, "instance template")
        if isinstance(template, str):
            bill.not_priced(rid(r), template)
            continue
        machine, spot, disks, unpriced = gcp_template(template)
        ipv4 = gcp_external_ip(template.get("networkInterfaces"))
        scaler = next((s for s in scalers if r.refers_to(s.get("target"))), None)
        if scaler is None and len(scalers) == 1 and len(groups) == 1:
            scaler = scalers[0]
        if scaler is None:
            size = _num(r.get("targetSize"))
            states: list[tuple[float, int, int]] = [(HOURS_PER_MONTH, size, size)]
        else:
            policy = scaler.get("autoscalingPolicy") or {}
            low, high = _num(policy.get("minReplicas")), _num(policy.get("maxReplicas"))
            states = [(HOURS_PER_MONTH, low, high)]
            windows = policy.get("scalingSchedules") or []
            if windows:
                w = windows[0]
                minutes = cron_minutes(w.get("schedule", ""))
                if minutes is None or len(windows) > 1:
                    bill.not_priced(rid(scaler), f"scaling schedule {w.get('schedule')!r} not understood")
                    continue
                running = len(minutes) * float(w.get("durationSec") or 0) / 3600 * HOURS_PER_MONTH / HOURS_PER_WEEK
                floor = max(low, _num(w.get("minRequiredReplicas")))
                states = [(running, floor, max(high, floor)), (HOURS_PER_MONTH - running, low, low)]
                if high > low:
                    bill.notes.append(
                        f"{rid(r)}: outside its scaling schedule the autoscaler may still scale out on load "
                        f"(up to {high}); billed at its minimum ({low}) there"
                    )
        price_group(
            bill,
            Group(
                rid(r),
                "gcp",
                region,
                [str(machine)],
                spot,
                0,
                0.0 if spot else 100.0,
                states,
                disks,
                unpriced,
                ipv4=ipv4,
            ),
            usage,
        )


def gcp_instance(r: Declared, bill: Bill, usage: Usage) -> None:
    zone = str(r.get("zone") or "")
    region = zone[:-2] if zone else str(usage.region or "")
    sched = r.get("scheduling") or {}
    spot = sched.get("provisioningModel") == "SPOT" or bool(sched.get("preemptible"))
    disks = []
    size = r.get("bootDisk", "initializeParams", "size")
    unpriced = None if size else "boot disk: its size comes from the image (not declared)"
    if size:
        disks.append((float(size), str(r.get("bootDisk", "initializeParams", "type") or "pd-standard")))
    group = Group(
        rid(r),
        "gcp",
        region,
        [str(r.get("machineType"))],
        spot,
        0,
        0.0 if spot else 100.0,
        [(HOURS_PER_MONTH, 1, 1)],
        disks,
        unpriced,
        ipv4=gcp_external_ip(r.get("networkInterfaces")),
    )
    price_group(bill, group, usage)


def gcp_secret_version(preview: Preview, r: Declared, bill: Bill, region: str) -> None:
    """An active secret version, billed per location its secret replicates to (automatic: one)."""
    secrets = preview.of_type("gcp:secretmanager/secret:Secret")
    if not secrets:
        bill.not_priced(rid(r), "its secret is not declared here: the locations billed (its replication) unknown")
        return

    def locations(s: Declared) -> int:
        if s.get("replication", "auto") is not None:
            return 1
        return max(1, len(s.get("replication", "userManaged", "replicas") or []))

    found = _pick(secrets, r.get("secret"), "secret")
    # a preview of a create cannot say which secret a version belongs to: the most locations of any declared
    n = locations(found) if not isinstance(found, str) else max(locations(s) for s in secrets)
    where = "one location (automatic replication)" if n == 1 else f"{n} locations"
    secret_rate(bill, rid(r), "gcp", region, n, f"(active, {where}; access operations not counted)")


# ---- RunPod ---------------------------------------------------------------------------------------------


def runpod_pod(r: Declared, bill: Bill, usage: Usage) -> None:
    gpu_type, count, cloud_type = r.get("gpuTypeId"), _num(r.get("gpuCount"), 1), r.get("cloudType", default="SECURE")
    offers = [
        o
        for o in catalog().offers.values()
        if o.cloud == "runpod" and o.gpus == count and o.cloud_type == cloud_type and str(o.gpu) in str(gpu_type)
    ]
    if not offers:
        bill.not_priced(rid(r), f"{count}x {gpu_type} ({cloud_type}) is not in the catalog")
    else:
        offer = offers[0]
        pricing = "spot" if r.get("interruptible") else "on-demand"
        rate = hourly(offer, pricing, offer.region)
        if isinstance(rate, str):
            bill.not_priced(rid(r), rate)
        else:
            bill.add(
                rid(r),
                f"{offer.instance_type} {pricing} pod",
                pricing,
                1,
                HOURS_PER_MONTH,
                rate.usd_per_hour,
                rate.source,
            )
    for key, what in (("containerDiskInGb", "container disk"), ("volumeInGb", "pod volume")):
        if _num(r.get(key)):
            bill.not_priced(rid(r), f"{what} {_num(r.get(key))} GB: no dated RunPod {what} rate in the catalog")


def runpod_volume(r: Declared, bill: Bill) -> None:
    rate = regional_rate("runpod", "storage", str(r.get("dataCenterId") or ""))
    size = _num(r.get("size"))
    if rate is None or not size:
        bill.not_priced(rid(r), "network volume: no size declared" if not size else "no dated network volume rate")
        return
    bill.storage(rid(r), f"network volume {size} GB", 1, float(size), rate)


# ---- the bill ---------------------------------------------------------------------------------------------


def bill_preview(preview: Preview, usage: Usage | None = None) -> Bill:
    """Every declared resource priced, listed as not priced, or counted as carrying no charge of its own."""
    usage = (usage or Usage()).check()
    bill = Bill(preview.source)
    region = aws_region(preview, usage)
    gcp_region = str(preview.config.get("gcp:region") or usage.region or "us-central1")
    aws_groups(preview, bill, usage)
    gcp_groups(preview, bill, usage)
    for r in preview.resources:
        if not r.custom:
            continue
        t = r.type
        if t in GROUP_TYPES or t in MIG_TYPES:
            continue
        if t in FREE_TYPES:
            bill.free.append(rid(r))
        elif t in NO_RATE:
            bill.not_priced(rid(r), NO_RATE[t])
        elif t == "aws:ec2/instance:Instance":
            aws_instance(r, bill, usage, region)
        elif t == "aws:ebs/volume:Volume":
            zone = str(r.get("availabilityZone") or "")
            aws_volume_line(bill, rid(r), "EBS volume", r.get("size"), r.get("type"), zone[:-1] or region)
        elif t == "aws:secretsmanager/secret:Secret":
            secret_rate(bill, rid(r), "aws", region, 1, "(per secret a month; API calls not counted)")
        elif t == "aws:ec2/eip:Eip":
            address(bill, rid(r), "aws", region, 1, "(Elastic IP)")
        elif t == "gcp:secretmanager/secretVersion:SecretVersion":
            gcp_secret_version(preview, r, bill, gcp_region)
        elif t == "aws:lb/loadBalancer:LoadBalancer":
            load_balancer(r, bill, usage, "aws", region)
        elif t in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
            bucket(r, bill, usage, "aws", region)
        elif t in (
            "gcp:compute/globalForwardingRule:GlobalForwardingRule",
            "gcp:compute/forwardingRule:ForwardingRule",
        ):
            load_balancer(r, bill, usage, "gcp", str(r.get("region") or gcp_region))
        elif t == "gcp:compute/securityPolicy:SecurityPolicy":
            what, row, why = stack_rate("gcp", "waf", gcp_region)
            if row is None:
                bill.not_priced(rid(r), f"{what}: {why} ({gcp_region})")
            else:
                rate = float(row["usd_per_hour"])
                bill.add(rid(r), what, "stack", 1, HOURS_PER_MONTH, rate, _src(row))
        elif t == "gcp:storage/bucket:Bucket":
            bucket(r, bill, usage, "gcp", str(r.get("location") or gcp_region).lower())
        elif t == "gcp:compute/instance:Instance":
            gcp_instance(r, bill, usage)
        elif t == "runpod:index:Pod":
            runpod_pod(r, bill, usage)
        elif t == "runpod:index:NetworkStorage":
            runpod_volume(r, bill)
        else:
            bill.not_priced(rid(r), "resource type not recognised by `selfhost bill`")
    # One order whatever order the program registered them in (Pulumi registers concurrently).
    bill.lines.sort(key=lambda line: line.resource)
    bill.unpriced.sort(key=lambda u: u.resource)
    bill.free.sort()
    bill.notes.sort()
    return bill


def gate(bill: Bill, max_monthly_usd: float | None, allow_unpriced: bool = False) -> None:
    """The budget gate: exit 2 over budget; refused (exit 2, one line naming what is unpriced) when within
    budget only because resources are not priced, unless `allow_unpriced` gates on the priced total."""
    from costing.errors import OverBudget

    if max_monthly_usd is None:
        return
    if not (math.isfinite(max_monthly_usd) and max_monthly_usd >= 0):
        raise UserError(f"--max-monthly-usd {max_monthly_usd:g} is not a finite amount", "pass e.g. 1200")
    if bill.monthly_usd > max_monthly_usd:
        raise OverBudget(
            f"the declared resources bill ${bill.monthly_usd:,.2f}/month, over the budget of ${max_monthly_usd:,.2f}",
            "raise --max-monthly-usd, or declare fewer or cheaper resources",
        )
    if bill.unpriced and not allow_unpriced:
        named = "; ".join(f"{u.resource} ({u.why})" for u in bill.unpriced)
        raise UserError(
            f"the budget gate of ${max_monthly_usd:,.2f} would pass only on a partial bill: "
            f"${bill.monthly_usd:,.2f}/month leaves out {len(bill.unpriced)} unpriced item(s): {named}",
            "give the usage they need (see the bill's 'not priced' list) or add their dated rates to the catalog, "
            "or gate on the priced total with --allow-unpriced",
        )
