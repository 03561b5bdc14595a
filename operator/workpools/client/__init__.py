"""The client library: typed, async access to pools, queues, workers and runs.

`transport.py` is the only module that imports the kubernetes client; everything above it
speaks our models and our errors (`errors.py`).
"""
