"""The API models: the single source of truth for the CRD schemas, the operator and the client.

Pydantic v2 models for WorkPool, WorkQueue, Worker and FlowRun (group `workpools.dev`,
version `v1alpha1`), their condition vocabulary, and the generator that writes `crds/`.
No I/O here beyond the generator's file writes.
"""
