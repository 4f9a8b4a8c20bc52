"""The Python wheels the toolkit needs, carried in a bundle so that a machine can onboard itself
(and a pull-mode host can install the toolkit) without PyPI.

    wheels/<file>.whl      every wheel, for every (platform, Python) set asked for
    wheels/requirements.txt  each wheel pinned with its sha256 and an environment marker naming
                           the sets that use it: `pip install --no-index --find-links wheels
                           --require-hashes -r wheels/requirements.txt` takes this machine's set
    wheels/index.html      a link page: `pip --find-links URL/wheels/index.html` from a mirror

pip resolves each (platform, Python) set against the control machine's own index configuration
(`pip install --dry-run --report`, which reads the index's hashes without fetching the wheels),
then downloads exactly those files in hash-checking mode: a wheel is kept only when its sha256
is the one the index published, and the requirement files carry the same hashes to the host."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

from .localfiles import write_atomically

WHEELS_DIR = "wheels"
REQUIREMENTS = "requirements.txt"
LINK_PAGE = "index.html"
# The build backend pip needs to install the toolkit from a clone without an index
# (pyproject.toml's [build-system] requires; a test keeps them equal).
BUILD_REQUIREMENTS = ("setuptools>=68",)
# The environment marker that holds on a machine of each bundle platform (PEP 508).
MARKERS = {
    "linux-amd64": 'sys_platform == "linux" and platform_machine == "x86_64"',
    "linux-arm64": 'sys_platform == "linux" and platform_machine == "aarch64"',
    "darwin": 'sys_platform == "darwin" and platform_machine == "arm64"',
}
# pip's platform tags per bundle platform. pip widens macosx_13_0 to every older macOS and to
# universal2 itself; manylinux_2_x tags it does not widen, so each glibc floor is listed.
PIP_PLATFORMS = {
    "linux-amd64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "linux-arm64": ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
    "darwin": ("macosx_13_0_arm64",),
}
PYTHON_VERSION = re.compile(r"^3\.(1[1-9]|[2-9][0-9])$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class WheelError(RuntimeError):
    """pip could not resolve or fetch a set; the message says which and why."""


@dataclass(frozen=True)
class Pin:
    """One wheel of a resolved set: `name==version` and the file with its index sha256."""

    name: str
    version: str
    filename: str
    url: str
    sha256: str


def python_tag(version: str) -> str:
    """"3.11" -> "3.11" after checking it is a Python this toolkit runs on (3.11 or newer)."""
    if not PYTHON_VERSION.match(version):
        raise ValueError(f"not a Python version the toolkit runs on (3.11 or newer, as X.Y): {version!r}")
    return version


def toolkit_requirements() -> list[str]:
    """What the installed toolkit needs to run (its metadata, extras left out), and its build backend."""
    declared = metadata.requires("localcode") or []
    runtime = [str(r) for r in map(Requirement, declared) if r.marker is None or "extra" not in str(r.marker)]
    return runtime + list(BUILD_REQUIREMENTS)


def pins_from_report(report: dict) -> list[Pin]:
    """The wheels of `pip install --dry-run --report` output, strictly: each must be a wheel
    with a sha256 the index published."""
    pins = []
    for item in report.get("install", []):
        info, meta = item.get("download_info", {}), item.get("metadata", {})
        url = info.get("url", "")
        sha256 = info.get("archive_info", {}).get("hashes", {}).get("sha256", "")
        filename = url.rsplit("/", 1)[-1].split("#", 1)[0]
        if not filename.endswith(".whl") or not _SHA256.match(sha256):
            raise WheelError(f"{meta.get('name')} {meta.get('version')}: no wheel with a published sha256 ({url})")
        name, version, _, _ = parse_wheel_filename(filename)
        pins.append(Pin(str(name), str(version), filename, url, sha256))
    return sorted(pins, key=lambda p: p.name)


def set_marker(platform: str, python: str) -> str:
    return f'({MARKERS[platform]} and python_version == "{python}")'


def requirements_text(sets: Mapping[tuple[str, str], Sequence[Pin]]) -> str:
    """One requirements file for every (platform, Python) set: a line per name and version with
    the hashes of all its wheels and a marker naming the sets that use it, so pip installs
    exactly one set's wheels wherever it runs (and none where no set matches)."""
    lines: dict[tuple[str, str], tuple[set[str], list[str]]] = {}
    for (platform, python), pins in sets.items():
        for pin in pins:
            hashes, markers = lines.setdefault((pin.name, pin.version), (set(), []))
            hashes.add(pin.sha256)
            if set_marker(platform, python) not in markers:
                markers.append(set_marker(platform, python))
    carried = ", ".join(f"{platform} Python {python}" for platform, python in sets)
    out = [f"# The toolkit's wheels ({carried}): pip install --no-index --find-links wheels "
           f"--require-hashes -r wheels/{REQUIREMENTS}"]
    for (name, version), (hashes, markers) in sorted(lines.items()):
        out.append(f"{name}=={version} ; {' or '.join(markers)} "
                   + " ".join(f"--hash=sha256:{h}" for h in sorted(hashes)))
    return "\n".join(out) + "\n"


def link_page(filenames: Sequence[str]) -> str:
    """A page of links pip's --find-links reads, for mirrors that list no directories."""
    links = "\n".join(f'<a href="{html.escape(name)}">{html.escape(name)}</a><br>' for name in sorted(filenames))
    return f"<!DOCTYPE html>\n<html><body>\n{links}\n</body></html>\n"


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)


def _target(platform: str, python: str) -> list[str]:
    """pip's options for wheels of another machine."""
    tags = [arg for tag in PIP_PLATFORMS[platform] for arg in ("--platform", tag)]
    return ["--only-binary=:all:", *tags, "--python-version", python]


def resolve(platform: str, python: str, requirements: Sequence[str]) -> list[Pin]:
    """The wheels pip would install for this platform and Python (metadata only, nothing fetched)."""
    with tempfile.TemporaryDirectory(prefix="localcode-wheels-") as scratch:
        report = Path(scratch) / "report.json"
        done = _pip("install", "--dry-run", "--quiet", "--ignore-installed", *_target(platform, python),
                    "--target", str(Path(scratch) / "target"), "--report", str(report), *requirements)
        if done.returncode != 0:
            raise WheelError(f"pip found no complete set of wheels for {platform}, Python {python}:\n"
                             f"{done.stderr.strip()[-2000:]}")
        return pins_from_report(json.loads(report.read_text()))


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fetch(directory: Path, pins: Sequence[Pin], platform: str, python: str) -> None:
    """Download the pinned wheels missing from `directory`, in pip's hash-checking mode."""
    missing = [p for p in pins if not (directory / p.filename).exists() or _sha256(directory / p.filename) != p.sha256]
    if not missing:
        return
    with tempfile.TemporaryDirectory(prefix="localcode-wheels-") as scratch:
        pinned = Path(scratch) / "pinned.txt"
        pinned.write_text("".join(f"{p.url} --hash=sha256:{p.sha256}\n" for p in missing))
        done = _pip("download", "--quiet", "--no-deps", "--require-hashes", *_target(platform, python),
                    "--dest", scratch, "-r", str(pinned))
        if done.returncode != 0:
            raise WheelError(f"pip could not fetch {len(missing)} wheel(s):\n{done.stderr.strip()[-2000:]}")
        for pin in missing:  # pip checked each against its hash; placed whole, never half-written
            os.replace(Path(scratch) / pin.filename, directory / pin.filename)


def gather(root: Path, platforms: Sequence[str], pythons: Sequence[str]) -> list[tuple[str, int, str]]:
    """Fill root/wheels for every (platform, Python); returns (bundle path, size, sha256) of
    every file there that the sets use, the requirements file and the link page included."""
    directory = root / WHEELS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    requirements = toolkit_requirements()
    sets: dict[tuple[str, str], list[Pin]] = {}
    for platform in platforms:
        for python in pythons:
            sets[(platform, python)] = resolve(platform, python, requirements)
            fetch(directory, sets[(platform, python)], platform, python)
    wheel_names = sorted({p.filename for pins in sets.values() for p in pins})
    written = [write_atomically(directory / REQUIREMENTS, requirements_text(sets)),
               write_atomically(directory / LINK_PAGE, link_page(wheel_names))]
    files = [directory / name for name in wheel_names] + written
    return [(f"{WHEELS_DIR}/{f.name}", f.stat().st_size, _sha256(f)) for f in files]


