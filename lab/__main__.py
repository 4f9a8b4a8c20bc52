"""`python -m lab`: the test fleet (real SSH and systemd on this machine) and its internet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from localcode.report import text_table

from . import fleet
from .spec import LabSpecError, load_spec

DEFAULT_LAB_SPEC = Path("inventory/lab.yaml")


def run(args: argparse.Namespace) -> int:
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
            print_status(fleet.status(name))
        elif args.action == "down":
            fleet.down(name)
        elif args.action == "bundle":
            from .internet import build_bundle
            from .state import load_state

            state = load_state(name)
            if state is None or not state.data.get("ready"):
                print(f"lab {name!r} is not up", file=sys.stderr)
                return 1
            build_bundle(state)
        else:
            rows = fleet.status(name)
            if not rows:
                print(f"lab {name!r} is not up")
                return 1
            print_status(rows)
    except fleet.LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def print_status(rows: list[dict[str, object]]) -> None:
    if rows:
        columns = list(rows[0])
        print(text_table([c.upper() for c in columns], [[str(r[c]) for c in columns] for r in rows]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("action", choices=("up", "down", "status", "bundle"),
                        help="bundle: build the lab's bundle (for air-gapped and mirror hosts) from its internet")
    parser.add_argument("--spec", type=Path, default=DEFAULT_LAB_SPEC, help="lab file (default: %(default)s)")
    parser.add_argument("--name", help="lab name (default: the name in the lab file)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
