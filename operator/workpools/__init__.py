"""Kubernetes-native work pools: Prefect's work-pool model as custom resources."""
