"""Command line: ``python -m fastio info [--json]``."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastio", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="backend, Python, kernel and which interfaces work here")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    if args.command == "info":
        from fastio import _info

        report = _info.collect()
        print(json.dumps(report, indent=2) if args.json else _info.format_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
