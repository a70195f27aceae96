"""What every Pulumi stack shares, decided before any resource is registered.

Stack config (a plain mapping: what `pulumi config` holds) becomes a DeploymentSpec; the cost
review runs; the budget, ingress and secrets are checked. Any problem raises one UserError, so a
refused stack registers nothing. No Pulumi import here: this is plain data and testable alone.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from costing.data.spec import (
    CONFIG_KEYS,
    MAX_REPLICAS,
    SPEC_KEYS,
    DeploymentSpec,
    load_spec,
    merge,
    overrides_from_config,
    read_spec_file,
    spec_from_dict,
)
from costing.errors import UserError
from costing.money.spend import COMMITTED_PRICING
from costing.performance.readiness import startup_allowance_s
from costing.performance.vllm_args import API_KEY_ENV, HF_TOKEN_ENV, VLLM_IMAGE, serve_args

OPEN_CIDRS = ("0.0.0.0/0", "::/0")
MAX_HEALTH_GRACE_S = 3600  # the longest initial delay the clouds' health checks accept

# Config keys every stack reads (camelCase, as `pulumi config set` users expect).
COMMON_KEYS = ("specFile", *CONFIG_KEYS, "allowedCidrs", "reservationOwned", *("owner", "ttl", "expiresAt", "preview"))
SECRET_KEYS = ("apiKey", "hfToken")
FLAG_KEYS = ("allowPlainHttp", "reservationOwned", "reserveCapacity", "refreshAmi", "checkQuota")


@dataclass(frozen=True)
class Readiness:
    """The one readiness definition the clouds' health checks are built from (vLLM's /health)."""

    path: str
    port: int
    initial_delay_s: int
    period_s: int = 30
    timeout_s: int = 10
    failure_threshold: int = 3

    @classmethod
    def for_weights(cls, port: int, weight_gib: float) -> Readiness:
        """Long enough to pull the image and download the weights once, bounded to what clouds accept."""
        return cls("/health", port, min(MAX_HEALTH_GRACE_S, startup_allowance_s(weight_gib)))


@dataclass(frozen=True)
class StackPlan:
    """Everything a cloud module needs: the costed spec, the vLLM container, readiness, labels."""

    cloud: str
    name: str
    spec: DeploymentSpec
    review: Any  # costing.money.review.CostReview
    container_args: list[str]
    image: str
    readiness: Readiness
    labels: dict[str, str]
    storage_gb: int
    allowed_cidrs: tuple[str, ...]
    secrets: dict[str, Any]  # apiKey / hfToken values (pulumi secrets) or None where an existing store ref is used
    secret_refs: dict[str, str | None]  # existing secret ids/ARNs from config, by key
    config: Mapping[str, Any] = field(repr=False, default_factory=dict)
    scope: str = ""  # project/stack/name: tags, IAM conditions and cloud names are unique per Pulumi stack
    domain: str | None = None  # set: TLS with an ACME certificate for it (Caddy in front); None: plain HTTP
    window: Any = None  # selfhost.stack.schedule.Window for a part-time schedule; None: always on

    @property
    def public_port(self) -> int:
        """The port clients reach: 443 behind the TLS proxy, else vLLM's own."""
        return 443 if self.domain else self.port

    @property
    def endpoint_scheme(self) -> str:
        return "https" if self.domain else "http"

    @property
    def fit(self):
        return self.review.fit

    @property
    def fleet(self):
        """The review's replica plan (costing.money.review.Fleet): min/max replicas, base on-demand, target QPS."""
        return self.review.fleet

    @property
    def offer(self):
        return self.review.offer

    @property
    def port(self) -> int:
        return self.readiness.port

    @property
    def pricing(self) -> str:
        return self.spec.target.pricing

    @property
    def env_names(self) -> dict[str, str]:
        """Container environment variable for each secret key."""
        return {"apiKey": API_KEY_ENV, "hfToken": HF_TOKEN_ENV}

    def outputs(self) -> dict[str, Any]:
        """The cost outputs every stack exports (the endpoint and ids are added by the cloud module)."""
        r = self.review
        return {
            "model": self.fit.model.id,
            "servedModelName": self.fit.settings.served_model_name,
            "offer": self.offer.id,
            "pricing": self.pricing,
            "gpus": f"{self.fit.gpus_per_node}x {self.fit.gpu.name}",
            "hourlyUsd": round(r.hourly_usd, 4),
            "projectedMonthlyUsd": round(r.monthly_usd, 2),
            "usdPerMillionOutputTokens": round(r.usd_per_million_output_tokens, 4),
            "maxMonthlyUsd": self.spec.budget.max_monthly_usd,
            "containerImage": self.image,
            "containerArgs": list(self.container_args),
            "healthPath": self.readiness.path,
        }


# ---- config parsing -------------------------------------------------------------------------


def number(config: Mapping[str, Any], key: str, kind: type = float) -> Any:
    value = config.get(key)
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UserError(
            f"stack config {key} must be a {'whole number' if kind is int else 'number'}, got {value!r}",
            f"pulumi config set {key} <{kind.__name__}>",
        ) from None


def flag(config: Mapping[str, Any], key: str) -> bool:
    value = config.get(key)
    if isinstance(value, bool):
        return value
    if value is None or value == "":
        return False
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise UserError(f"stack config {key} must be true or false, got {value!r}", f"pulumi config set {key} true")


def str_list(config: Mapping[str, Any], key: str) -> list[str]:
    """A list from config: a YAML list (`pulumi config set --path 'k[0]' v`) or a comma-separated string."""
    value = config.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        raise UserError(f"stack config {key} must be a list, got {value!r}", f"pulumi config set {key} 'a,b'")
    return [str(v).strip() for v in value if str(v).strip()]


def spec_from_config(
    cloud: str, config: Mapping[str, Any], target: dict[str, Any], *, autoscaled: bool = False
) -> DeploymentSpec:
    """The DeploymentSpec: the spec file named by `specFile` (if any) with the stack's keys laid over it.

    `target` carries the cloud module's offer choice. `autoscaled`: the stack runs a group the review
    sizes as an autoscaled service (min = off-peak replicas, max = peak, spot with an on-demand base), the
    same fleet a SkyServe service gets; otherwise the review sizes a fixed count (what the peak needs).
    """
    overrides = merge(
        overrides_from_config(config),  # the one declared key -> field mapping (costing.data.spec.SPEC_KEYS)
        {"target": {"cloud": cloud, **target}, "sky": {"service": autoscaled, "any_of": []}},
    )
    spec_file = config.get("specFile") or None
    if spec_file:
        base = read_spec_file(spec_file)
        base_target = base.get("target") or {}
        if not isinstance(base_target, Mapping):
            raise UserError(f"target in {spec_file} must be a mapping", "write `target: {pricing: ..., region: ...}`")
        base_target = {k: v for k, v in base_target.items() if k in ("pricing", "region")}
        base["target"] = base_target  # the stack's own keys pick the machine, not the spec's target
        data = merge(base, overrides)
        if "model" not in data:
            raise UserError(f"no model in {spec_file} nor in the stack config", "pulumi config set model llama-3.1-8b")
        return spec_from_dict(_drop_empty(data))
    if not overrides.get("model"):
        raise UserError("no model in the stack config", "pulumi config set model llama-3.1-8b (or set specFile)")
    return load_spec(None, **_drop_empty(overrides))


def _drop_empty(data: dict[str, Any]) -> dict[str, Any]:
    """Remove None leaves and sections left empty, so pydantic defaults apply (and `workload` stays optional)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = _drop_empty(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out


def check_cidrs(cidrs: list[str], has_api_key: bool) -> tuple[str, ...]:
    if not cidrs:
        raise UserError(
            "stack config allowedCidrs is empty: the endpoint would be reachable by no one",
            "pulumi config set allowedCidrs 203.0.113.7/32 (your office or CI egress range)",
        )
    normal = []
    for cidr in cidrs:
        try:
            normal.append(str(ipaddress.ip_network(cidr, strict=False)))
        except ValueError:
            raise UserError(f"allowedCidrs entry {cidr!r} is not a CIDR block", "use e.g. 203.0.113.7/32") from None
    if any(c in OPEN_CIDRS for c in normal) and not has_api_key:
        raise UserError(
            "allowedCidrs opens the API port to the whole internet (0.0.0.0/0) without an API key",
            "pulumi config set --secret apiKey <key>, or narrow allowedCidrs",
        )
    return tuple(dict.fromkeys(normal))


def check_secrets(
    config: Mapping[str, Any], ref_keys: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str | None]]:
    """Each secret given either as a value (`--secret`) or as a reference to an existing store entry."""
    values, refs = {}, {}
    for key in SECRET_KEYS:
        ref_key = ref_keys.get(key)
        ref = (config.get(ref_key) or None) if ref_key else None
        value = config.get(key)
        if value is None and ref is None:
            what = (
                "the API key clients must send (vLLM's VLLM_API_KEY)"
                if key == "apiKey"
                else "a Hugging Face token with access to the gated Llama repos"
            )
            alt = f", or pulumi config set {ref_key} <existing secret>" if ref_key else ""
            raise UserError(f"missing secret {key}: {what}", f"pulumi config set --secret {key} <value>{alt}")
        if key == "apiKey" and value is not None:
            from selfhost.stack.checks import check_api_key

            check_api_key(value)
        values[key] = value
        refs[key] = ref
    return values, refs


def labels_for(name: str, spec: DeploymentSpec, review: Any) -> dict[str, str]:
    return {
        "app": "selfhost-vllm",
        "selfhost-stack": name,
        "model": review.fit.model.id,
        "gpu": review.fit.gpu.name.lower(),
        "pricing": spec.target.pricing,
        "managed-by": "selfhost",
    }


def ownership_marks(config: Mapping[str, Any]) -> dict[str, str]:
    """The owner and TTL marks (selfhost.reap.ttl) from stack config: `owner` (else $GITHUB_REPOSITORY), `ttl`
    (e.g. 8h, from this `pulumi up`) or `expiresAt` (the exact mark `selfhost ttl` printed, e.g. 20261130t0900z),
    `preview` (e.g. pr-12). A TTL without an owner is refused: the reaper could never tell it from anyone else's."""
    from selfhost.reap import ttl

    text, exact = config.get("ttl") or None, config.get("expiresAt") or None
    if text and exact:
        raise UserError("stack config sets both ttl and expiresAt", "keep one: pulumi config rm ttl (or expiresAt)")
    expires = None
    if exact:
        expires = ttl.parse_expiry(str(exact))
        if expires is None:
            raise UserError(
                f"stack config expiresAt {exact!r} is not an expiry mark",
                "pulumi config set expiresAt 20261130t0900z (UTC; what `selfhost ttl` prints as tags.expires-at)",
            )
    elif text:
        expires = ttl.expires_at(str(text))
    owner_given = str(config.get("owner") or "") or None
    try:
        owner = ttl.resolve_owner(owner_given)
    except UserError:
        if expires is not None or owner_given:
            raise
        return {ttl.MANAGED_KEY: ttl.MANAGED_VALUE}  # no owner and no TTL: nothing the reaper may ever touch
    preview = config.get("preview") or None
    return ttl.ttl_tags(None, owner=owner, expires=expires, preview=str(preview) if preview else None)


def gcp_label(value: str) -> str:
    """GCP label values: lowercase letters, digits, '-' and '_', at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


# The costing engine's fixes name CLI flags; a stack user sets config keys instead.
FLAG_TO_KEY = {
    **{k.flag: k.config_key for k in SPEC_KEYS if k.flag and k.config_key},  # the one declared mapping
    "--gpus": "gpuCount",  # the stacks pick the machine by their own keys
    "--gpu": "gpu",
    "--offer": "instanceType",
}


def in_stack_words(err: UserError) -> UserError:
    """The same error (same class), its fix naming `pulumi config set` keys rather than CLI flags."""
    if not err.fix:
        return err
    parts = re.split(r"(`[^`]*`)", err.fix)  # a quoted `selfhost ...` command keeps its own flags
    for i, part in enumerate(parts):
        if part.startswith("`selfhost "):
            continue
        for flag_name, key in FLAG_TO_KEY.items():
            part = re.sub(rf"(?<![\w-]){re.escape(flag_name)}(?![\w-])", f"config {key}", part)
        parts[i] = part
    fix = "".join(parts)
    if fix == err.fix:
        return err
    new = type(err).__new__(type(err))
    UserError.__init__(new, err.problem, fix)
    return new


def plan_stack(
    cloud: str,
    config: Mapping[str, Any],
    target: dict[str, Any],
    *,
    secret_ref_keys: Mapping[str, str] | None = None,
    default_name: str = "selfhost",
    scope: tuple[str, str] = ("selfhost", "dev"),
    tls: bool = True,
    schedulable: bool = True,
    autoscaled: bool = True,
    acme_on_443: bool = True,
    spot_zones: tuple[str, ...] = (),
    boot_disk_gb: int = 0,
) -> StackPlan:
    """Validate config, run the cost review and the budget gate. Raises UserError; registers nothing.

    `scope` is (Pulumi project, stack); `tls` says the cloud serves the endpoint itself (aws, gcp), so
    plain HTTP needs allowPlainHttp; `schedulable` is False where nothing can stop and start the machine;
    `autoscaled`: the review sizes the replica group the stack runs (spec_from_config); `acme_on_443`:
    the certificate for `domain` is validated over port 443 (so allowedCidrs must let the CA in), not DNS;
    `spot_zones`: the zone IDs a spot group spreads over, priced at their mean (costing.data.resolve.across_zones);
    `boot_disk_gb`: the system part of each replica's disk (the weights' part is sized by the review).
    """
    try:
        p = _plan_stack(cloud, config, target, secret_ref_keys, default_name, autoscaled, spot_zones, boot_disk_gb)
        return _harden(p, config, scope, tls=tls, schedulable=schedulable, acme_on_443=acme_on_443)
    except UserError as err:
        raise in_stack_words(err) from None


STACK_MIRRORS = {"aws": "the stack's S3 weights mirror", "gcp": "the stack's GCS weights mirror"}


def stack_parts(
    cloud: str, cidrs: tuple[str, ...], spot_zones: tuple[str, ...] = (), secrets_created: int = len(SECRET_KEYS)
) -> tuple[tuple[str, ...], dict[str, int]]:
    """(stack_resources, stack_counts) of cost_review for what the `cloud` stack runs beside its replicas."""
    from costing.money.review import ALB_MIN_ZONES

    if cloud not in STACK_MIRRORS:
        return (), {}
    counts = {"secrets": secrets_created}
    if spot_zones:
        counts["public_ipv4"] = max(len(spot_zones), ALB_MIN_ZONES)
    waf = cloud == "gcp" and not set(cidrs) & set(OPEN_CIDRS)
    resources: tuple[str, ...] = (
        ("load_balancer", "waf", "weights_mirror") if waf else ("load_balancer", "weights_mirror")
    )
    resources += ("public_ipv4",) if cloud == "aws" else ()
    return (*resources, "instance_ipv4", "secrets", "egress"), counts


def stack_review(
    cloud: str,
    spec: DeploymentSpec,
    cidrs: tuple[str, ...],
    *,
    spot_zones: tuple[str, ...] = (),
    boot_disk_gb: int = 0,
    secrets_created: int = len(SECRET_KEYS),
):
    """The cost review of what the `cloud` stack declares for `spec` (no checks, no budget gate): its replicas
    and disks, and its own resources. The aws and gcp stacks restore every later replica's weights from their
    own bucket mirror, and run a load balancer, a WAF policy where callers are limited (GCP's Cloud Armor; AWS
    limits them with the load balancer's security group), that bucket, the secrets they create (not the
    referenced ones) and public IPv4 addresses (each replica's; AWS's internet-facing ALB one per zone of
    `spot_zones`, the group's zones, at least two): each a row of the review."""
    from costing.money.review import cost_review

    mirror = STACK_MIRRORS.get(cloud)
    resources, counts = stack_parts(cloud, cidrs, spot_zones, secrets_created)
    return cost_review(
        spec,
        weights_mirror=mirror,
        stack_resources=resources,
        stack_counts=counts,
        spot_zones=spot_zones,
        cloud_group=bool(mirror),  # the aws and gcp stacks run their own instance group, not SkyServe
        boot_disk_gb=boot_disk_gb,
    )


def _plan_stack(
    cloud: str,
    config: Mapping[str, Any],
    target: dict[str, Any],
    secret_ref_keys: Mapping[str, str] | None,
    default_name: str,
    autoscaled: bool,
    spot_zones: tuple[str, ...] = (),
    boot_disk_gb: int = 0,
) -> StackPlan:
    from costing.money.review import enforce_budget

    for key in FLAG_KEYS:  # every true/false key read now, not where a resource first needs it
        flag(config, key)
    spec = spec_from_config(cloud, config, target, autoscaled=autoscaled)
    if spec.schedule.days_per_month is not None:
        raise UserError(
            f"schedule.days_per_month {spec.schedule.days_per_month:g} can't be deployed: the stacks start and stop "
            "the group on days of the week, so it would run (and be billed) every day",
            "set hoursPerDay and daysPerWeek instead (e.g. pulumi config set daysPerWeek 2 for about 9 days a "
            "month), and drop days_per_month from the spec file",
        )
    has_key = config.get("apiKey") is not None or bool(
        secret_ref_keys and config.get(secret_ref_keys.get("apiKey", ""))
    )
    cidrs = check_cidrs(str_list(config, "allowedCidrs"), has_key)
    secrets, refs = check_secrets(config, secret_ref_keys or {})
    if spec.workload is None:
        raise UserError(
            "no workload in the stack config: the cost review needs it",
            "pulumi config set requestsPerDay 3000; inputTokens 1000; outputTokens 250 "
            "(or a specFile with `workload:`)",
        )

    created = sum(1 for key in SECRET_KEYS if not refs.get(key))

    def review_of(s: DeploymentSpec):
        return stack_review(cloud, s, cidrs, spot_zones=spot_zones, boot_disk_gb=boot_disk_gb, secrets_created=created)

    review = review_of(spec)
    if review.fleet is not None and review.fleet.max_replicas > MAX_REPLICAS:
        raise UserError(
            f"the peak needs {review.fleet.max_replicas:,} replicas of {review.offer.id if review.offer else cloud}, "
            f"more than the {MAX_REPLICAS:,} a stack declares (beyond any single-account GPU quota)",
            "lower requestsPerDay or peakToMean, raise targetUtilization, or use bigger GPUs (gpu/instanceType)",
        )
    if spec.target.pricing in COMMITTED_PRICING and not flag(config, "reservationOwned"):
        on_demand = spec.model_copy(update={"target": spec.target.model_copy(update={"pricing": "on-demand"})})
        figure = review_of(on_demand).monthly_usd
        what = "Reserved Instance or Savings Plan" if cloud == "aws" else "committed use discount"
        raise UserError(
            f"pricing {spec.target.pricing} costs a {what} the stack does not buy: it launches on-demand "
            f"instances, ${figure:,.2f}/month on demand (the review at {spec.target.pricing}: "
            f"${review.monthly_usd:,.2f})",
            f'pulumi config set reservationOwned "true" if a {what} you already own covers these instances, '
            "or pulumi config set pricing on-demand",
        )
    if review.fit.nodes > 1:
        raise UserError(
            f"{spec.model} needs {review.fit.nodes} nodes; the Pulumi stacks run one machine",
            "use more or bigger GPUs, a smaller precision, or `selfhost launch sky` for multi-node",
        )
    enforce_budget(review, spec.budget.max_monthly_usd)
    name = re.sub(r"[^a-z0-9-]", "-", (spec.name or default_name).lower()).strip("-")[:40] or default_name
    settings = review.fit.settings
    return StackPlan(
        cloud=cloud,
        name=name,
        spec=spec,
        review=review,
        container_args=serve_args(settings),
        image=str(config.get("image") or VLLM_IMAGE),
        readiness=Readiness.for_weights(settings.port, review.fit.weight_gib),
        labels=labels_for(name, spec, review),
        storage_gb=math.ceil(review.storage_gb),
        allowed_cidrs=cidrs,
        secrets=secrets,
        secret_refs=refs,
        config=config,
    )


def _harden(
    p: StackPlan, config: Mapping[str, Any], scope: tuple[str, str], *, tls: bool, schedulable: bool, acme_on_443: bool
) -> StackPlan:
    """The checks every value that reaches a boot script, a firewall or a cloud name goes through."""
    from dataclasses import replace

    from selfhost.stack import checks
    from selfhost.stack.schedule import window

    settings = p.fit.settings
    checks.check_model_repo(settings.model_repo)
    checks.check_served_name(settings.served_model_name)
    checks.check_image(p.image)
    if config.get("region"):
        checks.check_region(str(config["region"]))
    domain = checks.check_domain(config["domain"]) if tls and config.get("domain") else None
    if not tls and config.get("domain"):
        raise UserError(
            f"the {p.cloud} endpoint is served over HTTPS by its proxy; domain does not apply", "drop domain"
        )
    checks.check_port(p.port, tls_proxy=domain is not None)
    if tls and domain is None and not flag(config, "allowPlainHttp"):
        raise UserError(
            "no domain: the endpoint would serve plain HTTP, the API key in clear on the network",
            "pulumi config set domain api.example.com (TLS with an ACME certificate), "
            "or pulumi config set allowPlainHttp true",
        )
    if domain and acme_on_443 and not set(p.allowed_cidrs) & set(OPEN_CIDRS):
        raise UserError(
            "a domain's ACME certificate needs port 443 reachable by the certificate authority, "
            "which allowedCidrs blocks",
            "pulumi config set allowedCidrs 0.0.0.0/0 (the API key guards the endpoint), or drop domain "
            "and set allowPlainHttp true behind your own TLS terminator",
        )
    weights_gb = p.fit.weight_gib * 1.073741824
    if p.spec.storage_gb is not None and p.spec.storage_gb < weights_gb:
        raise UserError(
            f"storageGb {p.spec.storage_gb:g} is smaller than the {weights_gb:.1f} GB of weights",
            f"pulumi config set storageGb {math.ceil(weights_gb * 1.2)} (or drop it: sized from the weights)",
        )
    schedule = p.spec.schedule
    win = window(schedule.hours_per_day, schedule.days_per_week, config)
    if win is not None and not schedulable:
        raise UserError(
            f"a {p.cloud} pod can't be stopped and started on a schedule, "
            f"so {schedule.hours_per_day:g} h/day x {schedule.days_per_week:g} days/week can't be deployed",
            "drop hoursPerDay/daysPerWeek (24/7), or use the aws/gcp stack for a part-time schedule",
        )
    project, stack = scope
    scope_id = checks.scoped(p.name, project, stack)
    labels = {**p.labels, "selfhost-stack": scope_id, **ownership_marks(config)}
    return replace(p, scope=scope_id, labels=labels, domain=domain, window=win)
