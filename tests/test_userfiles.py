"""Reading and writing files in trees other accounts control: the read script and the write
helper run for real here, as root and as an unprivileged account (`nobody`), and the pure
decisions (which links we follow) over parsed reports."""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from pyinfra.api.exceptions import FactProcessError

from localcode.userfiles import READ_SCRIPT, FileState, Link, editable, parse_files

WRITE_HELPER = Path(__file__).resolve().parents[1] / "localcode/scripts/localcode-write-file"
needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None,
                                reason="acting as another account needs root and runuser")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_reports_parse_into_states():
    out = ["::localcode::file:/h/a", "missing",
           "::localcode::file:/h/b", "file 1000 1000 644 3", b64("hi\n"),
           "::localcode::file:/h/c", f"link 1000 {b64('/h/dotfiles/c')}", "file 1000 1000 600 2", b64("x\n"),
           "::localcode::file:/h/d", "unreadable",
           "::localcode::file:/h/e", "other",
           "::localcode::file:/h/f", "large 99999999"]
    states = parse_files(out)
    assert states["/h/a"] == FileState(None, None)
    assert states["/h/b"] == FileState("hi\n", "644", 1000, 1000)
    assert states["/h/c"] == FileState("x\n", "600", 1000, 1000, Link(1000, "/h/dotfiles/c"))
    assert states["/h/d"].problem == "unreadable" and states["/h/d"].text is None and states["/h/d"].exists
    assert states["/h/e"].problem == "not a regular file"
    assert states["/h/f"].problem.startswith("larger than")


@pytest.mark.parametrize("lines", [["file 1000 1000 644 3", "!!not base64!!"], ["file x y z"], ["surprise"],
                                   ["link 1000 ***"]])
def test_unexpected_reports_fail_without_echoing_content(lines):
    secret = "root:$6$hash:19000:0:99999:7:::"
    with pytest.raises(FactProcessError) as info:
        parse_files(["::localcode::file:/home/dev/.zshrc", *lines, secret])
    assert "/home/dev/.zshrc" in str(info.value) and "$6$" not in str(info.value)


def test_links_are_followed_only_for_ordinary_dotfiles():
    home = ("/home/dev",)
    dotfile = FileState("x", "644", 1000, 1000, Link(1000, "/home/dev/dotfiles/bashrc"))
    assert editable(dotfile, 1000, home) is None
    assert "outside /home/dev" in editable(FileState(None, None, link=Link(1000, "/etc/shadow"), problem="unreadable"),
                                           1000, home)
    assert "outside" in editable(FileState("x", "644", 0, 0, Link(1000, "/root/.bashrc")), 1000, home)
    assert "not owned by the account" in editable(FileState("x", "644", 1000, 1000, Link(0, "/home/dev/x")), 1000, home)
    assert "does not own" in editable(FileState("x", "644", 0, 0, Link(1000, "/home/dev/rootfile")), 1000, home)
    assert "unreadable" in editable(FileState(None, None, problem="unreadable"), 1000, home)
    assert "/home/devil" not in home and "outside" in editable(
        FileState("x", "644", 1000, 1000, Link(1000, "/home/devil/x")), 1000, home)  # a prefix is not inside
    assert editable(FileState("x", "644", 1000, 1000), 1000, home) is None
    assert editable(FileState(None, None), 1000, home) is None


@pytest.fixture
def tree():
    """A directory an unprivileged account can reach (pytest's tmp_path is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="localcode-userfiles-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


@pytest.fixture
def home(tree: Path) -> Path:
    """A home directory owned by `nobody`, inside `tree`."""
    nobody = pwd.getpwnam("nobody")
    path = tree / "home"
    path.mkdir()
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return path


def read_as(prefix: list[str], *paths: Path) -> dict[str, FileState]:
    out = subprocess.run([*prefix, "sh", "-c", READ_SCRIPT, "localcode-read", *map(str, paths)],
                         capture_output=True, text=True, check=True).stdout
    return parse_files(out.splitlines())


@needs_root
def test_read_as_the_account_sees_only_what_it_may(tree: Path, home: Path):
    nobody = pwd.getpwnam("nobody")
    secret = tree / "secret"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    own = home / "rc"
    own.write_text("mine\n")
    os.chown(own, nobody.pw_uid, nobody.pw_gid)
    (home / "to-secret").symlink_to(secret)
    os.lchown(home / "to-secret", nobody.pw_uid, nobody.pw_gid)
    (home / "to-own").symlink_to(own)
    as_nobody = ["runuser", "-u", "nobody", "--"]
    states = read_as(as_nobody, own, home / "to-secret", home / "to-own", home / "absent", home)
    assert states[str(own)].text == "mine\n" and states[str(own)].uid == nobody.pw_uid
    leaked = states[str(home / "to-secret")]
    assert leaked.text is None and leaked.problem == "unreadable" and leaked.link.target == str(secret)
    assert states[str(home / "to-own")].text == "mine\n" and states[str(home / "to-own")].link.target == str(own)
    assert states[str(home / "absent")] == FileState(None, None)
    assert states[str(home)].problem == "not a regular file"
    assert read_as([], secret)[str(secret)].text == "root only\n"  # root's own files are read as root


def write(dest: Path, text: str, mode: str = "644", run_as: tuple[str, ...] = ("runuser", "-u", "nobody", "--"),
          staging: Path | None = None) -> subprocess.CompletedProcess:
    src = Path(tempfile.mkstemp(dir=staging)[1])
    src.write_text(text)
    result = subprocess.run(["sh", str(WRITE_HELPER), str(src), str(dest), mode, *run_as],
                            capture_output=True, text=True)
    assert not src.exists(), "the staged file is removed"
    return result


def snapshot(path: Path) -> tuple:
    st = path.lstat()
    return path.read_bytes(), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@needs_root
def test_writes_are_made_by_the_account_atomically(home: Path):
    nobody = pwd.getpwnam("nobody")
    result = write(home / ".config/fish/conf.d/localcode.fish", "alias\n")
    assert result.returncode == 0, result.stderr
    new = home / ".config/fish/conf.d/localcode.fish"
    assert snapshot(new) == (b"alias\n", nobody.pw_uid, nobody.pw_gid, 0o644)
    assert (home / ".config").stat().st_uid == nobody.pw_uid  # directories made by the account, too
    private = home / ".claude.json"
    assert write(private, "{}\n", mode="600").returncode == 0
    assert snapshot(private)[1:] == (nobody.pw_uid, nobody.pw_gid, 0o600)
    assert sorted(p.name for p in home.iterdir()) == [".claude.json", ".config"]  # no temporary file left


@needs_root
def test_links_and_foreign_directories_are_refused(tree: Path, home: Path):
    victim_dir = tree / "root-dir"
    victim_dir.mkdir(mode=0o700)
    victim = tree / "root-file"
    victim.write_text("root's\n")
    victim.chmod(0o600)
    before = snapshot(victim)
    (home / ".bashrc").symlink_to(victim)
    (home / ".claude-local").symlink_to(victim_dir)
    for dest, why in [(home / ".bashrc", "symbolic link"), (home / ".claude-local/settings.json", "permission denied"),
                      (victim_dir / "x", "permission denied")]:
        result = write(dest, "evil\n")
        assert result.returncode != 0 and why in result.stderr and str(dest) in result.stderr, result.stderr
    assert snapshot(victim) == before and list(victim_dir.iterdir()) == []
    assert (home / ".bashrc").is_symlink()


@needs_root
def test_bad_arguments_are_refused(tree: Path):
    for dest, mode in [("relative/path", "644"), (str(tree / "x"), "4755"), (str(tree / "x"), "64a")]:
        assert write(Path(dest), "x", mode=mode, run_as=()).returncode != 0
    assert not (tree / "x").exists()
