"""`selfhost init` in process (fast): the pricing it picks, the availability it writes, the transport it sets.

The expectations are derived from cost reviews computed here, never hard-coded figures."""

from __future__ import annotations

import pytest
import yaml
from cli_inprocess import one_line_error, run_cli
from conftest import ROOT

from costing.data.catalog import offers_for
from costing.data.spec import load_spec, spec_from_dict
from costing.errors import UserError
from costing.money.review import cost_review
from selfhost.scaffold import deployment_repo
from selfhost.stack import preview

MODEL, PRECISION = "llama-3.1-8b", "bf16"


def cheapest_per_pricing(cloud: str, availability: str) -> dict[str, float]:
    """Independently of `choose`: each deployable pricing's cheapest review that fits and meets the SLO."""
    from selfhost.skypilot.render import sky_launchable

    pricings = ("on-demand",) if cloud == "runpod" else ("on-demand", "spot")  # never reserved/committed
    offers = [o for o in offers_for() if sky_launchable(o)] if cloud == "sky" else offers_for(cloud=cloud)
    if cloud == "runpod":
        offers = [o for o in offers if o.id.endswith("-secure")]
    found: dict[str, float] = {}
    for pricing in pricings:
        for offer in offers:
            if offer.price(pricing) is None:
                continue
            target: dict = {"offer": offer.id, "pricing": pricing}
            data = {
                "model": MODEL,
                "precision": PRECISION,
                "target": target if cloud in ("aws", "gcp") else {**target, "replicas": 1},
                "workload": dict(deployment_repo.WORKLOAD),
                "slo": dict(deployment_repo.SLO),
                "availability": availability,
                **({"sky": {"service": True}} if cloud in ("aws", "gcp") else {}),
            }
            try:
                monthly = cost_review(spec_from_dict(data)).monthly_usd
            except UserError:
                continue
            found[pricing] = min(monthly, found.get(pricing, monthly))
    return found


@pytest.mark.parametrize(
    "cloud,availability",
    [("aws", "standard"), ("aws", "high"), ("gcp", "standard"), ("gcp", "high"), ("runpod", "standard"),
     ("sky", "standard")],
)  # fmt: skip
def test_init_picks_the_cheapest_pricing_that_meets_the_availability(cloud, availability, tmp_path):
    expected = cheapest_per_pricing(cloud, availability)
    choice = deployment_repo.choose(cloud, MODEL, PRECISION, availability)
    cheapest = min(expected, key=expected.__getitem__)
    assert choice.spec["target"]["pricing"] == cheapest
    assert choice.monthly_usd == pytest.approx(expected[cheapest])
    assert choice.alternatives == pytest.approx(expected)
    assert choice.spec["availability"] == availability
    # the spec it writes costs what init said, within the budget it wrote (plan's gate passes)
    out = run_cli("init", tmp_path / "repo", "--cloud", cloud, "--availability", availability)
    assert out.code == 0, out.stderr
    written = tmp_path / "repo" / "selfhost.yaml"
    spec = load_spec(written)
    assert spec.availability == availability and spec.target.pricing == cheapest
    assert cost_review(spec).monthly_usd == pytest.approx(expected[cheapest])
    assert run_cli("plan", "--spec", written).code == 0
    # the header says why: the chosen pricing and every alternative's monthly figure
    header = [line for line in written.read_text().splitlines() if line.startswith("#")]
    why = next(line for line in header if line.startswith(f"# pricing {cheapest}:"))
    for pricing, usd in expected.items():
        assert f"{pricing} ${usd:,.2f}" in why, why
    reclaim = [line for line in header if "spot reclaim stops" in line]
    assert len(reclaim) == (1 if cheapest == "spot" and availability == "standard" else 0), header


def test_high_availability_costs_at_least_standard_and_keeps_two_replicas():
    for cloud in ("aws", "gcp"):
        standard = deployment_repo.choose(cloud, MODEL, PRECISION, "standard")
        high = deployment_repo.choose(cloud, MODEL, PRECISION, "high")
        assert high.monthly_usd >= standard.monthly_usd
        assert cost_review(spec_from_dict(high.spec)).fleet.min_replicas >= 2


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--cloud", "runpod", "--domain", "api.example.com"], ["--domain does not apply to --cloud runpod"]),
        (["--cloud", "sky", "--domain", "api.example.com"], ["--domain does not apply to --cloud sky"]),
        (["--cloud", "aws", "--domain", "not a name"], ["is not a DNS name", "--domain api.example.com"]),
        (["--cloud", "gcp", "--availability", "medium"], ["unknown --availability medium"]),
        (["--cloud", "runpod", "--availability", "high"], ["--availability high", "--cloud aws"]),
        (["--cloud", "sky", "--availability", "high"], ["--availability high", "--cloud aws"]),
    ],
)
def test_init_option_refusals_are_one_line_and_write_nothing(tmp_path, args, needles):
    one_line_error(run_cli("init", tmp_path / "repo", *args), *needles, "Fix:")
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_init_domain_gives_a_config_the_stack_serves_over_https(cloud, tmp_path, monkeypatch, capsys):
    """With --domain the scaffolded Pulumi.dev.yaml deploys behind HTTPS; without it the stack refuses in one
    line until the user sets a domain or opts in to plain HTTP (the README note says how)."""
    plain, tls = tmp_path / "plain", tmp_path / "tls"
    assert run_cli("init", plain, "--cloud", cloud).code == 0
    out = run_cli("init", tls, "--cloud", cloud, "--domain", "API.Example.com")
    assert out.code == 0, out.stderr
    config = yaml.safe_load((tls / "Pulumi.dev.yaml").read_text())["config"]
    assert config[f"selfhost-{cloud}:domain"] == "api.example.com"  # the stack's own normalisation
    assert f"selfhost-{cloud}:allowPlainHttp" not in config
    assert f"selfhost-{cloud}:domain" not in yaml.safe_load((plain / "Pulumi.dev.yaml").read_text())["config"]

    monkeypatch.chdir(tls)  # specFile is relative to the project folder, as under `pulumi up`
    assert preview.main([cloud, "Pulumi.dev.yaml"]) == 0, capsys.readouterr().err
    assert "endpointUrl: https://api.example.com" in capsys.readouterr().out
    monkeypatch.chdir(plain)
    assert preview.main([cloud, "Pulumi.dev.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no domain" in err[0] and "allowPlainHttp true" in err[0]


def test_tls_config_note_names_both_choices_for_the_tls_stacks_only():
    for cloud in ("aws", "gcp"):
        note = "\n".join(deployment_repo.tls_config_note(cloud))
        assert "pulumi config set domain" in note and "pulumi config set allowPlainHttp true" in note
        assert "api.example.com" in "\n".join(deployment_repo.tls_config_note(cloud, "api.example.com"))
    assert deployment_repo.tls_config_note("runpod") == deployment_repo.tls_config_note("sky") == []


def test_the_scaffold_keeps_the_shipped_transport_lines(tmp_path):
    """Without --domain, Pulumi.dev.yaml keeps the shipped commented domain and opt-in lines (nothing enabled)."""
    for cloud in ("aws", "gcp"):
        text = deployment_repo.stack_config_text(cloud, deployment_repo.choose(cloud, MODEL, PRECISION).offer)
        shipped = (ROOT / "stacks" / cloud / "Pulumi.dev.yaml").read_text()
        for line in shipped.splitlines():
            if f"selfhost-{cloud}:domain" in line or f"selfhost-{cloud}:allowPlainHttp" in line:
                assert line in text.splitlines() and line.lstrip().startswith("#")
