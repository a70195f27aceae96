"""`selfhost aws-preflight`: before `pulumi up` on AWS, look up what the stack will use.

The GPU AMI from AWS's public SSM parameter, the live spot price against the catalog's, and the EC2
GPU vCPU quota. boto3 is imported only inside the command (through selfhost.aws.api).
"""

from __future__ import annotations

import json

import typer

from costing.errors import UserError


def preflight(offer_id: str, pricing: str, region: str | None, os_name: str) -> dict:
    from costing.data.catalog import check_pricing, get_offer
    from selfhost.aws import api as aws

    offer = get_offer(offer_id)
    if offer.cloud != "aws":
        raise UserError(
            f"offer {offer.id} is on {offer.cloud}, not AWS", "pass an aws-* offer (see `selfhost compare --cloud aws`)"
        )
    check_pricing(pricing)
    region = region or offer.region
    ami = aws.gpu_ami_id(region, os_name)
    spot = aws.spot_price(offer.instance_type, region)
    priced = region in offer.regions  # the snapshot's price for this region, if it has one
    catalog_spot = offer.price("spot", region) if priced else None
    catalog_on_demand = offer.price("on-demand", region) if priced else None
    try:
        quota = aws.check_gpu_quota(offer.instance_type, offer.vcpus, region, pricing)
        quota_out = {
            "code": quota.code,
            "name": quota.name,
            "vcpus_allowed": quota.vcpus_allowed,
            "vcpus_needed": quota.vcpus_needed,
            "enough": True,
        }
    except UserError as err:
        if "allows" in err.problem:  # a real shortfall: stop here
            raise
        quota_out = {"enough": None, "unknown": err.line()}  # unreadable: say which quota to check
    return {
        "offer": offer.id,
        "instance_type": offer.instance_type,
        "region": region,
        "pricing": pricing,
        "ami_id": ami,
        "ami_parameter": aws.ami_parameter(os_name),
        "spot_usd_per_hour_live": spot.usd_per_hour,
        "spot_zone": spot.zone,
        "spot_by_zone": spot.by_zone,
        "spot_usd_per_hour_catalog": catalog_spot.usd_per_hour if catalog_spot else None,
        "spot_catalog_source": catalog_spot.source if catalog_spot else None,
        "on_demand_usd_per_hour": catalog_on_demand.usd_per_hour if catalog_on_demand else None,
        "quota": quota_out,
    }


def register(app: typer.Typer) -> None:
    @app.command("aws-preflight")
    def aws_preflight(
        offer: str = typer.Option(..., "--offer", help="an aws-* offer, e.g. aws-g5.xlarge"),
        pricing: str = typer.Option("on-demand", "--pricing", help="on-demand | spot | reserved-1y | reserved-3y"),
        region: str | None = typer.Option(None, "--region", help="default: the offer's region"),
        os_name: str = typer.Option("ubuntu-22.04", "--os", help="GPU AMI flavour: ubuntu-22.04 | amazon-linux-2023"),
        fmt: str = typer.Option("table", "--format", help="table | json"),
    ) -> None:
        """AWS before `pulumi up`: GPU AMI, live spot price vs the catalog's, and the GPU vCPU quota."""
        if fmt not in ("table", "json"):
            raise UserError(f"unknown format '{fmt}'", "use --format table or json")
        out = preflight(offer, pricing, region, os_name)
        if fmt == "json":
            typer.echo(json.dumps(out, indent=2, default=str))
            return
        typer.echo(f"{out['offer']} ({out['instance_type']}) in {out['region']}, {out['pricing']}")
        typer.echo(f"  GPU AMI        {out['ami_id']}  ({out['ami_parameter']})")
        cat, od = out["spot_usd_per_hour_catalog"], out["on_demand_usd_per_hour"]
        snapshot = (
            f"snapshot: ${cat:.4f}/h, {out['spot_catalog_source']}; on-demand ${od:.3f}/h"
            if cat is not None and od is not None
            else f"no snapshot price for {out['region']}"
        )
        typer.echo(f"  spot now       ${out['spot_usd_per_hour_live']:.4f}/h in {out['spot_zone']} ({snapshot})")
        q = out["quota"]
        if q["enough"]:
            typer.echo(
                f"  quota          {q['code']} ({q['name']}): {q['vcpus_allowed']:g} vCPUs allowed, "
                f"{q['vcpus_needed']} needed: ok"
            )
        else:
            typer.echo(f"  quota          unknown: {q['unknown']}")
