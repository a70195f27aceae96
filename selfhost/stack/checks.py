"""Checks on the values a stack puts into boot scripts, firewall rules and cloud resource names.

Every value that reaches a shell line is validated here first (and shell-quoted where it is used);
a value that fails raises one UserError before any resource is declared. Pulumi-free.
"""

from __future__ import annotations

import hashlib
import re
import zoneinfo
from collections.abc import Mapping
from typing import Any

from costing.errors import UserError

SSH_PORT = 22
TLS_PORTS = (80, 443)  # the TLS proxy (Caddy) holds these when a domain is set
# Ports the stack's own layers listen on; the serving port may not take them. The auth layer adds its own.
RESERVED_PORTS: dict[int, str] = {SSH_PORT: "SSH"}

HF_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
LOCAL_PATH = re.compile(r"/[A-Za-z0-9._/-]{1,250}")
SERVED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
IMAGE = re.compile(r"[a-z0-9][a-z0-9._/-]{0,200}(:[A-Za-z0-9._-]{1,128})?(@sha256:[a-f0-9]{64})?")
DOMAIN = re.compile(r"(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
REGION = re.compile(r"[a-z]{2,12}(-[a-z]{2,12}){0,3}-?\d{1,2}")  # us-east-1 (AWS), us-central1 (GCP)
AWS_ARN = re.compile(r"arn:aws[a-z-]*:(secretsmanager|ssm):[a-z0-9-]+:\d{12}:[A-Za-z0-9/_+=.@:-]{1,512}")
GCP_SECRET = re.compile(r"(projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/secrets/)?[A-Za-z0-9_-]{1,255}")
HH_MM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
AMI_ID = re.compile(r"ami-([0-9a-f]{8}|[0-9a-f]{17})")
VPC_ID = re.compile(r"vpc-([0-9a-f]{8}|[0-9a-f]{17})")
SUBNET_ID = re.compile(r"subnet-([0-9a-f]{8}|[0-9a-f]{17})")
AWS_ZONE = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d[a-z]")  # us-east-1a (a zone name, as a capacity reservation takes)
# GCP image families and project ids: https://cloud.google.com/compute/docs/images/image-families-best-practices,
# https://cloud.google.com/resource-manager/docs/creating-managing-projects (6-30, a letter first, no trailing -)
GCP_IMAGE_FAMILY = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
GCP_ZONE = re.compile(r"[a-z]+(-[a-z]+)*\d{1,2}-[a-z][a-z0-9]{0,7}")  # us-central1-a, europe-west4-b
GCP_PROJECT = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")


def _full(pattern: re.Pattern[str], value: str) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def check_model_repo(value: str) -> str:
    """A Hugging Face repo `owner/name` or an absolute local path; nothing a shell could read as more."""
    if _full(HF_REPO, value) or (_full(LOCAL_PATH, value) and "/../" not in value + "/"):
        return value
    raise UserError(
        f"modelRepo {value!r} is neither a Hugging Face repo (owner/name) nor an absolute path",
        "pulumi config set modelRepo meta-llama/Llama-3.1-8B-Instruct",
    )


def check_served_name(value: str) -> str:
    if _full(SERVED_NAME, value):
        return value
    raise UserError(
        f"servedModelName {value!r} must be letters, digits and . _ : / - (at most 128)",
        "pulumi config set servedModelName llama-3.1-8b",
    )


def check_image(value: str) -> str:
    if _full(IMAGE, value):
        return value
    raise UserError(
        f"image {value!r} is not a container image reference", "pulumi config set image vllm/vllm-openai:TAG"
    )


def check_region(value: str, key: str = "region") -> str:
    if _full(REGION, value):
        return value
    raise UserError(f"{key} {value!r} is not a cloud region name", f"pulumi config set {key} us-east-1")


def check_domain(value: str) -> str:
    text = str(value).strip().lower().rstrip(".")
    if _full(DOMAIN, text):
        return text
    raise UserError(f"domain {value!r} is not a DNS name", "pulumi config set domain api.example.com")


def check_port(port: int, *, tls_proxy: bool) -> int:
    """The serving port: never SSH, no other privileged port but 80/443, none a layer of the stack holds."""
    taken = dict(RESERVED_PORTS)
    if tls_proxy:
        taken.update(dict.fromkeys(TLS_PORTS, "the TLS proxy"))
    if port in taken:
        raise UserError(f"port {port} is used by {taken[port]}", "pulumi config set port 8000")
    if port < 1024 and port not in TLS_PORTS:
        raise UserError(
            f"port {port} is a privileged port (below 1024, other than 80/443)", "pulumi config set port 8000"
        )
    return port


def check_aws_ref(key: str, ref: str) -> str:
    """A Secrets Manager secret or SSM parameter ARN (the SSM one must name a parameter)."""
    fix = f"pulumi config set {key} arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME"
    if not _full(AWS_ARN, ref):
        raise UserError(f"{key} {ref!r} is not a Secrets Manager or SSM parameter ARN", fix)
    if ":ssm:" in ref and ":parameter/" not in ref:
        raise UserError(
            f"{key} {ref!r} is an SSM ARN without :parameter/NAME",
            f"pulumi config set {key} arn:aws:ssm:REGION:ACCOUNT:parameter/NAME",
        )
    return ref


def check_gcp_secret(key: str, ref: str) -> str:
    if _full(GCP_SECRET, ref):
        return ref
    raise UserError(
        f"{key} {ref!r} is not a Secret Manager secret id or projects/P/secrets/NAME",
        f"pulumi config set {key} projects/my-project/secrets/vllm-api-key",
    )


def check_api_key(value: Any) -> None:
    """A plain API key from stack config held to the auth layer's own rules (selfhost.auth_middleware.key_problem)
    at preview, before anything is declared: the VM would refuse it at boot, after the machines are paid for."""
    from selfhost.auth_middleware import MIN_KEY_CHARS, key_problem

    if not isinstance(value, str):
        return  # a secret Output: the stack checks its plain text (selfhost.stack.component.config_from_pulumi)
    problem = key_problem(value)
    if problem:
        raise UserError(
            f"stack config apiKey {problem}",
            f'pulumi config set --secret apiKey "$(openssl rand -hex 24)" (at least {MIN_KEY_CHARS} printable '
            "ASCII characters, no whitespace)",
        )


def check_pattern(key: str, value: Any, pattern: re.Pattern[str], what: str, example: str) -> str:
    """One stack config value against its cloud's format (a refusal names the key and an example)."""
    text = str(value).strip()
    if _full(pattern, text):
        return text
    raise UserError(f"stack config {key} {value!r} is not {what}", f"pulumi config set {key} {example}")


def check_time_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise UserError(
            f"timeZone {value!r} is not an IANA time zone", "pulumi config set timeZone Europe/Berlin"
        ) from None
    return value


def check_script_values(values: Mapping[str, Any]) -> None:
    """Last line of defence in the renderers: no value with a newline or NUL ever reaches a script."""
    for name, value in values.items():
        if any(c in str(value) for c in "\n\r\0"):
            raise UserError(f"{name} contains a line break or NUL", f"pulumi config set {name} without it")


# ---- resource names ------------------------------------------------------------------------------


def scoped(name: str, project: str, stack: str) -> str:
    """The stack's scope string (tags, IAM conditions): project/stack/name, so dev and prod never overlap."""
    return f"{project}/{stack}/{name}"


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def digest(*parts: str, length: int = 8) -> str:
    """A short hex digest of `parts` (an account or project id never appears in a global name in clear)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def global_bucket_name(base: str, scope: str, account: str, suffix: str) -> str:
    """A bucket name for a global namespace (S3 and Cloud Storage): `<slug>-<account+scope digest>-<suffix>-weights`.

    The digest of the cloud account (or project) with the stack's scope keeps two accounts, projects or stacks
    apart; `suffix` is random and kept in the stack's state (pulumi_random), so no one can predict the name and
    take it first. Within both clouds' rules: 3-63 characters, lowercase letters, digits and '-', a letter first
    and a letter or digit last, no `goog`/`xn--`/`sthree-` prefix, no `google`."""
    if not re.fullmatch(r"[0-9a-f]{8,16}", suffix):
        raise UserError(f"bucket suffix {suffix!r} is not 8-16 hex digits", "re-run pulumi up")
    if not account:
        raise UserError("the cloud account/project id is unknown", "check the cloud credentials, then re-run")
    tail = f"-{digest(account, scope)}-{suffix}-weights"
    slug = _slug(base).replace("google", "g").replace("goog", "g") or "selfhost"
    if not slug[0].isalpha() or slug.startswith(("xn--", "sthree", "amzn-s3-demo")):
        slug = "s" + slug
    head = slug[: 63 - len(tail)].rstrip("-")
    return f"{head}{tail}"


def gcp_name(base: str, scope: str, max_len: int = 63, min_len: int = 1) -> str:
    """A GCP resource name `[a-z]([-a-z0-9]*[a-z0-9])?`, unique per scope: slug + a short hash of the scope.

    A base starting with a digit gets an `s` prefix (GCP names and service-account ids must start with a letter).
    """
    digest = hashlib.sha256(scope.encode()).hexdigest()[:6]
    slug = _slug(base) or "selfhost"
    if not slug[0].isalpha():
        slug = "s" + slug
    head = slug[: max_len - len(digest) - 1].rstrip("-")
    name = f"{head}-{digest}"
    if len(name) < min_len:
        name = name + "-" + "0" * (min_len - len(name) - 1)
    return name
