"""Command line: ``python -m fastio info [--json]``, ``python -m fastio bench [options]``
(``python -m fastio bench --help``), ``python -m fastio serve MODEL [--port P | --unix PATH]``."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        # Its own parser (fastio._bench.build_parser), so its --help and errors are its own.
        from fastio._bench import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m fastio", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="backend, Python, kernel and which interfaces work here")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    commands.add_parser("bench", add_help=False,
                        help="measure the IO models side by side here (python -m fastio bench --help)")
    serve = commands.add_parser("serve", help="run one IO model's echo server for outside clients")
    from fastio import _serve

    _serve.add_arguments(serve)
    args = parser.parse_args(argv)

    if args.command == "info":
        from fastio import _info

        report = _info.collect()
        print(json.dumps(report, indent=2) if args.json else _info.format_text(report))
    elif args.command == "serve":
        return _serve.main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
