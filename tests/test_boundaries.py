"""The product's boundaries: localcode/ imports no lab, no tests and has no import cycle; it
reads nothing relative to the repository; its wheel holds the product and nothing else."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "localcode"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_the_product_imports_neither_the_lab_nor_the_tests():
    for path in PACKAGE.rglob("*.py"):
        foreign = {m for m in imports(path) if m.split(".")[0] in ("lab", "tests", "ollama_standin", "bench")}
        assert not foreign, f"{path.relative_to(REPO)} imports {sorted(foreign)}"


def test_the_product_has_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_the_product_reads_nothing_relative_to_the_repository():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "parents[" not in text and "tests/" not in text, path.relative_to(REPO)


def clean_copy(dest: Path) -> Path:
    """The repository's files (tracked and new, not ignored): no stale build/ directory can
    lend the wheel a module that the package list leaves out."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_the_wheel_holds_the_product_only(tmp_path):
    source = clean_copy(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("localcode-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"localcode", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, top
    assert not [n for n in names if "standin" in n or "fakes" in n or "/lab/" in n or n.startswith("lab/")]
    for needed in ("localcode/templates/ollama.service.j2", "localcode/templates/report.html.j2",
                   "localcode/templates/claude-local.sh.j2", "localcode/scripts/localcode-write-file",
                   "localcode/catalog.yaml"):
        assert needed in names, needed
    modules = {str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= set(names), sorted(modules - set(names))  # every module (a subpackage too) ships
