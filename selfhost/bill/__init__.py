"""`selfhost bill`: price what a deployment declares (a `pulumi preview --json` document or a SkyPilot task)."""
