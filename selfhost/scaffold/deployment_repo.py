"""`selfhost init DIR`: a deployment folder for the user's own repository.

What it writes (nothing is overwritten; every refusal comes before the first file):
- `selfhost.yaml`: the deployment spec (examples/ style): `selfhost plan --spec selfhost.yaml` costs it;
- for aws, gcp, runpod and kubernetes (a team's EKS or GKE cluster, `--cluster`): the Pulumi project, the
  kit's stack program (`__main__.py`, as shipped),
  `Pulumi.yaml` (its virtualenv made by `pulumi install` from requirements.txt, or one given) and
  `Pulumi.dev.yaml` (the shipped example config, the machine set, everything else from the spec
  through `specFile`, so the spec stays the one place for model, workload and budget);
- for sky: `sky.yaml`, the SkyPilot task rendered from the spec (selfhost.skypilot.render);
- with `--ci github`: the kit's GitHub workflow(s) under .github/workflows/;
- README.md with the next commands.

The machine is the cheapest offer on that cloud that fits the model and meets the spec's SLO (the cost
review decides, as `selfhost compare` would); the budget is that projection with headroom, said so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from costing.errors import UserError
from costing.money.kubernetes import CLUSTER_OF_CLOUD
from costing.money.kubernetes import CLUSTERS as CLUSTER_CLOUDS
from selfhost import bundled
from selfhost.scaffold import ci_github, kit_wheel

CLOUDS = ("aws", "gcp", "runpod", "kubernetes", "sky")
CLUSTERS = ("eks", "gke")  # --cloud kubernetes: the cluster kind (costing.money.kubernetes.CLUSTERS)
CI_PROVIDERS = ("github",)
SPEC_FILE = "selfhost.yaml"
SKY_FILE = "sky.yaml"
# The example deployment's workload and SLO (examples/llama-3.1-8b-runpod-a40.yaml): a starting point.
WORKLOAD = {"requests_per_day": 3000, "input_tokens": 1000, "output_tokens": 250, "peak_to_mean": 2.0}
SLO = {"p90_latency_s": 20}
BUDGET_HEADROOM = 1.25  # budget = projection x this, rounded up to $50: `pulumi up` refuses above it
# The pricings each target deploys by default, tried by `choose` (where the catalog prices the offer):
# reserved/committed pricing needs a commitment the stacks do not buy; RunPod has no spot (its stack refuses).
PRICINGS = {
    "aws": ("on-demand", "spot"),
    "gcp": ("on-demand", "spot"),
    "runpod": ("on-demand",),
    "kubernetes": ("on-demand", "spot"),  # Karpenter's capacity-type, GKE's spot node pools
    "sky": ("on-demand", "spot"),
}
AVAILABILITIES = ("standard", "high")
STACK_FLEETS = ("aws", "gcp")  # stacks whose group the review sizes (selfhost.stack.plan autoscaled)
TLS_STACKS = ("aws", "gcp")  # stacks that serve TLS for a `domain` themselves (runpod: its proxy is HTTPS)
# Stack config keys that pick the machine, from the chosen offer.
MACHINE_KEYS = {
    "aws": lambda offer: {"instanceType": offer.instance_type},
    "gcp": lambda offer: {"machineType": offer.instance_type},
    "runpod": lambda offer: {"gpuCount": str(offer.gpus), "cloudType": offer.id.rsplit("-", 1)[1].upper()},
    "kubernetes": lambda offer: {"cluster": CLUSTER_OF_CLOUD[offer.cloud], "instanceType": offer.instance_type},
}
# Stack config keys only the user knows: the shipped example's line is written commented out (the stack refuses
# without it, naming the `pulumi config set` that fixes it).
UNKNOWN_KEYS = {"kubernetes": ("clusterName",)}
# Stack config keys the spec carries instead (Pulumi.dev.yaml points at it with specFile).
FROM_SPEC_KEYS = (
    "specFile",
    "model",
    "precision",
    "pricing",
    "requestsPerDay",
    "inputTokens",
    "outputTokens",
    "peakToMean",
    "p90LatencyS",
    "maxMonthlyUsd",
)


@dataclass(frozen=True)
class Choice:
    spec: dict[str, Any]
    offer_id: str
    offer: Any
    monthly_usd: float
    availability: str = "standard"
    # the cheapest fitting offer's monthly total at each pricing tried (the chosen pricing among them)
    alternatives: dict[str, float] = field(default_factory=dict)


def _offers(cloud: str, pricing: str, cluster: str | None = None) -> list:
    from costing.data.catalog import offers_for
    from selfhost.skypilot.render import sky_launchable

    if cloud == "sky":
        return [o for o in offers_for() if sky_launchable(o) and o.price(pricing)]
    if cloud == "kubernetes":  # the nodes of the cluster's cloud, one pod a node (multi-node offers refused)
        return [o for o in offers_for(cloud=CLUSTER_CLOUDS[cluster or "eks"]) if o.price(pricing)]
    found = [o for o in offers_for(cloud=cloud) if o.price(pricing)]
    if cloud == "runpod":  # the stack's example: SECURE cloud (the weights on a network volume)
        found = [o for o in found if o.id.endswith("-secure")]
    return found


def _candidate(
    cloud: str, model: str, precision: str, offer_id: str, pricing: str, availability: str, sky: dict | None
) -> dict:
    """The spec `selfhost init` writes for one offer and pricing (`sky`: the spec's sky section, when given)."""
    data: dict[str, Any] = {
        "name": f"{model}-{cloud}".replace(".", "-"),
        "model": model,
        "precision": precision,
        "target": {"offer": offer_id, "pricing": pricing, "replicas": 1},
        "workload": dict(WORKLOAD),
        "slo": dict(SLO),
        "availability": availability,
    }
    if cloud in STACK_FLEETS:  # the aws/gcp stacks run the fleet the review sizes: cost that one
        data["target"] = {"offer": offer_id, "pricing": pricing}
        data["sky"] = {"service": True}
    if cloud == "kubernetes":  # the cluster runs the fleet `plan --kubernetes` sizes (costing.money.kubernetes)
        data["target"] = {"offer": offer_id, "pricing": pricing}
    if sky is not None:
        data["sky"] = dict(sky)
    return data


def check_availability(cloud: str, availability: str) -> None:
    """`--availability`: a known value the target can run (UserError otherwise)."""
    from costing.money.review import HIGH_AVAILABILITY_REPLICAS

    if availability not in AVAILABILITIES:
        raise UserError(f"unknown --availability {availability}", f"use one of {', '.join(AVAILABILITIES)}")
    if availability == "high" and cloud not in STACK_FLEETS:
        runs = {
            "runpod": "the runpod stack runs one pod",
            "kubernetes": "the kubernetes stack does not spread its pods across zones",
        }.get(cloud, "sky.yaml is one `sky launch` cluster")
        raise UserError(
            f"--availability high needs {HIGH_AVAILABILITY_REPLICAS}+ replicas across zones; {runs}",
            "use --cloud aws or --cloud gcp (a group across zones), or --availability standard",
        )


def choose(
    cloud: str,
    model: str,
    precision: str,
    availability: str = "standard",
    sky: dict | None = None,
    cluster: str | None = None,
) -> Choice:
    """The cheapest offer and pricing on `cloud` that fits `model` at `precision`, meets the SLO and runs
    with `availability`, by the cost review of the spec as written (`sky`: its sky section, e.g. a service).
    Every pricing the target deploys by default is tried (PRICINGS: on-demand, and spot where the catalog
    prices it; never reserved/committed, which needs a commitment the stack does not buy). kubernetes: the
    nodes of `cluster`'s cloud, costed as `selfhost plan --kubernetes` costs them."""
    from costing.data.catalog import get_model, get_precision
    from costing.data.spec import spec_from_dict
    from costing.money.kubernetes import kubernetes_review
    from costing.money.review import cost_review

    get_model(model)  # unknown names: the catalog's refusal, with the choices
    get_precision(precision)
    check_availability(cloud, availability)
    best: Choice | None = None
    cheapest: dict[str, float] = {}  # pricing -> the cheapest fitting offer's monthly total
    reasons: list[str] = []
    for pricing in PRICINGS[cloud]:
        for offer in _offers(cloud, pricing, cluster):
            data = _candidate(cloud, model, precision, offer.id, pricing, availability, sky)
            try:
                spec = spec_from_dict(data)
                review = kubernetes_review(spec, cluster) if cloud == "kubernetes" else cost_review(spec)
            except UserError as err:  # does not fit, misses the SLO: the next offer
                reasons.append(err.problem)
                continue
            if pricing not in cheapest or review.monthly_usd < cheapest[pricing]:
                cheapest[pricing] = review.monthly_usd
            if best is None or review.monthly_usd < best.monthly_usd:
                best = Choice(data, offer.id, offer, review.monthly_usd, availability)
    if best is None:
        why = reasons[-1] if reasons else f"no {' or '.join(PRICINGS[cloud])} offer on {cloud}"
        if cloud == "kubernetes":
            cloud = f"{cloud} ({cluster or 'eks'})"
        raise UserError(
            f"no single machine of the {cloud} target serves {model} at {precision} ({why})",
            "pass a smaller --model or --precision fp8/awq, or another --cloud",
        )
    budget = math.ceil(best.monthly_usd * BUDGET_HEADROOM / 50) * 50
    best.spec["budget"] = {"max_monthly_usd": budget}
    return replace(best, alternatives=cheapest)


def pricing_comment(choice: Choice, cloud: str) -> list[str]:
    """Why this pricing, in the spec's header: the alternatives' monthly figures, and what a spot reclaim
    does to a single replica."""
    pricing = choice.spec["target"]["pricing"]
    others = ", ".join(f"{p} ${usd:,.2f}" for p, usd in choice.alternatives.items())
    if len(choice.alternatives) > 1:
        lines = [
            f"# pricing {pricing}: the cheapest that meets availability {choice.availability} ({others}/month "
            "for the cheapest machine at each)."
        ]
    else:
        lines = [f"# pricing {pricing}: the only one the {cloud} target deploys here ({others}/month)."]
    if pricing == "spot" and choice.availability == "standard":
        if cloud in STACK_FLEETS:
            back = "until the group replaces it (another spot machine, once the cloud has capacity)"
        elif cloud == "kubernetes":
            back = "until the cluster brings up another spot node (Karpenter or the GKE node pool)"
        elif (choice.spec.get("sky") or {}).get("service"):
            back = "until SkyServe launches a replacement replica"
        else:
            back = "and `sky launch` does not bring it back (launch again)"
        lines.append(f"# availability standard on spot: one replica, so a spot reclaim stops the endpoint {back}.")
        if cloud in STACK_FLEETS:
            lines.append("# `selfhost init --availability high` keeps an on-demand replica beside spot ones (more $).")
    return lines


def plan_flags(cloud: str, offer) -> str:
    """What `selfhost plan --spec` needs besides the spec to cost what this target deploys ('' for most)."""
    return f" --kubernetes {CLUSTER_OF_CLOUD[offer.cloud]}" if cloud == "kubernetes" else ""


def _spec_text(choice: Choice, cloud: str) -> str:
    head = [
        f"# Deployment spec: {choice.spec['model']} {choice.spec['precision']} on {choice.offer_id} "
        f"({choice.spec['target']['pricing']}), made by `selfhost init`.",
        f"# `selfhost plan --spec selfhost.yaml{plan_flags(cloud, choice.offer)}` costs it; "
        + (
            "`selfhost render sky` deploys it (sky.yaml)."
            if cloud == "sky"
            else "the Pulumi stack reads it (specFile)."
        ),
        *pricing_comment(choice, cloud),
        f"# budget: the projection at init (${choice.monthly_usd:,.2f}/month) plus 25%: set your own.",
        "# Edit the workload to your traffic: it decides the cost review and the break-even against the APIs.",
    ]
    return "\n".join(head) + "\n" + yaml.safe_dump(choice.spec, sort_keys=False)


def _key_of(line: str, project: str) -> str | None:
    m = re.match(rf"\s*#?\s*{re.escape(project)}:(\w+):", line)
    return m.group(1) if m else None


# The folder init creates names the Pulumi project, the workflows and their paths filter: letters, digits, . _ -
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_directory_name(directory: Path) -> None:
    """Refuse an empty name (Path("") is the current folder), `.`/`..` and names a shell or a workflow mangles."""
    name = directory.name
    if str(directory).strip() == "" or name in ("", ".", ".."):
        raise UserError(
            f"init needs a new folder name, got {str(directory)!r}", "e.g. `selfhost init deploy/llama-aws`"
        )
    if not _FOLDER_NAME.fullmatch(name):
        raise UserError(
            f"folder name {name!r} has characters a workflow path or a shell would mangle",
            "use letters, digits, '.', '_' and '-' (starting with a letter or digit), e.g. deploy/llama-aws",
        )


def check_cluster(cloud: str, cluster: str | None) -> str | None:
    """`--cluster`: eks or gke, with --cloud kubernetes only (eks when not given)."""
    if cloud != "kubernetes":
        if cluster is not None:
            raise UserError(f"--cluster applies to --cloud kubernetes, not {cloud}", "drop --cluster")
        return None
    if cluster is None:
        return "eks"
    if cluster not in CLUSTERS:
        raise UserError(f"unknown --cluster {cluster}", f"use one of {', '.join(CLUSTERS)}")
    return cluster


def check_domain_option(cloud: str, domain: str | None) -> str | None:
    """`--domain`: a DNS name (the stacks' own check), for the targets whose stack serves TLS for one."""
    if domain is None:
        return None
    if cloud not in TLS_STACKS:
        why = {
            "runpod": "the runpod endpoint is served over HTTPS by RunPod's proxy",
            "kubernetes": "the pods are a Service inside the cluster (your ingress controller terminates TLS)",
        }.get(cloud, "a `sky launch` cluster gets no certificate from selfhost (put your own TLS terminator in front)")
        raise UserError(f"--domain does not apply to --cloud {cloud}: {why}", "drop --domain")
    from selfhost.stack.checks import check_domain

    try:
        return check_domain(domain)
    except UserError:
        raise UserError(f"--domain {domain!r} is not a DNS name", "pass a name like --domain api.example.com") from None


def tls_config_note(cloud: str, domain: str | None = None) -> list[str]:
    """README lines on the endpoint's transport for the aws/gcp stacks (none for runpod and sky).

    Without a domain: the stack refuses `pulumi up` until the user sets one or opts in to plain HTTP;
    with one: the DNS records its certificate needs."""
    if cloud not in TLS_STACKS:
        return []
    if domain:
        dns = {
            "aws": "add the CNAME ACM shows (output certificateValidation) while `pulumi up` waits, then a CNAME "
            "from the domain to the output loadBalancerDns",
            "gcp": "point an A record at the output publicIp: Google issues the certificate once it resolves",
        }[cloud]
        return [f"HTTPS on {domain} (`domain` in Pulumi.dev.yaml): {dns}."]
    return [
        "Transport: `pulumi up` refuses until you choose one (the API key must not cross the internet in clear):",
        "",
        "    pulumi config set domain api.example.com   # HTTPS with a certificate for your name (recommended)",
        "    pulumi config set allowPlainHttp true      # or plain HTTP, e.g. behind your own TLS terminator",
        "",
    ]


def stack_config_text(cloud: str, offer, domain: str | None = None) -> str:
    """The shipped Pulumi.dev.yaml: the machine from the offer, the spec's keys replaced by specFile, and
    `domain` when given (else the shipped commented line stays: `pulumi up` refuses until one is chosen).
    gcp with a domain: allowedCidrs 0.0.0.0/0, since Google's certificate is issued over port 443 (the
    stack refuses a domain otherwise; the API key guards the endpoint). kubernetes: the shipped example's cluster
    name is left commented, so `pulumi up` refuses in one line until the team's own is set."""
    project = f"selfhost-{cloud}"
    machine = MACHINE_KEYS[cloud](offer)
    shipped = (bundled.stack_program(cloud) / "Pulumi.dev.yaml").read_text().splitlines()
    out: list[str] = []
    placed: set[str] = set()
    skipping_cidrs = False  # gcp with a domain: the shipped allowedCidrs items are replaced
    for line in shipped:
        key = _key_of(line, project)
        commented = line.lstrip().startswith("#")
        indent = line[: len(line) - len(line.lstrip())]
        if skipping_cidrs and line.lstrip().startswith("- "):
            continue
        skipping_cidrs = False
        if key == "allowedCidrs" and not commented and domain and cloud == "gcp":
            out.append(
                f"{indent}{project}:allowedCidrs: [0.0.0.0/0]   # the certificate authority reaches 443; "
                "the API key guards the endpoint"
            )
            skipping_cidrs = True
            continue
        if key in UNKNOWN_KEYS.get(cloud, ()) and not commented:  # the shipped example's value is not theirs
            out.append(f"{indent}# {line.lstrip()}")
            continue
        if key in FROM_SPEC_KEYS:
            if "specFile" not in placed:
                out.append(
                    f"{indent}{project}:specFile: {SPEC_FILE}   # model, precision, pricing, workload, SLO, budget"
                )
                placed.add("specFile")
            continue
        if key == "domain" and domain and "domain" not in placed:
            out.append(f"{indent}{project}:domain: {domain}   # HTTPS: `selfhost init --domain`")
            placed.add("domain")
            continue
        if key in machine and not commented:
            prefix = line[: line.index(f"{project}:{key}:") + len(f"{project}:{key}:")]
            comment = line.split("#", 1)[1] if "#" in line else ""
            out.append(f"{prefix} {_yaml_scalar(machine[key])}" + (f"   #{comment}" if comment else ""))
            placed.add(key)
            continue
        out.append(line)
    missing = [k for k in ("specFile", *machine, *(["domain"] if domain else [])) if k not in placed]
    if missing:
        raise UserError(
            f"the {cloud} stack's Pulumi.dev.yaml shipped with this selfhost has no {', '.join(missing)} key",
            "report it as a selfhost bug (selfhost init copies that file)",
        )
    return "\n".join(out) + "\n"


def kubernetes_config_lines(offer) -> list[str]:
    """README: the stack config a team's cluster needs that init cannot know."""
    lines = [
        "    pulumi config set clusterName my-cluster   # "
        + ("the karpenter.sh/discovery tag" if offer.cloud == "aws" else "the GKE cluster the node pools join"),
        "    pulumi config set --path 'allowedCidrs[0]' 10.0.0.0/16   # who may call the pods (ingress, clients)",
    ]
    if offer.cloud == "gcp":
        lines += [
            "    pulumi config set location us-central1   # the cluster's region or zone",
            "    pulumi config set gcp:project YOUR-PROJECT",
        ]
    return lines


def _yaml_scalar(value: str) -> str:
    return f'"{value}"' if value.isdigit() else value


def pulumi_yaml_text(cloud: str, virtualenv: Path | None) -> str:
    """The shipped Pulumi.yaml with a virtualenv that works outside this repository."""
    out = []
    for line in (bundled.stack_program(cloud) / "Pulumi.yaml").read_text().splitlines():
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith("#") and ("virtualenv" in stripped or "make venv" in stripped):
            continue
        if stripped.startswith("virtualenv:"):
            if virtualenv is None:
                out.append(
                    f"{indent}# `pulumi install` makes it from requirements.txt (the kit in vendor/, pulumi extra)"
                )
                out.append(f"{indent}virtualenv: venv")
            else:
                out.append(f"{indent}# an existing environment with this kit (its pulumi extra) installed")
                out.append(f"{indent}virtualenv: {virtualenv}")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def requirements_text(wheel_name: str, cloud: str) -> str:
    """The kit that wrote this folder, from the wheel committed beside it (`pulumi install` and CI read this)."""
    extra = "sky" if cloud == "sky" else "pulumi"
    return (
        f"# selfhost, the kit that wrote this folder: its wheel in {kit_wheel.VENDOR}/ (the CI workflows check it\n"
        f"# against {kit_wheel.VENDOR}/{kit_wheel.SUMS} first). Nothing is resolved by name on a package index.\n"
        f"./{kit_wheel.VENDOR}/{wheel_name}[{extra}]\n"
    )


def readme_text(
    directory: Path,
    cloud: str,
    choice: Choice,
    repo: ci_github.Repo | None,
    workflows: list[Path],
    domain: str | None = None,
) -> str:
    name = directory.name
    lines = [
        f"# {name}: {choice.spec['model']} on {cloud}",
        "",
        f"Made by `selfhost init`: {choice.spec['model']} {choice.spec['precision']} on {choice.offer_id} "
        f"({choice.spec['target']['pricing']}), projected ${choice.monthly_usd:,.2f}/month at the example workload.",
        "",
        "The kit that wrote this folder is committed in `vendor/` (its wheel and `SHA256SUMS`); `requirements.txt`",
        "installs exactly that file. Install it where you run the commands below:",
        "",
        "    python -m venv venv && venv/bin/pip install -r requirements.txt && . venv/bin/activate",
        "",
        "Cost review (edit `selfhost.yaml` first: the workload is an example):",
        "",
        f"    selfhost plan --spec selfhost.yaml{plan_flags(cloud, choice.offer)}",
        "",
    ]
    if cloud == "sky":
        lines += [
            "Deploy with SkyPilot:",
            "",
            "    selfhost render sky --spec selfhost.yaml --out sky.yaml   # again after each edit of the spec",
            "    export HF_TOKEN=hf_... VLLM_API_KEY=$(openssl rand -hex 24)",
            "    selfhost launch sky sky.yaml   # the cost review first; refuses above the spec's budget",
        ]
    else:
        tls_note = tls_config_note(cloud, domain)
        secrets = [
            "    openssl rand -hex 24 | pulumi config set --secret apiKey   # the value by stdin, not argv",
            "    pulumi config set --secret hfToken   # prompts for the token (hf_...)",
        ]
        extra = {
            "aws": [
                "    pulumi config set aws:region us-east-1",
                "    pulumi config set --path 'allowedCidrs[0]' 203.0.113.7/32   # who may call the API",
            ],
            "gcp": [
                "    pulumi config set gcp:project YOUR-PROJECT",
                "    pulumi config set --path 'allowedCidrs[0]' 203.0.113.7/32   # who may call the API",
            ],
            "runpod": ["    pulumi config set --secret runpod:token   # prompts for your RunPod API key"],
            "kubernetes": kubernetes_config_lines(choice.offer),
        }[cloud]
        if cloud == "kubernetes":
            lines += [
                "The stack applies to the cluster of your current kubeconfig context (KEDA, prometheus-operator, the",
                "NVIDIA device plugin and, on EKS, Karpenter v1 installed there): the kit's docs/guides/kubernetes.md.",
                "",
            ]
        lines += [
            "Deploy with Pulumi (the program is the kit's stack; `Pulumi.dev.yaml` picks the machine):",
            "",
            "    pulumi install          # venv/ from requirements.txt (the committed kit, with its Pulumi extra)",
            "    pulumi stack init dev   # uses Pulumi.dev.yaml",
            *extra,
            *secrets,
            *(["", *tls_note] if tls_note else []),
            "    pulumi preview && pulumi up   # refuses above the spec's budget",
            '    export VLLM_API_KEY="$(pulumi config get apiKey)"   # smoke reads the key from the environment',
            '    selfhost smoke "$(pulumi stack output endpointUrl)"'
            + ("   # from inside the cluster (or kubectl port-forward)" if cloud == "kubernetes" else ""),
        ]
    if repo is not None:
        where = [p.relative_to(repo.root).as_posix() for p in workflows]
        target = (
            f"SkyServe service `{repo.service}`"
            if cloud == "sky"
            else f"Pulumi stack `{ci_github.STACK}` (`Pulumi.{ci_github.STACK}.yaml`)"
        )
        lines += [
            "",
            "## CI (GitHub Actions)",
            "",
            f"`{where[0]}`: every pull request touching `{repo.rel}` gets the cost diff as a comment (a fork's,",
            "in the job summary) and fails when the spec exceeds its own budget.",
            f"`{where[1]}`: every push to `{repo.branch}` touching `{repo.rel}` (or a manual run) deploys the",
            f"{target},",
            "then smoke, bench and the gate; a deployment that passes is tagged "
            f"`{repo.good_tag}`, and a failing one is replaced by that",
            "tagged commit. Nothing is ever destroyed by CI. Set-up (secrets, OIDC) is at the top of each workflow.",
        ]
        if cloud == "kubernetes":
            lines += [
                f"Before the first deploy, uncomment `clusterName` in `Pulumi.{ci_github.STACK}.yaml` and set your",
                "cluster's name (`pulumi up` refuses until then).",
            ]
    lines += [
        "",
        "Try the same vLLM command line on this machine's CPU first: `selfhost local install`, then",
        "`selfhost up local --spec selfhost.yaml`, `selfhost smoke ...`, `selfhost down local`.",
    ]
    return "\n".join(lines) + "\n"


def files_for(
    directory: Path,
    cloud: str,
    model: str,
    precision: str,
    ci: str | None,
    virtualenv: Path | None,
    wheel: Path | None = None,
    availability: str = "standard",
    domain: str | None = None,
    cluster: str | None = None,
) -> tuple[dict[Path, str | bytes], Choice]:
    """Every file `selfhost init` writes, with its content; refusals (UserError) before anything is written."""
    from selfhost.versions import kit_version

    if cloud not in CLOUDS:
        raise UserError(f"unknown --cloud {cloud}", f"use one of {', '.join(CLOUDS)}")
    cluster = check_cluster(cloud, cluster)
    if ci is not None and ci not in CI_PROVIDERS:
        raise UserError(f"unknown --ci {ci}", f"use one of {', '.join(CI_PROVIDERS)}")
    if virtualenv is not None and not (virtualenv / "bin" / "python").exists():
        raise UserError(
            f"--virtualenv {virtualenv} has no bin/python",
            "give a virtualenv with this kit and its pulumi extra installed",
        )
    if virtualenv is not None and ci:
        raise UserError(
            f"--virtualenv {virtualenv} is a path on this machine, which CI runners do not have",
            "drop --virtualenv with --ci (the workflows make venv/ from requirements.txt, as `pulumi install` does)",
        )
    repo = ci_github.find_repo(directory) if ci else None
    version = kit_version()
    kit = kit_wheel.current(version, wheel)
    # deployed from CI, a sky target is a SkyServe service with HTTPS on its load balancer (the deploy workflow
    # writes the certificate from the environment's secrets): chosen and costed as that service
    sky = (
        {"service": True, "tls_keyfile": ci_github.TLS_KEYFILE, "tls_certfile": ci_github.TLS_CERTFILE}
        if cloud == "sky" and ci
        else None
    )
    choice = choose(cloud, model, precision, availability, sky, cluster)
    files: dict[Path, str | bytes] = {directory / SPEC_FILE: _spec_text(choice, cloud)}
    if cloud == "sky":
        from costing.data.spec import spec_from_dict
        from selfhost.skypilot.render import render_yaml

        files[directory / SKY_FILE] = render_yaml(spec_from_dict(choice.spec), source=SPEC_FILE)
    else:
        program = bundled.stack_program(cloud)
        files[directory / "Pulumi.yaml"] = pulumi_yaml_text(cloud, virtualenv)
        config = stack_config_text(cloud, choice.offer, domain)
        files[directory / "Pulumi.dev.yaml"] = config
        if repo is not None:  # the stack the deploy workflow creates and updates
            files[directory / f"Pulumi.{ci_github.STACK}.yaml"] = config
        files[directory / "__main__.py"] = (program / "__main__.py").read_text()
    files[directory / "requirements.txt"] = requirements_text(kit.name, cloud)
    files[directory / kit_wheel.VENDOR / kit.name] = kit.data
    files[directory / kit_wheel.VENDOR / kit_wheel.SUMS] = kit.sums_text()
    files[directory / ".gitignore"] = "venv/\n__pycache__/\n" + ("task.yaml\n" if cloud == "sky" else "")
    workflow_paths: list[Path] = []
    if repo is not None:
        region = None
        if cloud == "aws":
            dev = yaml.safe_load(str(files[directory / "Pulumi.dev.yaml"])) or {}
            region = str(dev.get("config", {}).get("aws:region"))
        if cloud == "kubernetes" and choice.offer.cloud == "aws":  # the OIDC role's region (aws eks get-token)
            region = choice.offer.region
        flows = ci_github.workflows(repo, cloud, kit.name, version, region, cluster)
        files.update(flows)
        workflow_paths = list(flows)
    files[directory / "README.md"] = readme_text(directory, cloud, choice, repo, workflow_paths, domain)
    return files, choice


def write(files: dict[Path, str | bytes]) -> None:
    """Write them all, or nothing when one already exists."""
    existing = [p for p in files if p.exists()]
    if existing:
        raise UserError(
            f"{existing[0]} already exists (selfhost init never overwrites)", "choose a new or empty folder"
        )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
