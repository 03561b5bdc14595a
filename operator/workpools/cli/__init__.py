"""The `workpools` command line (`kubectl workpools`): `main.py` parses and runs verbs, `render.py` prints."""
