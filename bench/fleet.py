"""Fleet converge benchmark on the lab (not a test): first run, no-op re-run and remote
commands per host at 1, 4, 8 and 16 hosts, against the floor measured in the same run (a
bare `ssh host true` fan-out to the same hosts). Prints ratios and writes bench/results.json
and bench/results.md.

    .venv/bin/python bench/fleet.py [--sizes 1 4 8 16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab import fleet  # noqa: E402
from lab.spec import load_spec  # noqa: E402


def lab_file(size: int, tmp: Path) -> Path:
    hosts = [{"name": f"h{i:02d}", "ram_gib": 24, "users": [{"name": "dev", "shell": "bash"}]} for i in range(size)]
    path = tmp / f"bench{size}.yaml"
    path.write_text(yaml.safe_dump({"name": f"bench{size}", "subnet": "10.230.0.0/16", "hosts": hosts}))
    return path


def deploy(lab: str, verbose: bool = False) -> tuple[float, str]:
    argv = [str(REPO / ".venv/bin/pyinfra"), "-y", "inventory/lab.py", "deploy.py"] + (["-vv"] if verbose else [])
    started = time.monotonic()
    result = subprocess.run(argv, cwd=REPO, env={**os.environ, "LOCALCODE_LAB": lab}, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"deploy failed on {lab}:\n{result.stderr[-3000:]}")
    return elapsed, result.stderr


def floor(state, hosts: list[str]) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(len(hosts)) as pool:
        list(pool.map(lambda h: subprocess.run([*fleet.ssh_argv(state, h), "true"], check=True), hosts))
    return time.monotonic() - started


def commands_per_host(log: str) -> float:
    counts: dict[str, int] = {}
    for line in log.splitlines():
        match = re.match(r"\[(h\d+)\] >>> ", re.sub(r"\x1b\[[0-9;]*m", "", line))
        if match:
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return sum(counts.values()) / max(1, len(counts))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    args = parser.parse_args()
    tmp = Path("/tmp/localcode-bench")
    tmp.mkdir(exist_ok=True)
    rows = []
    for size in args.sizes:
        path = lab_file(size, tmp)
        spec = load_spec(path)
        state = fleet.up(spec, path, log=lambda *_: None)
        try:
            first, _ = deploy(spec.name)
            noop = min(deploy(spec.name)[0] for _ in range(3))  # best of 3, as the floor below
            _, log = deploy(spec.name, verbose=True)
            floors = [floor(state, [h.name for h in spec.hosts]) for _ in range(3)]
            row = {"hosts": size, "first_s": round(first, 2), "noop_s": round(noop, 2),
                   "floor_s": round(min(floors), 3), "commands_per_host": round(commands_per_host(log), 1)}
            row["noop_over_floor"] = round(noop / row["floor_s"], 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
        finally:
            fleet.down(spec.name, log=lambda *_: None)
    base = rows[0]
    for row in rows:
        row["first_over_1"] = round(row["first_s"] / base["first_s"], 2)
        row["noop_over_1"] = round(row["noop_s"] / base["noop_s"], 2)
    (REPO / "bench/results.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["| hosts | first run s | no-op re-run s (best of 3) | floor: ssh true fan-out s (best of 3) | no-op / floor | "
             "first / first(1) | no-op / no-op(1) | remote commands per host (no-op) |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['hosts']} | {r['first_s']} | {r['noop_s']} | {r['floor_s']} | {r['noop_over_floor']} | "
              f"{r['first_over_1']} | {r['noop_over_1']} | {r['commands_per_host']} |" for r in rows]
    (REPO / "bench/results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
