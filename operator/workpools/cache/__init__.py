"""In-memory state of the cluster, fed by the controllers' watch handlers and read by reconcilers.

Lives here: the store of pools, queues, workers and runs (parsed models, grouped by pool) and the
per-pool serial runner that re-reconciles a pool whenever anything about it changes.
Must not live here: decisions (those are `core/`), API calls, kopf.
"""
