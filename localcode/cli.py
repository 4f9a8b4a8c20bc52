"""The `localcode` command."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # pyinfra runs on gevent: patch before anything imports ssl (requests)

import argparse  # noqa: E402
import json
import sys
from pathlib import Path
from typing import Callable


def _plan(args: argparse.Namespace) -> int:
    from . import plan
    from .settings import ConfigError, validate_host_data
    from .sizing import GiB, Gpu, Hardware

    if args.inventory:
        from .gather import gather_fleet

        try:
            _, plans = gather_fleet(args.inventory)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(plan.as_json(plans) if args.json else plan.table(plans))
        return 1 if any(p.error for p in plans) else 0
    if args.ram_gib is None:
        print("error: give an inventory, or a what-if machine with --ram-gib", file=sys.stderr)
        return 2
    gpus = tuple(Gpu("nvidia", int(g * GiB)) for g in args.nvidia_gib) + tuple(
        Gpu("amd", int(g * GiB)) for g in args.amd_gib)
    if args.cpu_only and (gpus or args.apple):
        print("error: --cpu-only excludes --apple, --nvidia-gib and --amd-gib", file=sys.stderr)
        return 2
    hw = Hardware(int(args.ram_gib * GiB), () if args.apple else gpus, args.apple,
                  args.wired_limit_mb * 1024**2 if args.wired_limit_mb else None)
    overrides = {k: v for k, v in (("model", args.model), ("num_ctx", args.num_ctx),
                                   ("kv_cache_type", args.kv_cache_type),
                                   ("apple_gpu_memory", args.apple_gpu_memory)) if v is not None}
    try:
        config = validate_host_data("what-if", overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = plan.plan_hardware("what-if", config, hw)
    print(json.dumps(result.as_dict(), indent=2) if args.json else plan.table([result]))
    return 1 if result.error else 0


def _gpu_memory(value: str) -> str | float:
    """--apple-gpu-memory: "auto" or GiB; the key's own checks follow in validation."""
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError('expected "auto" or a size in GiB') from None


def _bundle(args: argparse.Namespace) -> int:
    from .bundle import BundleError, build, pinned_releases
    from .gather import gather_fleet
    from .settings import ConfigError, HostConfig

    configs: dict[str, HostConfig] = {}
    models = list(args.model)
    if args.inventory:
        try:
            configs, plans = gather_fleet(args.inventory)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for failed in (p for p in plans if p.error):
            print(f"warning: no sizing for {failed.host} ({failed.error}); add its model with --model",
                  file=sys.stderr)
        models += [p.decision.model for p in plans if p.decision and p.decision.model]
    if not models:
        print("error: no models: give --inventory and/or --model", file=sys.stderr)
        return 2
    ollama = pinned_releases(configs, "ollama", args.ollama_version, args.ollama_url)
    claude = pinned_releases(configs, "claude", args.claude_version, args.claude_url)
    for label, releases in (("Ollama", ollama), ("Claude Code", claude)):
        for release in releases:
            hosts = ", ".join(release.hosts) or "HostConfig's default"
            print(f"{label} {release.version} for {hosts} from {release.url_template}")
    try:
        index, fetched = build(args.directory, models, tuple(args.platform or ["linux-amd64"]), ollama, claude,
                               args.registry, args.workers, progress=not args.quiet,
                               pythons=() if args.no_wheels else tuple(args.python or [default_python()]))
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = sum(f.size for f in (*index.files, *index.wheels)) + sum(b.size for m in index.models for b in m.blobs)
    print(f"bundle {args.directory}: Ollama {' + '.join(index.ollama_versions)}, "
          f"Claude Code {' + '.join(index.claude_versions)}, models {', '.join(m.name for m in index.models)}, "
          f"toolkit wheels for {', '.join(index.wheel_sets) or 'no platform'}; "
          f"{total / 1e6:.1f} MB in all, {fetched / 1e6:.1f} MB downloaded now")
    return 0


def _defaults(args: argparse.Namespace) -> int:
    from .settings import group_data_defaults

    sys.stdout.write(group_data_defaults())
    return 0


def _onboard(args: argparse.Namespace) -> int:
    from .onboarding import run

    return run(args.inventory, args.host, args.bundle and str(args.bundle), args.mirror, args.dry)


def _pull(args: argparse.Namespace) -> int:
    from . import pull_runner

    return pull_runner.apply() if args.apply else pull_runner.run(args.scheduled, args.splay)


def default_python() -> str:
    """The Python running this command, as X.Y: the default set of wheels a bundle carries."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _checked(check: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse type from one of the checks inventory values go through."""
    def parse(value: str) -> str:
        try:
            return check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _doctor(args: argparse.Namespace) -> int:
    import datetime

    from . import doctor, summary
    from .settings import ConfigError

    if args.reports:
        return _fleet_reports(args)
    if not args.inventory:
        print("error: give an inventory (or --reports DIR)", file=sys.stderr)
        return 2
    try:
        reports = doctor.run(args.inventory, deep=args.deep)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.html:
        stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        last_run = summary.read(Path(args.inventory).parent)
        args.html.write_text(doctor.html(reports, stamp, last_run))
    print(json.dumps([r.as_dict() for r in reports], indent=2) if args.json else doctor.table(reports))
    return 0 if all(r.ok for r in reports) else 1


def _fleet_reports(args: argparse.Namespace) -> int:
    """The fleet from the status files pull-mode hosts sent (no SSH)."""
    import datetime
    import time

    from . import pull

    statuses, unreadable = pull.read_reports(args.reports)
    for name in unreadable:
        print(f"warning: {args.reports / name} is not a pull-mode status file", file=sys.stderr)
    if args.html:
        stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        args.html.write_text(pull.fleet_html(statuses, time.time(), str(args.reports), stamp))
    print(json.dumps([s.model_dump() for s in statuses], indent=2) if args.json
          else pull.fleet_table(statuses, time.time()))
    return 0 if statuses and all(s.result == "ok" and s.doctor and s.doctor["ok"] for s in statuses) else 1


def main(argv: list[str] | None = None) -> int:
    from .bundle_index import REGISTRY_URL
    from .catalog import check_version
    from .settings import HostConfig, check_base_url
    from .wheels import python_tag

    defaults = HostConfig()
    parser = argparse.ArgumentParser(prog="localcode", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the SSH library's own errors")
    commands = parser.add_subparsers(dest="command", required=True)
    what = commands.add_parser("plan", help="size models for hosts (an inventory) or a what-if machine")
    what.add_argument("inventory", nargs="?", help="pyinfra inventory file: gather facts from its hosts")
    what.add_argument("--ram-gib", type=float, help="what-if: system RAM (unified memory on Apple)")
    what.add_argument("--apple", action="store_true", help="what-if: Apple Silicon")
    what.add_argument("--wired-limit-mb", type=int, help="what-if: sysctl iogpu.wired_limit_mb as the Mac has it now")
    what.add_argument("--apple-gpu-memory", type=_gpu_memory, metavar="auto|GIB",
                      help="what-if: the apple_gpu_memory key (the GPU memory limit the deploy would set)")
    what.add_argument("--nvidia-gib", type=float, action="append", default=[], help="what-if: an NVIDIA GPU (repeat)")
    what.add_argument("--amd-gib", type=float, action="append", default=[], help="what-if: an AMD GPU (repeat)")
    what.add_argument("--cpu-only", action="store_true", help="what-if: no GPU")
    what.add_argument("--model", help="override: model tag")
    what.add_argument("--num-ctx", type=int, help="override: context length")
    what.add_argument("--kv-cache-type", help="override: f16, q8_0 or q4_0")
    what.add_argument("--json", action="store_true", help="machine-readable output")
    what.set_defaults(handler=_plan)

    doc = commands.add_parser("doctor", help="check every host of an inventory and report")
    doc.add_argument("inventory", nargs="?", help="pyinfra inventory file")
    doc.add_argument("--reports", type=Path, metavar="DIR",
                     help="instead of SSH: the status files pull-mode hosts sent (<host>.json), as a fleet table")
    doc.add_argument("--deep", action="store_true", help="also run claude -p as each developer user")
    doc.add_argument("--json", action="store_true", help="machine-readable output")
    doc.add_argument("--html", type=Path, help="also write a self-contained HTML report here")
    doc.set_defaults(handler=_doctor)

    pack = commands.add_parser("bundle", help="gather Ollama, Claude Code and models for air-gapped or mirrored fleets")
    pack.add_argument("directory", type=Path, help="the bundle directory (created; re-runs fetch only what is missing)")
    pack.add_argument("--inventory", help="size these hosts; bundle the models they get and the releases they pin")
    pack.add_argument("--model", action="append", default=[], help="a model to include (repeat)")
    pack.add_argument("--platform", action="append", choices=("linux-amd64", "linux-arm64", "darwin"),
                      help="platforms to carry (repeat; default linux-amd64)")
    pack.add_argument("--ollama-version", type=_checked(check_version),
                      help="carry this version instead of each host's ollama_version (without --inventory: "
                           f"HostConfig's, {defaults.ollama_version})")
    pack.add_argument("--claude-version", type=_checked(check_version),
                      help="carry this version instead of each host's claude_version (without --inventory: "
                           f"HostConfig's, {defaults.claude_version})")
    pack.add_argument("--ollama-url", metavar="BASE", type=_checked(check_base_url),
                      help="fetch Ollama from BASE/v<version>/<file> instead of each host's ollama_url_template "
                           f"(without --inventory: HostConfig's, {defaults.ollama_url_template})")
    pack.add_argument("--claude-url", metavar="BASE", type=_checked(check_base_url),
                      help="fetch Claude Code from BASE/<version>/<file> instead of each host's claude_url_template "
                           f"(without --inventory: HostConfig's, {defaults.claude_url_template})")
    pack.add_argument("--registry", default=REGISTRY_URL, type=_checked(check_base_url),
                      help="the model registry (default: %(default)s)")
    pack.add_argument("--python", action="append", type=_checked(python_tag), metavar="X.Y",
                      help="carry the toolkit's wheels for this Python (repeat; default: this one, "
                           f"{default_python()}); onboarding then needs no PyPI")
    pack.add_argument("--no-wheels", action="store_true", help="carry no Python wheels")
    pack.add_argument("--workers", type=int, default=4, help="parallel downloads")
    pack.add_argument("--quiet", action="store_true", help="no progress bar")
    pack.set_defaults(handler=_bundle)

    board = commands.add_parser("onboard", help="set up the machine this runs on (its entry in the team "
                                                 "inventory, on @local, system steps through sudo)")
    board.add_argument("--inventory", help="the team inventory (default: inventory/team.py when present)")
    board.add_argument("--host", help="this machine's host name in the inventory (default: matched by host name)")
    source = board.add_mutually_exclusive_group()
    source.add_argument("--bundle", type=Path, help="install everything from this bundle directory (no network)")
    source.add_argument("--mirror", type=_checked(check_base_url), help="install everything from this mirror URL")
    board.add_argument("--dry", action="store_true", help="show what the deploy would do, change nothing")
    board.set_defaults(handler=_onboard)

    puller = commands.add_parser("pull", help="on a pull-mode host (root): fetch the team configuration and "
                                              "deploy this host (its timer runs this)")
    puller.add_argument("--scheduled", action="store_true", help="only when due (the interval, or the back-off "
                                                                 "after failures)")
    puller.add_argument("--splay", type=int, default=0, metavar="SECONDS", help="sleep up to this long first")
    puller.add_argument("--apply", action="store_true", help=argparse.SUPPRESS)  # the fresh toolkit's half of a run
    puller.set_defaults(handler=_pull)

    keys = commands.add_parser("defaults", help="print every host key with its default and what it does "
                                                "(group_data/all.py)")
    keys.set_defaults(handler=_defaults)
    args = parser.parse_args(argv)
    from .pyinfra_compat import quiet_libraries

    quiet_libraries(args.verbose)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
