"""The documented offline runner: `python -m selfhost.stack.preview <cloud> <Pulumi.stack.yaml>`."""

from __future__ import annotations

import pytest
import yaml
from stack_mocks import ROOT

from selfhost.stack import preview


def stack_copy(tmp_path, cloud: str, **config) -> str:
    """The shipped program and example config in a folder of their own, with `config` keys laid over it
    (None removes one)."""
    stack_dir = tmp_path / cloud
    stack_dir.mkdir()
    (stack_dir / "__main__.py").write_text((ROOT / "stacks" / cloud / "__main__.py").read_text())
    data = yaml.safe_load((ROOT / "stacks" / cloud / "Pulumi.dev.yaml").read_text())
    for key, value in config.items():
        data["config"].pop(f"selfhost-{cloud}:{key}", None)
        if value is not None:
            data["config"][f"selfhost-{cloud}:{key}"] = value
    (stack_dir / "Pulumi.dev.yaml").write_text(yaml.safe_dump(data))
    return str(stack_dir / "Pulumi.dev.yaml")


@pytest.mark.parametrize("cloud, count", [("aws", 21), ("gcp", 28), ("runpod", 3)])
def test_preview_runs_the_shipped_program_on_the_example_config(cloud, count, capsys, tmp_path):
    # aws/gcp: the shipped config sets no transport (see the test below); the documented opt-in here
    path = stack_copy(tmp_path, cloud, allowPlainHttp="true") if cloud != "runpod" else None
    assert preview.main([cloud, path or str(ROOT / "stacks" / cloud / "Pulumi.dev.yaml")]) == 0
    out = capsys.readouterr().out
    assert f"{count} resources:" in out and "projectedMonthlyUsd:" in out and "endpointUrl:" in out


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_the_shipped_config_is_refused_without_tls_and_runs_once_a_domain_is_set(cloud, capsys, tmp_path):
    """As shipped, `pulumi up` of stacks/<cloud>/Pulumi.dev.yaml refuses to send the API key in clear: one line
    naming both fixes. With a domain (gcp: reachable by the certificate authority, as the config's comment
    says) the same config deploys behind HTTPS."""
    shipped = (ROOT / "stacks" / cloud / "Pulumi.dev.yaml").read_text()
    config = yaml.safe_load(shipped)["config"]
    assert f"selfhost-{cloud}:allowPlainHttp" not in config and f"selfhost-{cloud}:domain" not in config
    assert f"# selfhost-{cloud}:domain: api.example.com" in shipped  # the line to fill, commented
    assert preview.main([cloud, str(ROOT / "stacks" / cloud / "Pulumi.dev.yaml")]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no domain: the endpoint would serve plain HTTP"), err
    assert "pulumi config set domain" in err[0] and "allowPlainHttp true" in err[0]
    assert "resources:" not in captured.out  # nothing declared
    open_cidrs = {"allowedCidrs": ["0.0.0.0/0"]} if cloud == "gcp" else {}
    assert preview.main([cloud, stack_copy(tmp_path, cloud, domain="api.example.com", **open_cidrs)]) == 0
    out = capsys.readouterr().out
    assert "endpointUrl: https://api.example.com" in out and "transport: https (certificate for api.example.com)" in out


def test_preview_refusal_is_one_line_and_exit_2(tmp_path, capsys):
    stack_dir = tmp_path / "runpod"
    stack_dir.mkdir()
    (stack_dir / "__main__.py").write_text((ROOT / "stacks" / "runpod" / "__main__.py").read_text())
    config = yaml.safe_load((ROOT / "stacks" / "runpod" / "Pulumi.dev.yaml").read_text())
    config["config"]["selfhost-runpod:maxMonthlyUsd"] = "200"
    (stack_dir / "Pulumi.dev.yaml").write_text(yaml.safe_dump(config))
    assert preview.main(["runpod", str(stack_dir / "Pulumi.dev.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: projected ") and "exceeds the budget of $200.00" in err[-1] and "Fix:" in err[-1]


def test_preview_usage_is_exit_2(capsys):
    assert preview.main(["azure", "x.yaml"]) == 2
    assert "usage:" in capsys.readouterr().err
