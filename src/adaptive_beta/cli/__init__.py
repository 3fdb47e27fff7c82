"""The `abeta` command line: a thin layer that composes `models`, `training` and `serving`.

One module per command group; `main.py` wires them into one Typer app.
"""
