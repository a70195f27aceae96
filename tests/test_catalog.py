from __future__ import annotations

import pytest

from costing.data.catalog import apis_for, catalog, get_gpu, get_model, get_offer, offers_for
from costing.errors import UserError


def test_every_entry_has_a_source_and_an_as_of_date():
    cat = catalog()
    offers = [o for o in cat.offers.values() if not community_only_by_refresh(o)]
    entries = [*cat.models.values(), *cat.precisions.values(), *cat.gpus.values(), *offers, *cat.apis]
    for entry in entries:
        assert entry.source.strip(), entry
        assert len(entry.as_of) == 10 and entry.as_of[4] == "-", entry
    for cloud in cat.clouds.values():
        assert cloud["storage"] and cloud["as_of"]
        for rate in [*cloud["storage"].values(), *(cloud.get("bucket") or {}).values()]:
            assert rate["source"] and len(rate["as_of"]) == 10 and rate["usd_per_gb_month"] > 0
        for rule in cloud["discounts"].values():
            assert rule["source"] and 0 < rule["factor"] < 1


@pytest.mark.parametrize(
    "name",
    ["llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3.1-8B-Instruct", "LLAMA-3.1-8B"],
)
def test_short_and_hugging_face_ids_resolve_to_the_same_model(name):
    assert get_model(name).id == "llama-3.1-8b"


def test_unknown_names_are_refused_with_a_suggestion():
    with pytest.raises(UserError) as err:
        get_model("llama-3.1-9b")
    assert "llama-3.1-8b" in err.value.line()
    with pytest.raises(UserError, match="unknown GPU"):
        get_gpu("B200")
    with pytest.raises(UserError, match="unknown offer"):
        get_offer("aws-g6.xlarge")


def test_gpu_figures_match_the_datasheets_quoted_in_the_issue():
    expected = {
        "A40": (48, 696),
        "L4": (24, 300),
        "A10G": (24, 600),
        "A100": (40, 1555),
        "A100-80GB": (80, 2039),
        "H100": (80, 3350),
    }
    for name, (memory, bandwidth) in expected.items():
        gpu = get_gpu(name)
        assert (gpu.memory_gb, gpu.bandwidth_gbs) == (memory, bandwidth)
        assert 0.9 * gpu.memory_gb < gpu.usable_gib <= gpu.memory_gb  # nvidia-smi total vs datasheet GB


def test_offers_cover_the_clouds_and_shapes_of_the_issue():
    assert [o.gpus for o in offers_for(gpu="A40", cloud="runpod") if o.cloud_type == "SECURE"] == [1, 2, 4, 8]
    assert get_offer("aws-g5.48xlarge").gpus == 8 and get_offer("aws-p4d.24xlarge").gpu == "A100"
    assert get_offer("g2-standard-96").on_demand == pytest.approx(8.0033, abs=1e-4)
    assert get_offer("aws-p4d.24xlarge").on_demand == pytest.approx(21.96, abs=0.01)


def test_pricing_models_spot_and_reserved():
    g5 = get_offer("aws-g5.xlarge")
    spot, one, three = (g5.price(p) for p in ("spot", "reserved-1y", "reserved-3y"))
    # spot is the region's cheapest zone from the market snapshot, not a factor; reserved only from the snapshot
    zones = [r for r in g5.prices if r.pricing == "spot" and r.region == g5.region]
    assert not spot.derived and spot.usd_per_hour == min(r.usd_per_hour for r in zones) and spot.zone
    assert one is None and three is None  # no Price List reserved rows shipped: never on-demand x a factor
    g2 = get_offer("gcp-g2-standard-8")
    one, three = g2.price("reserved-1y"), g2.price("reserved-3y")
    assert one is not None and three is not None and not one.derived and "Billing Catalog" in one.source
    assert one.usd_per_hour == pytest.approx(0.53778) and three.usd_per_hour < one.usd_per_hour < g2.on_demand
    assert get_offer("runpod-a40x1-secure").price("spot") is None  # RunPod is removing interruptible pods


def test_apis_include_the_closed_models_for_every_llama():
    for model in catalog().models:
        labels = {a.label for a in apis_for(model)}
        assert {"openai/gpt-4o", "openai/gpt-4o-mini"} <= labels
    assert any(a.provider == "azure" and a.input == 2.68 and a.output == 3.54 for a in apis_for("llama-3.1-70b"))


def test_every_llama_has_an_open_model_api_and_70b_compares_with_deepinfra():
    # Dropping retired APIs (Fireworks' Llama 3.x, Groq's 3.2 previews) left each model an open-weights API.
    for model in catalog().models:
        assert [a for a in apis_for(model) if not a.closed], model
    labels = {a.label for a in apis_for("llama-3.3-70b")}
    assert "deepinfra/Llama-3.3-70B-Instruct-Turbo" in labels
    assert not [a for a in catalog().apis if a.provider == "fireworks"]


def community_only_by_refresh(offer):
    """RunPod Community Cloud: no dated 2026 source, so no shipped price; a refresh reads it from RunPod's API."""
    return offer.cloud_type == "COMMUNITY" and not offer.prices


def test_every_offer_is_priced_in_its_default_region_and_every_price_is_dated():
    for offer in catalog().offers.values():
        if community_only_by_refresh(offer):
            continue
        assert offer.region in offer.regions, offer.id
        for row in offer.prices:
            assert row.source and len(row.as_of) == 10 and row.usd_per_hour > 0, row


def test_no_reserved_or_committed_price_is_derived_from_a_discount_factor() -> None:
    """Reserved/committed prices come from the clouds' APIs (the snapshot) or not at all: never on-demand x a
    dated factor. An offer the snapshot has no such price for is refused with the refresh that reads it."""
    from costing.data.catalog import catalog, cloud_info
    from costing.data.resolve import price_of
    from costing.errors import UserError
    from costing.money.spend import COMMITTED_PRICING

    for cloud in ("aws", "gcp", "runpod"):
        assert not set(cloud_info(cloud)["discounts"]) & set(COMMITTED_PRICING)
    refused = 0
    for offer in catalog().offers.values():
        for region in offer.regions:
            for pricing in COMMITTED_PRICING:
                price = offer.price(pricing, region)
                if price is not None:
                    assert not price.derived and price.as_of, (offer.id, region, pricing)
                    continue
                refused += 1
                if offer.cloud != "runpod":
                    with pytest.raises(UserError, match="never derived from a discount factor"):
                        price_of(offer, pricing, region)
    assert refused  # the shipped snapshot has no AWS reserved rows: those offers are refused, not derived
