"""The `localcode` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_LAB_SPEC = Path("inventory/lab.yaml")


def _lab(args: argparse.Namespace) -> int:
    from .lab import fleet
    from .lab.spec import LabSpecError, load_spec

    try:
        spec = load_spec(args.spec)
    except LabSpecError as exc:
        if args.action == "up" or args.name is None:
            print(exc, file=sys.stderr)
            return 2
        spec = None
    name = args.name or spec.name
    try:
        if args.action == "up":
            fleet.up(spec, args.spec)
            _print_status(fleet.status(name))
        elif args.action == "down":
            fleet.down(name)
        else:
            rows = fleet.status(name)
            if not rows:
                print(f"lab {name!r} is not up")
                return 1
            _print_status(rows)
    except fleet.LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_status(rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localcode", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    lab = commands.add_parser("lab", help="the test fleet: real SSH and systemd on this machine")
    lab.add_argument("action", choices=("up", "down", "status"))
    lab.add_argument("--spec", type=Path, default=DEFAULT_LAB_SPEC, help="lab file (default: %(default)s)")
    lab.add_argument("--name", help="lab name (default: the name in the lab file)")
    lab.set_defaults(handler=_lab)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
