"""The pure core: every rule of the product, as functions over plain data.

Lives here: priority resolution, run selection, slot accounting, the run state machine,
liveness, status derivation and the events that transitions produce.
Must not live here: I/O of any kind, clock reads (`now` is always a parameter), kopf,
the kubernetes client, asyncio.
"""
