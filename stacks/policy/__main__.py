"""selfhost's policy pack: `pulumi preview --policy-pack stacks/policy` (from a stack folder: ../policy).

The rules live in selfhost.stack.policies, where the tests run them over what each stack declares.
To let the internet reach the API port (allowedCidrs 0.0.0.0/0 with an API key, or a domain's HTTPS),
say so to the pack too: `--policy-pack-config policy-config.json` with
{"no-open-ingress": {"openApiPorts": [443]}}.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from selfhost.stack.policies import POLICIES

PolicyPack(name="selfhost", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
