"""The lab's PyPI: a PEP 503 simple index (https://peps.python.org/pep-0503/) over the wheels the
lab's bundle carries, served by the lab mirror under /pypi/simple/. Online lab hosts point pip at
it (/etc/pip.conf, written by lab/hostlayer.py), so onboarding a lab host installs the toolkit
the way a laptop does from PyPI, without the real PyPI."""

from __future__ import annotations

import html
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from localcode.bundle_index import load_index

from .files import atomic_write_text
from .mirror import PYPI_PATH


def pages(wheels: dict[str, str], wheels_path: str) -> dict[str, str]:
    """{page path under the index root: HTML} for wheel files {file name: sha256} served at
    wheels_path (an absolute URL path)."""
    projects: dict[str, list[str]] = {}
    for name in wheels:
        projects.setdefault(canonicalize_name(parse_wheel_filename(name)[0]), []).append(name)

    def page(links: list[str]) -> str:
        return "<!DOCTYPE html>\n<html><body>\n" + "\n".join(links) + "\n</body></html>\n"

    out = {"index.html": page([f'<a href="{p}/">{p}</a>' for p in sorted(projects)])}
    for project, files in sorted(projects.items()):
        out[f"{project}/index.html"] = page([
            f'<a href="{html.escape(wheels_path)}/{html.escape(f)}#sha256={wheels[f]}">{html.escape(f)}</a>'
            for f in sorted(files)])
    return out


def publish(mirror_root: Path, bundle: Path) -> int:
    """Write the simple index for the bundle's wheels into the mirror tree; returns the number
    of projects. The bundle must lie inside the mirror tree (it is served from there)."""
    wheels = {Path(f.path).name: f.sha256 for f in load_index(bundle).wheels if f.path.endswith(".whl")}
    wheels_path = "/" + str((bundle / "wheels").relative_to(mirror_root))
    root = mirror_root / PYPI_PATH.lstrip("/")
    written = pages(wheels, wheels_path)
    for relative, text in written.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / relative, text)
    return len(written) - 1
