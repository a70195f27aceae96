"""The library behind stacks/<cloud>/__main__.py: config → costed plan (plan.py, Pulumi-free), the shared
VllmEndpoint component (component.py), the boot script (boot_script.py), what each cloud's program needs
from config (aws_config.py, gcp_config.py, runpod_config.py) and the offline preview under mocks."""
