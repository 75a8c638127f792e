"""Applications: the `lipopt` subcommands beyond `methods` and `bound`.

Each module defines `cli_configure(parser)` and `cli_run(args) -> int` and may print; it is
the only layer besides `cli.py` that does. They sit above the harness and the methods and
import from every layer below.
"""
