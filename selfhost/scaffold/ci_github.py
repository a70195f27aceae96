"""`selfhost init --ci github`: the workflows of one deployment folder, at the git repository's root (issue 20).

GitHub reads workflows only from the root's `.github/workflows/`, so the folder must be inside a git work tree,
and every path, spec, stack and branch in them is filled in from what init writes:
- `selfhost-<slug>-cost-diff.yml`: the cost diff on pull requests touching the folder (gates on the spec's budget);
- `selfhost-<slug>-deploy.yml`: on a push to the default branch (or by hand), the cost review, then `pulumi up` of
  stack `production` (aws, gcp, runpod, kubernetes: its `Pulumi.production.yaml` is written too; kubernetes
  applies to the cluster of the environment's KUBECONFIG secret on EKS, of vars.GKE_CLUSTER on GKE) or `sky serve
  up/update` (sky), smoke, bench and gate; a passing run tags the commit `selfhost-good/<slug>`, a failing one
  redeploys the tagged commit (never destroys).
The templates are `selfhost/scaffold/github/*.yml`; `__NAME__` placeholders are filled here, and a template with
one left unfilled is a bug caught before anything is written.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from costing.errors import UserError

TEMPLATES = Path(__file__).with_name("github")
STACK = "production"
# where the SkyServe deploy workflow writes the service's certificate (the spec's sky.tls_keyfile/certfile)
TLS_KEYFILE = "~/.selfhost/tls/key.pem"
TLS_CERTFILE = "~/.selfhost/tls/cert.pem"
TAG_PREFIX = "selfhost-good/"

# Pinned as in the shipped workflows (actionlint and zizmor check the rendered files).
AWS_AUTH = """\
      - uses: aws-actions/configure-aws-credentials@e6de054238d6b7531b4efff3b6587d9aade6a06c # v6.2.3
        with:
          role-to-assume: ${{ vars.AWS_DEPLOY_ROLE_ARN }}
          aws-region: ${{ env.AWS_REGION }}
"""
GCP_AUTH = """\
      - uses: google-github-actions/auth@7c6bc770dae815cd3e89ee6cdf493a5fab2cc093 # v3.0.0
        with:
          workload_identity_provider: ${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}
          service_account: ${{ vars.GCP_DEPLOY_SERVICE_ACCOUNT }}
"""
ID_TOKEN = "      id-token: write # OIDC to the cloud: no long-lived key is stored\n"
PULUMI_BACKEND = (
    "#   - the Pulumi state backend (vars.PULUMI_BACKEND_URL, e.g. s3://my-pulumi-state or gs://…) with its\n"
    "#     passphrase (secrets.PULUMI_CONFIG_PASSPHRASE), or a Pulumi Cloud token (secrets.PULUMI_ACCESS_TOKEN);\n"
    "#     with a passphrase, create the stack once where you run Pulumi (`pulumi stack init production`) and\n"
    "#     commit the `encryptionsalt` line it adds to Pulumi.production.yaml, so every run decrypts alike;\n"
)
KEYS = (
    "#   - in the `production` environment's secrets: VLLM_API_KEY (the endpoint's key) and HF_TOKEN (gated\n"
    "#     weights).\n"
)
VERIFY_RUNNER = (
    "#   - a runner inside the stack's allowedCidrs for the smoke and bench (vars.SELFHOST_VERIFY_RUNNER, a\n"
    "#     self-hosted runner's label; default ubuntu-latest, whose addresses change).\n"
)
SETUP = {
    "aws": "#   - an IAM role trusting GitHub's OIDC provider for this repository's `production` environment\n"
    "#     (vars.AWS_DEPLOY_ROLE_ARN): no access keys are stored anywhere;\n" + PULUMI_BACKEND + KEYS + VERIFY_RUNNER,
    "gcp": "#   - Workload Identity Federation for this repository (vars.GCP_WORKLOAD_IDENTITY_PROVIDER) and the\n"
    "#     service account it impersonates (vars.GCP_DEPLOY_SERVICE_ACCOUNT): no key file is stored anywhere;\n"
    + PULUMI_BACKEND
    + KEYS
    + VERIFY_RUNNER,
    "runpod": "#   - RUNPOD_API_KEY in the `production` environment's secrets (RunPod has no OIDC);\n"
    + PULUMI_BACKEND
    + KEYS,
    "sky": "#   - a SkyPilot API server the runs share (vars.SKYPILOT_API_SERVER_ENDPOINT; GitHub runners keep no\n"
    "#     state) holding the cloud credentials, and a service account token of it\n"
    "#     (secrets.SKYPILOT_SERVICE_ACCOUNT_TOKEN, `sky_...`) so every run is the same SkyPilot user;\n"
    "#   - the service's HTTPS certificate for SkyServe's load balancer: secrets.SELFHOST_TLS_KEY and\n"
    "#     secrets.SELFHOST_TLS_CERT (PEM; the spec's sky.tls_keyfile/tls_certfile name where they are written);\n"
    + KEYS,
}
# kubernetes: the cluster's kubeconfig from the environment's secret, in a file only this job reads. Its user's
# credentials come from the cloud's OIDC login of the step before (EKS: `aws eks get-token`) or are a token.
KUBECONFIG_STEP = """\
      - name: Kubeconfig from the environment's secret (a private file, never argv or a log)
        env:
          KUBECONFIG_CONTENT: ${{ secrets.KUBECONFIG }}
        run: |
          umask 077
          printf '%s\\n' "${KUBECONFIG_CONTENT:?the production environment has no KUBECONFIG secret}" \\
            > "$RUNNER_TEMP/kubeconfig"
          echo "KUBECONFIG=$RUNNER_TEMP/kubeconfig" >> "$GITHUB_ENV"
"""
# GKE: no stored kubeconfig. A kubeconfig from `gcloud container clusters get-credentials` runs
# gke-gcloud-auth-plugin, which GitHub's runners do not have; get-gke-credentials writes one holding a short-lived
# token of the service account the OIDC step signed in as (its default, use_auth_provider false).
GKE_CREDENTIALS_STEP = """\
      - name: Kubeconfig of the GKE cluster (a short-lived token of the OIDC service account; nothing stored)
        uses: google-github-actions/get-gke-credentials@3da1e46a907576cefaa90c484278bb5b259dd395 # v3.0.0
        with:
          cluster_name: ${{ vars.GKE_CLUSTER }}
          location: ${{ vars.GKE_LOCATION }}
"""
KUBECONFIG_SOURCE = {
    "eks": "#     kubeconfig in the `production` environment's secrets (KUBECONFIG) for the cluster's context;\n",
    "gke": "#     name and location in vars.GKE_CLUSTER and vars.GKE_LOCATION (the job gets a kubeconfig with a\n"
    "#     short-lived token from google-github-actions/get-gke-credentials: no kubeconfig is stored);\n",
}
KUBERNETES_SETUP = (
    "#   - the cluster: KEDA, prometheus-operator, the NVIDIA device plugin{karpenter} installed, and its\n"
    "{kubeconfig}"
    "{auth}"
    + PULUMI_BACKEND
    + KEYS
    + "#   - a runner that reaches the Service inside the cluster for the smoke and bench (its address in the\n"
    "#     stack's allowedCidrs; vars.SELFHOST_VERIFY_RUNNER, e.g. an Actions Runner Controller label).\n"
)
KUBERNETES_AUTH_SETUP = {
    "eks": "#   - an IAM role trusting GitHub's OIDC provider for this repository's `production` environment\n"
    "#     (vars.AWS_DEPLOY_ROLE_ARN) with an EKS access entry: the kubeconfig's user runs\n"
    "#     `aws eks get-token` with it, so no long-lived key is stored;\n",
    "gke": "#   - Workload Identity Federation for this repository (vars.GCP_WORKLOAD_IDENTITY_PROVIDER) and the\n"
    "#     service account it impersonates (vars.GCP_DEPLOY_SERVICE_ACCOUNT): the stack declares the GKE node\n"
    "#     pools with it (gcp:project and location in the stack config) and applies the manifests as it\n"
    "#     (roles/container.developer, or RBAC in the namespace);\n",
}
RUNPOD_SECRET_ENV = "          RUNPOD_API_KEY: ${{ secrets.RUNPOD_API_KEY }}\n"
RUNPOD_SECRET_CONFIG = (
    "          printf '%s' \"${RUNPOD_API_KEY:?the production environment has no RUNPOD_API_KEY secret}\""
    " | pulumi config set --secret runpod:token\n"
)


@dataclass(frozen=True)
class Repo:
    """Where the deployment folder sits in its git repository."""

    root: Path
    branch: str  # the branch checked out at init: deploys run on pushes to it
    rel: str  # the folder, relative to the root (posix), "." for the root itself

    @property
    def slug(self) -> str:
        name = self.root.name if self.rel == "." else self.rel
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "deployment"
        return slug if slug[0].isalpha() else f"d-{slug}"

    @property
    def good_tag(self) -> str:
        return TAG_PREFIX + self.slug

    @property
    def service(self) -> str:
        """The SkyServe service name (SkyPilot: a letter first, then letters, digits and dashes)."""
        return self.slug[:40].rstrip("-")

    def workflow(self, kind: str) -> Path:
        return self.root / ".github" / "workflows" / f"selfhost-{self.slug}-{kind}.yml"


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise UserError("git is not installed (--ci github writes workflows at the repository's root)",
                        "install git, or drop --ci") from None  # fmt: skip


def find_repo(directory: Path) -> Repo:
    """The git work tree holding `directory` (which may not exist yet), or a refusal with the fix."""
    probe = directory
    while not probe.is_dir() and probe != probe.parent:
        probe = probe.parent
    top = _git(probe, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise UserError(
            f"{directory} is not inside a git repository, and GitHub reads workflows only from a repository's "
            "root (.github/workflows/)",
            f"run `git init` in the repository's folder (or clone yours) and init {directory.name} inside it",
        )
    root = Path(top.stdout.strip()).resolve()
    branch = _git(root, "symbolic-ref", "--short", "HEAD")
    if branch.returncode != 0:
        raise UserError(
            f"the git repository {root} has no branch checked out (a detached HEAD)",
            "check out the branch deployments run from (e.g. git switch main), then run init again",
        )
    rel = directory.resolve().relative_to(root).as_posix() if directory.resolve() != root else "."
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", rel):
        raise UserError(
            f"the folder path {rel!r} has characters the workflows' paths and names cannot carry",
            "use letters, digits, '.', '_', '-' and '/' in the folder's path",
        )
    return Repo(root, branch.stdout.strip(), rel)


def _fill(template: str, values: dict[str, str]) -> str:
    """Replace `__NAME__` placeholders; one alone on a line takes the whole line (a block, or nothing)."""
    out = []
    for line in template.splitlines(keepends=True):
        alone = re.fullmatch(r"__([A-Z][A-Z_]+)__\n?", line)
        out.append(values[alone.group(1)] if alone and alone.group(1) in values else line)
    text = "".join(out)
    for key, value in values.items():
        text = text.replace(f"__{key}__", value)
    left = sorted(set(re.findall(r"__[A-Z][A-Z_]+__", text)))
    if left:
        raise UserError(f"the shipped workflow template leaves {', '.join(left)} unfilled", "report a selfhost bug")
    return text


def workflows(
    repo: Repo, cloud: str, wheel_name: str, kit_version: str, aws_region: str | None, cluster: str | None = None
) -> dict[Path, str]:
    """{path: text} of the two workflows for this deployment folder (`cluster`: eks or gke, for kubernetes)."""
    kind = cluster or "eks"
    auth_cloud = {"eks": "aws", "gke": "gcp"}[kind] if cloud == "kubernetes" else cloud
    dep = repo.rel
    common = {
        "DEPLOY_DIR": dep,
        "SLUG": repo.slug,
        "KIT_WHEEL_NAME": wheel_name,
        "KIT_VERSION": kit_version,
        "BRANCH": repo.branch,
        "GOOD_TAG": repo.good_tag,
        "STACK": STACK,
        "SERVICE": repo.service,
        "CLOUD": cloud,
        "SETUP": SETUP[cloud]
        if cloud != "kubernetes"
        else KUBERNETES_SETUP.format(
            karpenter=" and Karpenter v1" if kind == "eks" else "",
            kubeconfig=KUBECONFIG_SOURCE[kind],
            auth=KUBERNETES_AUTH_SETUP[kind],
        ),
    }
    if cloud == "sky":
        cloud_specific: dict[str, str] = {}
        deploy_template = "deploy-sky.yml"
    else:
        cloud_specific = {
            "CLOUD_ENV": f'  AWS_REGION: "{aws_region}"\n' if auth_cloud == "aws" else "",
            "ID_TOKEN": ID_TOKEN if auth_cloud in ("aws", "gcp") else "",
            "AUTH_STEPS": {"aws": AWS_AUTH, "gcp": GCP_AUTH}.get(auth_cloud, "")
            + (({"gke": GKE_CREDENTIALS_STEP}.get(kind, KUBECONFIG_STEP)) if cloud == "kubernetes" else ""),
            # `selfhost plan` costs what the target deploys: on a cluster, the nodes its pods need
            "PLAN_FLAGS": f" --kubernetes {kind}" if cloud == "kubernetes" else "",
            "SECRET_ENV": RUNPOD_SECRET_ENV if cloud == "runpod" else "",
            "SECRET_CONFIG": RUNPOD_SECRET_CONFIG if cloud == "runpod" else "",
        }
        deploy_template = "deploy-pulumi.yml"
    values = {**common, **cloud_specific}
    out = {
        repo.workflow(kind): _fill((TEMPLATES / name).read_text(), values)
        for kind, name in (("cost-diff", "cost-diff.yml"), ("deploy", deploy_template))
    }
    if dep == ".":  # the folder is the root: its paths filter is the whole repository
        out = {p: t.replace('"./**"', '"**"') for p, t in out.items()}
    return out
