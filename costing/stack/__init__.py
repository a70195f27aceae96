"""Pulumi stacks (stacks/aws, stacks/gcp, stacks/runpod): plan.py is shared and Pulumi-free;
component.py holds the shared Pulumi component; aws.py, gcp.py, runpod.py hold what differs."""
