"""Global names and config values (issue 24): bucket names that two accounts, projects or stacks can never share
and no one can guess first; every config value checked before the first resource is declared.

The real stack programs run under Pulumi's mocks; the mocks answer the account (getCallerIdentity) and project
(getProject) look-ups with the ids a test gives, and RandomId with placeholder bytes (the provider's stand-in).
"""

from __future__ import annotations

import re

import pulumi
import pytest
from stack_mocks import Recorder, program, refused

from costing.errors import UserError
from selfhost.stack.checks import digest, global_bucket_name
from selfhost.stack.preview import engine_config, run_program

BASE = {
    "model": "llama-3.1-8b",
    "requestsPerDay": "3000",
    "inputTokens": "1000",
    "outputTokens": "250",
    "apiKey": "sk-test-key-0123456789",
    "hfToken": "hf_test_token",
    "allowedCidrs": ["203.0.113.0/24"],
}
CONFIGS = {
    "aws": {**BASE, "instanceType": "g5.xlarge", "allowPlainHttp": "true", "aws:region": "us-east-1"},
    "gcp": {**BASE, "machineType": "g2-standard-8", "allowPlainHttp": "true", "gcp:region": "us-central1"},
    "runpod": {**{k: v for k, v in BASE.items() if k != "allowedCidrs"}, "gpu": "A40"},
}
BUCKET = {"aws": ("aws:s3/bucket:Bucket", "bucket"), "gcp": ("gcp:storage/bucket:Bucket", "name")}
# S3 (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html) and Cloud Storage
# (cloud.google.com/storage/docs/buckets#naming) rules, the narrower of the two where they differ.
BUCKET_RULE = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


def bucket_name(cloud: str, *, account: str, stack: str = "dev", name: str | None = None) -> tuple[str, Recorder]:
    config = dict(CONFIGS[cloud], **({"name": name} if name else {}))
    engine, secret_keys = engine_config(cloud, config)
    mocks = Recorder(account=account, project=account)
    run_program(program(cloud), f"selfhost-{cloud}", engine, secret_keys, mocks, stack=stack)
    typ, field = BUCKET[cloud]
    return mocks.one(typ)[field], mocks


def parts(name: str) -> tuple[str, str, str]:
    """(head, account+scope digest, random suffix) of `<head>-<digest>-<suffix>-weights`."""
    m = re.fullmatch(r"(.+)-([0-9a-f]{8})-([0-9a-f]{8,16})-weights", name)
    assert m, name
    return m.group(1), m.group(2), m.group(3)


@pytest.mark.parametrize("cloud", sorted(BUCKET))
def test_bucket_names_differ_per_account_and_per_stack_and_carry_the_state_kept_suffix(cloud):
    one, mocks = bucket_name(cloud, account="111111111111" if cloud == "aws" else "team-one-123")
    other, _ = bucket_name(cloud, account="222222222222" if cloud == "aws" else "team-two-456")
    prod, _ = bucket_name(cloud, account="111111111111" if cloud == "aws" else "team-one-123", stack="prod")
    # the account (project) and the stack each change the digest, not only the random bytes
    assert len({parts(n)[1] for n in (one, other, prod)}) == 3
    assert "111111111111" not in one and "team-one" not in one  # the id itself is never in a public name
    suffix = [inputs for typ, _, inputs in mocks.resources if typ == "random:index/randomId:RandomId"]
    assert len(suffix) == 1 and suffix[0]["byteLength"] >= 4  # random bytes kept in the stack's state
    assert parts(one)[2] != "" and one.endswith("-weights")
    for name in (one, other, prod):
        assert BUCKET_RULE.fullmatch(name) and "google" not in name and not name.startswith(("goog", "xn--"))


def test_bucket_names_keep_within_the_rules_for_any_spec_name():
    scope = "selfhost-aws/dev/x"
    for base in ("x", "9lives", "Google-Goog-LLM", "a" * 200, "xn--punycode", "sthree-x", "--", "Ünïcode ✓"):
        name = global_bucket_name(base, scope, "123456789012", "0a1b2c3d")
        assert BUCKET_RULE.fullmatch(name) and len(name) <= 63, name
        assert "goog" not in name and not name.startswith(("xn--", "sthree")), name
    assert global_bucket_name("x", scope, "1", "0a1b2c3d") != global_bucket_name("x", scope, "2", "0a1b2c3d")
    assert digest("1", scope) != digest("2", scope)
    with pytest.raises(UserError):
        global_bucket_name("x", scope, "", "0a1b2c3d")  # no account: never a name two accounts could share
    with pytest.raises(UserError):
        global_bucket_name("x", scope, "1", "not-hex")


BAD = [
    ("aws", {"amiId": "ami-12345"}, "amiId"),
    ("aws", {"amiId": "ami-0123456789abcdef0; reboot"}, "amiId"),
    ("aws", {"refreshAmi": "maybe"}, "refreshAmi"),
    ("aws", {"checkQuota": "perhaps"}, "checkQuota"),
    ("aws", {"reserveCapacity": "sometimes"}, "reserveCapacity"),
    ("aws", {"availabilityZone": "us-east-1"}, "availabilityZone"),
    ("aws", {"availabilityZone": "us-west-2a", "region": "us-east-1"}, "not in the stack's region"),
    ("aws", {"vpcId": "vpc-xyz"}, "vpcId"),
    ("aws", {"subnetIds": ["subnet-0123456789abcdef0", "subnet-$(id)"]}, "subnetIds"),
    ("aws", {"amiOs": "windows"}, "amiOs"),
    ("aws", {"allowPlainHttp": "kinda"}, "allowPlainHttp"),
    ("gcp", {"imageFamily": "Common_CU124"}, "imageFamily"),
    ("gcp", {"imageFamily": "family/../../x"}, "imageFamily"),
    ("gcp", {"imageProject": "x"}, "imageProject"),
    ("gcp", {"imageProject": "deeplearning-platform-release/global"}, "imageProject"),
    ("gcp", {"reservationOwned": "y e s"}, "reservationOwned"),
    ("gcp", {"zones": ["us-central1-a", "us-central1-;reboot"]}, "zones"),
]
WEAK_KEYS = {
    "short": "sk-short-1",
    "one-char": "k" * 40,
    "space": "sk live 0123456789abcdef",
    "newline": "sk-live-0123456789abcdef\n",
    "non-ascii": "sk-live-0123456789abcdé",
}


@pytest.mark.parametrize(
    "cloud, extra, words", BAD, ids=[f"{c}-{next(iter(e))}-{i}" for i, (c, e, _) in enumerate(BAD)]
)
def test_bad_config_values_are_refused_with_nothing_declared(cloud, extra, words):
    mocks, err = refused(cloud, {**CONFIGS[cloud], **extra})
    assert isinstance(err, UserError) and words in str(err), str(err)
    assert mocks.resources == []  # refused before the first resource


@pytest.mark.parametrize("key", list(WEAK_KEYS.values()), ids=list(WEAK_KEYS))
@pytest.mark.parametrize("cloud", sorted(CONFIGS))
def test_a_weak_api_key_is_refused_at_preview_and_never_printed(cloud, key):
    mocks, err = refused(cloud, {**CONFIGS[cloud], "apiKey": key})
    assert isinstance(err, UserError) and "apiKey" in str(err) and "openssl rand" in err.fix
    assert key.strip() not in str(err)
    assert mocks.resources == []


def test_the_key_rule_is_the_auth_layers_own():
    """The stack's check is selfhost.auth_middleware.key_problem: a key it accepts deploys, whatever else."""
    from selfhost.auth_middleware import key_problem

    for key in [*WEAK_KEYS.values(), "sk-test-key-0123456789"]:
        engine, secret_keys = engine_config("runpod", {**CONFIGS["runpod"], "apiKey": key})
        try:
            run_program(program("runpod"), "selfhost-runpod", engine, secret_keys, Recorder())
            accepted = True
        except pulumi.RunError:
            accepted = False
        assert accepted is (key_problem(key) is None), key


@pytest.mark.parametrize("cloud", sorted(BUCKET))
def test_an_unknown_account_is_refused_before_anything_is_declared(cloud):
    engine, secret_keys = engine_config(cloud, CONFIGS[cloud])
    mocks = Recorder(account="", project="")
    with pytest.raises(pulumi.RunError) as err:
        run_program(program(cloud), f"selfhost-{cloud}", engine, secret_keys, mocks)
    assert "account/project id is unknown" in str(err.value) and mocks.resources == []
