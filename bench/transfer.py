"""Transfer benchmark on the lab (not a test), both measured against a raw baseline in the
same run:

- blob sync: the bundle push the deploy uses (rsync over SSH, only missing files) against
  `cat blob | ssh host 'cat > file'` of the same bytes;
- bundle download: `localcode bundle`'s fetcher (registry protocol, verified, parallel) against
  a raw `curl` of the same blobs.

Prints both throughput ratios (target >= 0.8) and appends them to bench/results.json.

    .venv/bin/python bench/transfer.py [--mib 256]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from localcode import sources  # noqa: E402
from localcode.bundle import Fetcher, fetch_models  # noqa: E402
from lab import fleet  # noqa: E402
from lab.spec import load_spec  # noqa: E402

RUNS = 3


def best(fn) -> float:
    times = []
    for _ in range(RUNS):
        started = time.monotonic()
        fn()
        times.append(time.monotonic() - started)
    return min(times)


def blob_sync(state, host: str, mib: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="localcode-bench-"))
    try:
        data = os.urandom(mib << 20)
        name = f"sha256-{hashlib.sha256(data).hexdigest()}"
        (work / "models/blobs").mkdir(parents=True)
        (work / "models/blobs" / name).write_bytes(data)
        (work / "list").write_text(f"models/blobs/{name}\n")
        ssh = fleet.ssh_argv(state, host)
        target = f"{ssh[-1]}:/var/tmp/bench/"

        def clean() -> None:
            subprocess.run([*ssh, "rm -rf /var/tmp/bench; mkdir -p /var/tmp/bench"], check=True)

        def rsync() -> None:
            clean()
            flags = list(sources.push(str(work), [f"models/blobs/{name}"]))[1].flags  # the deploy's own flags
            subprocess.run(["rsync", *flags, "-e", " ".join(ssh[:-1]), f"{work}/", target], check=True)

        def raw() -> None:
            clean()
            with open(work / "models/blobs" / name, "rb") as blob:
                subprocess.run([*ssh, f"cat > /var/tmp/bench/{name}"], stdin=blob, check=True)

        t_rsync, t_raw = best(rsync), best(raw)
        return {"bench": "blob sync", "mib": mib, "ours_s": round(t_rsync, 3), "raw_s": round(t_raw, 3),
                "throughput_ratio": round(t_raw / t_rsync, 2)}
    finally:
        shutil.rmtree(work)


def bundle_download(mib: int) -> dict:
    """One model with a big random layer in a registry of its own; our fetcher and curl each
    download its blobs from there."""
    from lab.registry import RegistryClient, free_port, start_registry, stop_registry

    work = Path(tempfile.mkdtemp(prefix="localcode-bench-"))
    registry = start_registry(work / "storage", free_port(), work / "registry.log")
    try:
        client = RegistryClient(registry.url)
        layer = os.urandom(mib << 20)
        config = b'{"model_format":"gguf","model_family":"bench"}'
        blobs = [(f"sha256:{hashlib.sha256(b).hexdigest()}", b) for b in (config, layer)]
        for digest, data in blobs:
            client.push_blob("bench/big", digest, data)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": blobs[0][0],
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": blobs[1][0], "size": len(layer)}],
        }).encode()
        client.push_manifest("bench/big", "1", manifest)
        urls = [f"{registry.url}/v2/bench/big/blobs/{digest}" for digest, _ in blobs]

        def ours() -> None:
            root = Path(tempfile.mkdtemp(prefix="localcode-bench-", dir=work))
            fetcher = Fetcher(root, progress=False, workers=4)
            try:
                fetch_models(fetcher, registry.url, ["bench/big:1"])
            finally:
                fetcher.close()
                shutil.rmtree(root)

        def raw() -> None:
            root = Path(tempfile.mkdtemp(prefix="localcode-bench-", dir=work))
            try:
                subprocess.run(["curl", "-sfL", "--no-progress-meter", "--parallel", "--parallel-max", "4",
                                *[arg for i, url in enumerate(urls) for arg in ("-o", str(root / str(i)), url)]],
                               check=True)
            finally:
                shutil.rmtree(root)

        t_ours, t_raw = best(ours), best(raw)
    finally:
        stop_registry(registry)
        shutil.rmtree(work)
    return {"bench": "bundle download", "mib": mib, "ours_s": round(t_ours, 3), "raw_s": round(t_raw, 3),
            "throughput_ratio": round(t_raw / t_ours, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="localcode-bench-lab-"))
    path = tmp / "xfer.yaml"
    path.write_text(yaml.safe_dump({"name": "xfer", "subnet": "10.231.0.0/16",
                                    "hosts": [{"name": "h00", "ram_gib": 24, "users": [{"name": "dev"}]}]}))
    spec = load_spec(path)
    state = fleet.up(spec, path, log=lambda *_: None)
    try:
        rows = [blob_sync(state, "h00", args.mib), bundle_download(args.mib)]
    finally:
        fleet.down(spec.name, log=lambda *_: None)
    for row in rows:
        print(f"{row['bench']}: ours {row['ours_s']} s, raw {row['raw_s']} s for {row['mib']} MiB: "
              f"throughput ratio {row['throughput_ratio']} (target >= 0.8)")
    results = REPO / "bench/transfer.json"
    results.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
