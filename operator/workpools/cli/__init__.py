"""The `workpools` command line (`kubectl workpools`).

`main.py` parses (importing nothing heavy), `commands.py` runs the verbs, `render.py` prints.
"""
