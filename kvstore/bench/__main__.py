"""``python -m kvstore.bench [OPTIONS]``: the same as ``kvstore bench``."""

from kvstore.bench import command

command(prog_name="python -m kvstore.bench")
