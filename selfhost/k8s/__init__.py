"""The kit on a team's Kubernetes cluster (EKS, GKE): manifests from the costed spec (manifests.build)."""
