"""``python -m vdevperf.lab ARGS`` is ``vdevperf lab ARGS``, with cli.main's errors and signal handling."""

from __future__ import annotations

import sys

from vdevperf import cli
from vdevperf.lab.command import add_parser, cmd_lab


def main(argv: list[str] | None = None) -> int:
    """Run the lab command alone (also before cli.py dispatches ``lab`` itself)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "lab" in cli.COMMANDS:
        return cli.main(["lab", *argv])
    cli.COMMANDS["lab"] = cmd_lab
    build = cli.parser

    def parser():  # the cli parser plus the lab subcommand
        top = build()
        sub = next(a for a in top._actions if a.dest == "command")
        add_parser(sub)
        return top

    cli.parser = parser
    return cli.main(["lab", *argv])


if __name__ == "__main__":
    sys.exit(main())
