"""The reference worker (`workpools worker start`): heartbeats, watches the runs bound to it and
executes them as child processes. Depends on the client and the API models only."""
