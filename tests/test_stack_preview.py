"""The documented offline runner: `python -m selfhost.stack.preview <cloud> <Pulumi.stack.yaml>`."""

from __future__ import annotations

import pytest
import yaml
from stack_mocks import ROOT

from selfhost.stack import preview


@pytest.mark.parametrize("cloud, count", [("aws", 20), ("gcp", 26), ("runpod", 3)])
def test_preview_runs_the_shipped_program_on_the_example_config(cloud, count, capsys):
    assert preview.main([cloud, str(ROOT / "stacks" / cloud / "Pulumi.dev.yaml")]) == 0
    out = capsys.readouterr().out
    assert f"{count} resources:" in out and "projectedMonthlyUsd:" in out and "endpointUrl:" in out


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
