"""The shipped templates against the real SkyPilot 0.14: its parser, SkyServe's service checks and its
optimizer over a local catalog written from our offers (selfhost.skypilot.optimizer_catalog).

SkyPilot reads its catalogs from $HOME/.sky when it is imported, so SkyPilot runs in one child
process with a temporary HOME (this file run as a script); the tests assert on what it reports.
AWS credentials are configured against a moto server on 127.0.0.1 (started and stopped here):
SkyPilot then fetches the account's zone mapping and keeps only catalog rows whose zone ID the
account has, as it does for a real user. A second check compares our price snapshot with rows of
SkyPilot's published catalog (tests/data/skypilot_published_rows.csv, with their source and date).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

if __name__ == "__main__":  # run as SkyPilot's child process: this checkout's code, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from costing.errors import UserError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sky_stand_ins

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((ROOT / "templates").glob("*.yaml"))
SECRET_VALUES = {"HF_TOKEN": "hf-test-token", "VLLM_API_KEY": "key-test-123"}


def _skypilot_report(paths: list[str]) -> dict:
    """Child process: load, validate and optimize every template with SkyPilot itself."""
    import sky
    import yaml
    from sky import check, optimizer
    from sky.serve import serve_utils

    from costing.errors import UserError
    from selfhost.skypilot import launch

    # AWS has credentials (moto); GCP and RunPod none: enabled by hand, as SkyPilot's own tests do.
    enabled = [sky.AWS(), sky.GCP(), sky.RunPod()]
    check.get_cached_enabled_clouds_or_refresh = lambda *a, **k: enabled
    report: dict = {}
    from sky.catalog import aws_catalog

    aws_rows = aws_catalog._get_df()  # pylint: disable=protected-access  # zone IDs mapped with the credentials
    report["_aws_zones"] = sorted(set(aws_rows["AvailabilityZone"]))
    report["_aws_identity"] = sky.AWS.get_active_user_identity()
    from sky.catalog.data_fetchers import fetch_runpod

    report["_runpod_zones"] = {region: zones[0] for region, zones in fetch_runpod.REGION_ZONES.items()}
    for path in paths:
        entry: dict = {}
        report[Path(path).name] = entry
        try:
            plain = sky.Task.from_yaml(path)  # secrets left null: managed references, filled at launch
            entry["plain_secrets"] = sorted(r.name for r in plain._managed_secret_refs)  # pylint: disable=protected-access
            cfg = yaml.safe_load(Path(path).read_text())
            task = sky.Task.from_yaml_config(cfg, secrets_overrides=list(SECRET_VALUES.items()))
            if task.service is not None:
                serve_utils.validate_service_task(task, pool=False)
                svc = task.service
                entry["service"] = {
                    "headers": svc.readiness_headers,
                    "post_data": svc.post_data,
                    "path": svc.readiness_path,
                    "initial_delay": svc.initial_delay_seconds,
                    "timeout": svc.readiness_timeout_seconds,
                    "min": svc.min_replicas,
                    "max": svc.max_replicas,
                    "fallback": svc.use_ondemand_fallback,
                    "spot_placer": svc.spot_placer,
                    "tls": None
                    if svc.tls_credential is None
                    else [svc.tls_credential.keyfile, svc.tls_credential.certfile],
                }
                if svc.spot_placer:  # SpotHedge's own view of the locations and their prices
                    from sky.serve import spot_placer

                    placer = spot_placer.SpotPlacer.from_task(svc, task)
                    costs = []
                    for loc in placer.location2status:
                        placer._min_cost_location([loc])  # pylint: disable=protected-access  # fills location2cost
                        costs.append([loc.region, loc.zone, placer.location2cost[loc]])
                    entry["spot_locations"] = sorted(costs, key=lambda c: c[2])
            entry["num_nodes"] = task.num_nodes
            entry["resources"] = [
                {
                    "cloud": str(r.cloud),
                    "accelerators": r.accelerators,
                    "use_spot": r.use_spot,
                    "disk_size": r.disk_size,
                    "instance_type": r.instance_type,
                }
                for r in task.resources
            ]
            launch.validate_with_skypilot(Path(path).read_text(), task.service is not None)
            with sky.Dag() as dag:
                dag.add(task)
            optimizer.Optimizer.optimize(dag, quiet=True)
            best = task.best_resources
            entry["best"] = {
                "cloud": str(best.cloud),
                "instance_type": best.instance_type,
                "region": best.region,
                "use_spot": best.use_spot,
                "hourly_usd": best.get_cost(3600) * task.num_nodes,
            }
        except Exception as err:  # reported, and the test fails with SkyPilot's message
            entry["error"] = f"{type(err).__name__}: {err}"
    # The exact commands `selfhost launch sky` runs, parsed (not invoked) by SkyPilot's own CLI.
    from sky.client.cli import command as sky_cli

    for service in (False, True):
        cmd = launch.sky_command("c1", Path("t.yaml"), service, 45, True)
        click_cmd = sky_cli.serve_up if service else sky_cli.launch
        ctx = click_cmd.make_context(" ".join(cmd[: 3 if service else 2]), cmd[3 if service else 2 :])
        report[f"_cli_{'serve' if service else 'launch'}"] = {
            k: v for k, v in ctx.params.items() if v not in (None, False, (), [])
        }
    services = [p for p in paths if "service" in p]
    if services:  # the shipped set has services; a single task (e.g. from `selfhost init`) has none
        report["_probe_by_source"] = _probe_headers_by_secret_source(services[0])
    report["_weights_store"] = _weights_store_service()
    report["_plain_http"] = _plain_http_service()
    try:
        launch.validate_with_skypilot("name: x\nresources: {acceleratorz: A40:1}\nrun: echo\n", False)
        report["_bad_yaml"] = "accepted"
    except UserError as err:
        report["_bad_yaml"] = err.line()
    return report


def _weights_store_service() -> dict:
    """A service with a weights bucket, through SkyPilot's parser, SkyServe's checks and its optimizer."""
    import sky
    import yaml
    from sky import optimizer
    from sky.serve import serve_utils

    from costing.data.spec import load_spec
    from selfhost.skypilot import render

    spec = load_spec(ROOT / "templates/specs/llama-3.3-70b-aws-8xa100-spot-service.yaml")
    spec = spec.model_copy(update={"sky": spec.sky.model_copy(update={"weights_store": "s3://acme-weights/llama"})})
    text = render.render_yaml(spec)
    task = sky.Task.from_yaml_config(yaml.safe_load(text), secrets_overrides=list(SECRET_VALUES.items()))
    serve_utils.validate_service_task(task, pool=False)
    with sky.Dag() as dag:
        dag.add(task)
    optimizer.Optimizer.optimize(dag, quiet=True)
    mounts = {path: (st.source, st.mode.value) for path, st in task.storage_mounts.items()}
    return {"mounts": mounts, "delay": task.service.initial_delay_seconds, "best": task.best_resources.instance_type}


def _plain_http_service() -> dict:
    """A service opted in to plain HTTP (sky.allow_plain_http), through SkyPilot's parser and SkyServe's checks."""
    import sky
    import yaml
    from sky.serve import serve_utils

    from costing.data.spec import load_spec
    from selfhost.skypilot import render

    spec = load_spec(ROOT / "templates/specs/llama-3.1-8b-aws-a10g-spot-service.yaml")
    plain = spec.sky.model_copy(update={"tls_keyfile": None, "tls_certfile": None, "allow_plain_http": True})
    text = render.render_yaml(spec.model_copy(update={"sky": plain}))
    task = sky.Task.from_yaml_config(yaml.safe_load(text), secrets_overrides=list(SECRET_VALUES.items()))
    serve_utils.validate_service_task(task, pool=False)
    return {"tls": task.service.tls_credential is not None}


def _probe_headers_by_secret_source(path: str) -> dict:
    """The readiness headers SkyPilot's own `sky serve up` path builds, for each way the key reaches it.

    `env` and `file` run the exact command `selfhost launch sky` would run through SkyPilot's CLI
    parser and its task builder (`_generate_task_with_service`, which fills secrets into the service
    section); `store` loads the YAML with no secret values, then resolves the null secrets through
    SkyPilot's managed-secrets step (`execution._resolve_managed_secrets`) with a provider standing in
    for a secret store."""
    import inspect
    import stat
    import tempfile

    import sky
    from sky import execution
    from sky.client.cli import command as sky_cli
    from sky.server import plugins

    from selfhost.skypilot import launch

    def serve_up_task(cmd: list[str]) -> sky.Task:
        ctx = sky_cli.serve_up.make_context("sky serve up", cmd[3:])
        params = ctx.params
        sig = inspect.signature(sky_cli._generate_task_with_service)  # pylint: disable=protected-access
        kwargs = {
            k: params.get(k) if k in params else (None if v.default is inspect.Parameter.empty else v.default)
            for k, v in sig.parameters.items()
        }
        kwargs.update(
            service_name=params["service_name"],
            service_yaml_args=params["service_yaml"],
            not_supported_cmd="sky serve up",
            pool=False,
        )
        return sky_cli._generate_task_with_service(**kwargs)  # pylint: disable=protected-access

    out: dict = {}
    task = serve_up_task(launch.sky_command("svc", Path(path), True, 30, True, "env"))
    out["env"] = task.service.readiness_headers
    folder = Path(tempfile.mkdtemp())
    secret_file = folder / "secrets.env"
    secret_file.write_text("".join(f"{k}={v}-from-file\n" for k, v in SECRET_VALUES.items()))
    secret_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    launch.file_secrets(secret_file)  # selfhost's own checks pass on it
    task = serve_up_task(launch.sky_command("svc", Path(path), True, 30, True, "file", secret_file))
    out["file"] = task.service.readiness_headers

    class Store(plugins.ManagedSecretsProvider):
        async def resolve(self, refs, **_):
            return plugins.ResolvedSecrets(env_vars={r.name: SECRET_VALUES[r.name] + "-from-store" for r in refs})

    ctx = plugins.ExtensionContext()
    ctx._managed_secrets_provider = Store()  # pylint: disable=protected-access
    plugins._EXTENSION_CONTEXT = ctx  # pylint: disable=protected-access
    cmd = launch.sky_command("svc", Path(path), True, 30, True, "store")
    task = serve_up_task(cmd)
    with sky.Dag() as dag:
        dag.add(task)
    execution._resolve_managed_secrets(dag)  # pylint: disable=protected-access
    out["store"] = {"headers": task.service.readiness_headers, "env": task.envs.get("VLLM_API_KEY"), "cmd": cmd}
    return out


@pytest.fixture(scope="module")
def moto_aws():
    with sky_stand_ins.moto_aws() as aws:
        yield aws


@pytest.fixture(scope="module")
def skypilot(tmp_path_factory, moto_aws) -> dict:
    home = tmp_path_factory.mktemp("skyhome")
    from selfhost.skypilot.optimizer_catalog import write_catalog

    write_catalog(home)
    env = {**sky_stand_ins.sky_env(home, moto_aws), **SECRET_VALUES}
    out = subprocess.run(
        [sys.executable, __file__, *map(str, TEMPLATES)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_aws_catalog_goes_through_the_accounts_zone_mapping(skypilot):
    """With credentials SkyPilot maps zone IDs to the account's zone names; a catalog written with
    names (or IDs the account lacks) would lose every row here."""
    assert skypilot["_aws_identity"], "SkyPilot found no AWS identity: the optimizer ran without credentials"
    from costing.money.compare import cloud_regions

    zones, priced = skypilot["_aws_zones"], set(cloud_regions("aws"))
    assert zones and all(z[-1].isalpha() and z[:-1] in priced for z in zones), zones
    assert {z[:-1] for z in zones} == priced  # every region the snapshot prices kept its rows


def _ours(path: Path):
    from selfhost.skypilot.render import choices, embedded_spec

    spec = embedded_spec(path.read_text())
    return spec, choices(spec)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_template_loads_with_skypilots_parser(skypilot, path):
    entry = skypilot[path.name]
    assert "error" not in entry, entry.get("error")
    assert entry["plain_secrets"] == ["HF_TOKEN", "VLLM_API_KEY"]
    spec, found = _ours(path)
    assert entry["num_nodes"] == found[0].fit.nodes
    assert len(entry["resources"]) == len(found)
    for res in entry["resources"]:
        assert res["use_spot"] == (spec.target.pricing == "spot")
        assert res["disk_size"] >= max(c.fit.weight_gib for c in found)


@pytest.mark.parametrize("path", [p for p in TEMPLATES if "service" in p.stem], ids=lambda p: p.stem)
def test_service_passes_skyserve_validation_with_the_key_in_the_probe(skypilot, path):
    svc = skypilot[path.name]["service"]
    assert svc["headers"] == {"Authorization": f"Bearer {SECRET_VALUES['VLLM_API_KEY']}"}
    assert svc["path"] == "/v1/chat/completions" and svc["post_data"]["max_tokens"] == 1
    _, found = _ours(path)
    assert svc["post_data"]["model"] == found[0].fit.settings.served_model_name
    assert svc["initial_delay"] >= 600 and svc["timeout"] >= 15
    assert 1 <= svc["min"] <= svc["max"]
    assert svc["fallback"] == ("spot" in path.stem)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_skypilot_optimizer_picks_the_offer_the_cost_review_priced(skypilot, path):
    from costing.money.review import cost_review
    from selfhost.skypilot.render import cheapest

    best = skypilot[path.name]["best"]
    spec, found = _ours(path)
    chosen = cheapest(found)
    review = cost_review(chosen.spec, resolved=chosen.resolved)
    assert review.offer.id == chosen.offer.id
    assert (best["cloud"].lower(), best["instance_type"]) == (review.offer.cloud, review.offer.instance_type)
    assert best["use_spot"] == (spec.target.pricing == "spot")
    assert best["region"] == review.offer.price(spec.target.pricing, spec.target.region).region
    assert best["hourly_usd"] == pytest.approx(review.hourly_usd, abs=1e-6)


PUBLISHED = ROOT / "tests" / "data" / "skypilot_published_rows.csv"


def _published_rows() -> list[dict[str, str]]:
    lines = [ln for ln in PUBLISHED.read_text().splitlines() if not ln.startswith("#")]
    return list(csv.DictReader(lines))


def price_gaps(published: list[dict[str, str]]) -> list[str]:
    """Every difference between SkyPilot's published rows and our price snapshot, one line each."""
    from costing.data.catalog import catalog

    ours = {(o.cloud, o.instance_type): o for o in catalog().offers.values()}
    gaps = []
    for row in published:
        offer = ours.get((row["cloud"], row["InstanceType"]))
        where = f"{row['InstanceType']} {row['Region']} {row['AvailabilityZone']}"
        if offer is None or row["Region"] not in offer.regions:
            continue  # SkyPilot lists it; we do not ship it (in that region)
        if offer.gpu != row["AcceleratorName"] or offer.gpus != float(row["AcceleratorCount"]):
            published = f"{row['AcceleratorCount']}x {row['AcceleratorName']}"
            gaps.append(f"{where}: GPUs {offer.gpus}x {offer.gpu}, published {published}")
        od = offer.rows("on-demand", row["Region"])
        if not od or abs(od[0].usd_per_hour - float(row["Price"])) > 1e-6:
            gaps.append(f"{where}: on-demand ours {od[0].usd_per_hour if od else 'none'}, published {row['Price']}")
        # AWS quotes spot per zone (ID); GCP one spot price per region
        spot = [r for r in offer.rows("spot", row["Region"]) if r.zone in (row["AvailabilityZone"], None)]
        if row["SpotPrice"] and (not spot or abs(spot[0].usd_per_hour - float(row["SpotPrice"])) > 1e-6):
            gaps.append(f"{where}: spot ours {spot[0].usd_per_hour if spot else 'none'}, published {row['SpotPrice']}")
    return gaps


def test_published_rows_file_names_its_source_and_date():
    head = " ".join(line for line in PUBLISHED.read_text().splitlines() if line.startswith("#"))
    assert "skypilot-catalog" in head and "2026-11-30" in head
    assert "aws/vms.csv at commit 00148f2" in head and "gcp/vms.csv at commit 006059e" in head


def test_our_prices_match_skypilots_published_rows():
    published = _published_rows()
    assert {r["InstanceType"] for r in published} >= {"p4d.24xlarge", "p4de.24xlarge", "a2-ultragpu-8g"}
    assert price_gaps(published) == []


def test_a_price_gap_is_reported_with_both_figures():
    row = {**_published_rows()[1], "Price": "99.0", "SpotPrice": "0.1"}
    gaps = price_gaps([row])
    assert len(gaps) == 2 and "published 99.0" in gaps[0] and "published 0.1" in gaps[1]


@pytest.mark.parametrize("path", [p for p in TEMPLATES if "spot-service" in p.stem], ids=lambda p: p.stem)
def test_spothedge_spot_replicas_are_priced_at_skypilots_zone_prices(skypilot, path):
    """SkyPilot's SpotHedge places spot replicas one per zone, cheapest first: the review's spot lines are
    the mean of SkyPilot's own zone prices for those replicas (any_of services run without it)."""
    from costing.money.review import cost_review
    from selfhost.skypilot.render import cheapest

    entry = skypilot[path.name]
    _spec, found = _ours(path)
    if len(found) > 1:
        assert entry["service"]["spot_placer"] is None
        return
    assert entry["service"]["spot_placer"] == "dynamic_fallback"
    review = cost_review(cheapest(found).spec, resolved=cheapest(found).resolved)
    locations = entry["spot_locations"]
    assert {loc[0] for loc in locations} == {review.resolved.price.region}  # the region the review priced
    zone_prices = [loc[2] * found[0].fit.nodes for loc in locations]
    spot_lines = [line for line in review.cost_lines if line.pricing == "spot"]
    first = 0
    for line in spot_lines:
        n = round(line.replicas)
        expected = sum(zone_prices[i % len(zone_prices)] for i in range(first, first + n)) / n
        assert line.usd_per_hour == pytest.approx(expected, abs=1e-6), line
        first += n


@pytest.mark.parametrize("path", [p for p in TEMPLATES if "spot-service" in p.stem], ids=lambda p: p.stem)
def test_spothedge_spreads_only_over_zones_that_sell_the_type(skypilot, path):
    """SpotHedge's locations (SkyPilot's own, from the offline catalog) are zones that sell the chosen type, as
    SkyPilot's published rows list them (costing/data/zones.yaml), and more than one where the type has more."""
    from selfhost.skypilot.optimizer_catalog import type_zones
    from selfhost.skypilot.render import cheapest

    entry = skypilot[path.name]
    _spec, found = _ours(path)
    if len(found) > 1:
        return  # any_of services run without SpotHedge (checked above)
    offer = cheapest(found).offer
    locations = entry["spot_locations"]
    regions = {loc[0] for loc in locations}
    (region,) = regions
    selling = type_zones()[offer.cloud][offer.instance_type][region]
    if offer.cloud == "gcp":  # zone names, as the catalog holds them
        assert sorted(loc[1] for loc in locations) == sorted(selling)
    else:  # AWS: SkyPilot shows the account's zone names; each carries a spot price quoted in a selling zone ID
        quoted = {r.usd_per_hour for r in offer.rows("spot", region) if r.zone in selling}
        assert 1 < len(locations) <= len(selling)
        assert all(any(loc[2] == pytest.approx(q) for q in quoted) for loc in locations), (locations, quoted)


def test_skypilot_cli_accepts_the_launch_commands(skypilot):
    dev, svc = skypilot["_cli_launch"], skypilot["_cli_serve"]
    assert dev["cluster"] == "c1" and dev["entrypoint"] == ["t.yaml"]
    assert (dev["idle_minutes_to_autostop"], dev["down"], dev["wait_for"]) == (45, True, "none")
    assert dev["secret"] == [list(kv) for kv in SECRET_VALUES.items()]  # read from the environment by name
    assert svc["service_name"] == "c1" and svc["service_yaml"] == ["t.yaml"] and svc["yes"] is True
    assert svc["secret"] == dev["secret"]


def test_probe_key_from_the_environment_or_a_secret_file_reaches_the_probe(skypilot):
    by_source = skypilot["_probe_by_source"]
    key = SECRET_VALUES["VLLM_API_KEY"]
    assert by_source["env"] == {"Authorization": f"Bearer {key}"}
    assert by_source["file"] == {"Authorization": f"Bearer {key}-from-file"}


def test_probe_key_from_skypilots_secret_store_stays_literal_so_selfhost_refuses_it(skypilot):
    """Why `--secrets-from-store` is refused for services: SkyPilot resolves the stored key into the task's
    environment, after the probe headers were filled in."""
    from selfhost.skypilot import launch

    store = skypilot["_probe_by_source"]["store"]
    assert store["env"] == SECRET_VALUES["VLLM_API_KEY"] + "-from-store"  # the server gets the key ...
    assert store["headers"] == {"Authorization": "Bearer $VLLM_API_KEY"}  # ... the probe does not
    assert "--secret" not in store["cmd"]
    with pytest.raises(UserError, match="literal 'Bearer \\$VLLM_API_KEY'"):
        launch.check_secret_source("store", True, None)


@pytest.mark.parametrize("path", [p for p in TEMPLATES if "service" in p.stem], ids=lambda p: p.stem)
def test_service_serves_https_with_the_specs_certificate(skypilot, path):
    """SkyPilot's own parser reads the rendered service.tls: SkyServe's load balancer serves HTTPS with it."""
    spec, _ = _ours(path)
    assert skypilot[path.name]["service"]["tls"] == [spec.sky.tls_keyfile, spec.sky.tls_certfile]
    assert spec.sky.tls_keyfile and spec.sky.tls_certfile


def test_a_plain_http_service_is_only_rendered_when_opted_in(skypilot):
    assert skypilot["_plain_http"] == {"tls": False}


def test_weights_bucket_mount_is_what_skypilot_mounts(skypilot):
    store = skypilot["_weights_store"]
    assert store["mounts"] == {"/weights": ["s3://acme-weights/llama", "MOUNT_CACHED"]}
    assert store["best"] == "p4d.24xlarge" and store["delay"] < 2040  # 70B from Hugging Face: 2,040 s


def test_runpod_zones_are_skypilots_data_centres(skypilot):
    from selfhost.skypilot.optimizer_catalog import RUNPOD_ZONES

    assert {r: skypilot["_runpod_zones"].get(r) for r in RUNPOD_ZONES} == RUNPOD_ZONES


def test_launch_validation_reports_skypilots_rejection(skypilot):
    assert skypilot["_bad_yaml"].startswith("error: SkyPilot rejects the rendered YAML")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    result = _skypilot_report(sys.argv[1:])
    print(json.dumps(result, default=str))
