"""localcode-install-release (and localcode-install-claude) run locally (as root, like on a host) against crafted release
tarballs served from file:// URLs: an archive whose checksum matches is still refused when it
holds what a release must not, and normalised (root-owned, nothing group/world writable)
otherwise. The old release and the host stay as they were on every refusal."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from lab.paths import STANDIN_DIR

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "localcode/scripts/localcode-install-release"
CLAUDE_SCRIPT = REPO / "localcode/scripts/localcode-install-claude"

sys.path.insert(0, str(STANDIN_DIR))
import build_release  # noqa: E402

if os.geteuid() != 0:
    pytest.skip("the release helper runs as root (owners, device nodes)", allow_module_level=True)

Member = tarfile.TarInfo


def member(name: str, mode: int = 0o644, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
           link: str = "", uid: int = 0) -> tuple[Member, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, len(data), link
    info.uid = info.gid = uid
    info.uname = info.gname = "root" if uid == 0 else ""
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    return info, data


def directory(name: str, mode: int = 0o755) -> tuple[Member, bytes]:
    return member(name, mode, tarfile.DIRTYPE)


def release(tmp: Path, *archives: list[tuple[Member, bytes]]) -> tuple[str, list[str]]:
    """Write the archives (.tar.zst) and a matching sha256sum.txt; (sums URL, archive URLs)."""
    out = tmp / "mirror"
    out.mkdir(exist_ok=True)
    urls, sums = [], []
    for i, members in enumerate(archives):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
            for info, data in members:
                tf.addfile(info, io.BytesIO(data) if data else None)
        path = out / f"ollama-linux-amd64{'-part%d' % i if i else ''}.tar.zst"
        path.write_bytes(build_release._zstd(buf.getvalue()))
        sums.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
        urls.append(path.as_uri())
    (out / "sha256sum.txt").write_text("".join(sums))
    return (out / "sha256sum.txt").as_uri(), urls


def install(tmp: Path, sums: str, archives: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the helper as a careless caller would: umask 0 (nothing may depend on the caller's)."""
    return subprocess.run([str(SCRIPT), sums, str(tmp / "releases/1.0.0-amd64"), *archives],
                          capture_output=True, text=True, timeout=60, env=env, preexec_fn=lambda: os.umask(0))


def base() -> list[tuple[Member, bytes]]:
    return [directory("bin"), member("bin/ollama", 0o755, data=b"#!/bin/sh\necho ollama\n"),
            directory("lib"), directory("lib/ollama")]


def assert_refused(tmp: Path, result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0, result.stdout
    for word in words:
        assert word in result.stderr, result.stderr
    assert "nothing was changed" in result.stderr
    releases = tmp / "releases"
    assert sorted(p.name for p in releases.iterdir()) == ["0.9.0-amd64"], "a partial or refused tree was left"
    assert (releases / "0.9.0-amd64/bin/ollama").read_text() == "old\n"


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """A host with an older release already installed (it must survive every refusal)."""
    old = tmp_path / "releases/0.9.0-amd64/bin"
    old.mkdir(parents=True)
    (old / "ollama").write_text("old\n")
    return tmp_path


@pytest.fixture
def tar_ignoring_flags(tmp_path: Path) -> dict:
    """PATH with a `tar` that lists nothing and extracts owners and modes as they are: what a
    tar that ignored our flags would do. The check of the unpacked tree must still decide."""
    bin_dir = tmp_path / "faketar"
    bin_dir.mkdir()
    (bin_dir / "tar").write_text(
        "#!/bin/sh\n"
        'case " $* " in *" -tvf "*) cat >/dev/null; exit 0 ;; esac\n'
        'for a; do shift; case $a in --no-same-*) ;; *) set -- "$@" "$a" ;; esac; done\n'
        'exec /usr/bin/tar --same-owner --same-permissions "$@"\n')
    (bin_dir / "tar").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def tree_modes(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under root → (mode, uid, gid), symlinks not followed."""
    out = {".": (root.lstat().st_mode, root.lstat().st_uid, root.lstat().st_gid)}
    for p in root.rglob("*"):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid)
    return out


def test_the_standin_release_with_its_rocm_overlay_is_accepted_root_owned(tmp):
    tarball = build_release.build_release("1.0.0", "http://127.0.0.1:5000", tmp / "mirror")
    rocm = tarball.with_name("ollama-linux-amd64-rocm.tar.zst")
    result = install(tmp, (tarball.parent / "sha256sum.txt").as_uri(), [tarball.as_uri(), rocm.as_uri()])
    assert result.returncode == 0, result.stderr
    dest = tmp / "releases/1.0.0-amd64"
    modes = tree_modes(dest)
    assert all((uid, gid) == (0, 0) for _, uid, gid in modes.values())
    assert not any(mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_ISUID | stat.S_ISGID) for mode, _, _ in modes.values())
    assert stat.S_IMODE(modes["."][0]) == 0o755 and stat.S_IMODE(modes["bin/ollama"][0]) == 0o755
    assert (dest / "lib/ollama/rocm/README").is_file()
    assert sorted(p.name for p in (tmp / "releases").iterdir()) == ["0.9.0-amd64", "1.0.0-amd64"]


def test_world_writable_and_foreign_owned_members_are_normalised(tmp):
    members = [*base(), directory("lib/ollama/open", 0o777),
               member("lib/ollama/open/lib.so", 0o666, data=b"x", uid=1234),
               member("lib/ollama/grp.so", 0o775, data=b"y", uid=1234),
               member("lib/ollama/link.so", 0o777, tarfile.SYMTYPE, link="grp.so", uid=1234)]
    result = install(tmp, *release(tmp, members))
    assert result.returncode == 0, result.stderr
    modes = tree_modes(tmp / "releases/1.0.0-amd64")
    assert all((uid, gid) == (0, 0) for _, uid, gid in modes.values()), modes
    assert stat.S_IMODE(modes["lib/ollama/open"][0]) == 0o755
    assert stat.S_IMODE(modes["lib/ollama/open/lib.so"][0]) == 0o644
    assert stat.S_IMODE(modes["lib/ollama/grp.so"][0]) == 0o755


@pytest.mark.parametrize("bad, words", [
    (member("bin/helper", 0o4755, data=b"x"), ("setuid/setgid", "bin/helper")),
    (member("bin/helper", 0o2755, data=b"x"), ("setuid/setgid", "bin/helper")),
    (member("lib/ollama/null", 0o666, tarfile.CHRTYPE), ("not a plain file", "lib/ollama/null")),
    (member("lib/ollama/pipe", 0o666, tarfile.FIFOTYPE), ("not a plain file", "lib/ollama/pipe")),
    (member("lib/ollama/shadow", 0o644, tarfile.LNKTYPE, link="/etc/shadow"), ("not a plain file",)),
], ids=["setuid", "setgid", "device", "fifo", "hardlink"])
def test_listing_refuses_special_members_before_anything_is_unpacked(tmp, bad, words):
    assert_refused(tmp, install(tmp, *release(tmp, [*base(), bad])), *words)


@pytest.mark.parametrize("link, target", [
    ("lib/ollama/etc", "/etc"),
    ("lib/ollama/up", "../../../etc"),
    ("lib/ollama/up", "../x/../../../etc"),
    ("top", ".."),
    ("lib/ollama/via", "here/../../../.."),  # `here` could be a symlink: `..` after a name is refused
], ids=["absolute", "escaping", "escaping-midway", "parent-of-root", "dotdot-after-name"])
def test_symlinks_leading_out_of_the_release_are_refused(tmp, link, target):
    members = [*base(), member(link, 0o777, tarfile.SYMTYPE, link=target)]
    assert_refused(tmp, install(tmp, *release(tmp, members)), "symlink", f"{link} -> {target}")


def test_a_symlink_chain_through_dot_is_refused(tmp):
    """`a -> .` and `b -> a/..` are each inside textually, yet b is the release's parent."""
    members = [*base(), member("a", 0o777, tarfile.SYMTYPE, link="."),
               member("b", 0o777, tarfile.SYMTYPE, link="a/..")]
    assert_refused(tmp, install(tmp, *release(tmp, members)), "b -> a/..")


def test_relative_symlinks_inside_the_release_are_kept(tmp):
    members = [*base(), directory("lib/ollama/cuda_v12"),
               member("lib/ollama/cuda_v12/libcudart.so.12.8.90", 0o755, data=b"so"),
               member("lib/ollama/cuda_v12/libcudart.so.12", 0o777, tarfile.SYMTYPE, link="libcudart.so.12.8.90"),
               member("lib/ollama/cudart", 0o777, tarfile.SYMTYPE, link="./cuda_v12/libcudart.so.12"),
               member("lib/ollama/cuda_v12/ollama", 0o777, tarfile.SYMTYPE, link="../../../bin/ollama")]
    result = install(tmp, *release(tmp, members))
    assert result.returncode == 0, result.stderr
    dest = tmp / "releases/1.0.0-amd64"
    assert (dest / "lib/ollama/cudart").read_bytes() == b"so"
    assert os.readlink(dest / "lib/ollama/cuda_v12/ollama") == "../../../bin/ollama"


def test_a_later_archive_is_never_unpacked_through_an_earlier_ones_symlink(tmp):
    """The ROCm overlay is unpacked on top of the main archive: a symlink out of the release
    from the first must be refused before the second could write through it."""
    outside = tmp / "outside"
    outside.mkdir()
    first = [*base(), member("lib/ollama/rocm", 0o777, tarfile.SYMTYPE, link=str(outside))]
    second = [directory("lib"), directory("lib/ollama"), directory("lib/ollama/rocm"),
              member("lib/ollama/rocm/pwned", 0o644, data=b"x")]
    assert_refused(tmp, install(tmp, *release(tmp, first, second)), f"lib/ollama/rocm -> {outside}")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("bad, words", [
    (member("bin/helper", 0o4755, data=b"x"), ("setuid or setgid file", "bin/helper")),
    (member("lib/ollama/null", 0o666, tarfile.CHRTYPE), ("device, fifo or socket", "lib/ollama/null")),
    (member("lib/ollama/pipe", 0o666, tarfile.FIFOTYPE), ("device, fifo or socket", "lib/ollama/pipe")),
    (member("lib/ollama/again", 0o755, tarfile.LNKTYPE, link="bin/ollama"), ("hard link", "lib/ollama/again")),
], ids=["setuid", "device", "fifo", "hardlink"])
def test_the_unpacked_tree_decides_whatever_tar_did(tmp, tar_ignoring_flags, bad, words):
    assert_refused(tmp, install(tmp, *release(tmp, [*base(), bad]), env=tar_ignoring_flags), *words)


def test_modes_and_owners_are_normalised_whatever_tar_did(tmp, tar_ignoring_flags):
    members = [*base(), directory("lib/ollama/open", 0o777),
               member("lib/ollama/open/lib.so", 0o666, data=b"x", uid=1234)]
    result = install(tmp, *release(tmp, members), env=tar_ignoring_flags)
    assert result.returncode == 0, result.stderr
    modes = tree_modes(tmp / "releases/1.0.0-amd64")
    assert modes["lib/ollama/open/lib.so"][1:] == (0, 0)
    assert stat.S_IMODE(modes["lib/ollama/open"][0]) == 0o755
    assert stat.S_IMODE(modes["lib/ollama/open/lib.so"][0]) == 0o644


def test_a_checksum_mismatch_unpacks_nothing(tmp):
    sums, urls = release(tmp, base())
    Path(urls[0].removeprefix("file://")).write_bytes(b"tampered")
    assert_refused(tmp, install(tmp, sums, urls), "checksum mismatch")


def test_the_claude_binary_is_installed_0755_root_owned_whatever_the_umask(tmp_path):
    binary = b"#!/bin/sh\necho '2.0.0 (Claude Code)'\n"
    (tmp_path / "linux-x64").mkdir()
    (tmp_path / "linux-x64/claude").write_bytes(binary)
    (tmp_path / "linux-x64/claude").chmod(0o4777)  # as served: modes never travel over HTTP anyway
    (tmp_path / "manifest.json").write_text(json.dumps({"platforms": {"linux-x64": {
        "checksum": hashlib.sha256(binary).hexdigest(), "size": len(binary)}}}))
    dest = tmp_path / "claude/2.0.0"
    done = subprocess.run([str(CLAUDE_SCRIPT), (tmp_path / "manifest.json").as_uri(),
                           (tmp_path / "linux-x64/claude").as_uri(), "linux-x64", "2.0.0", str(dest)],
                          capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0))
    assert done.returncode == 0, done.stderr
    modes = tree_modes(dest)
    assert {path: (stat.S_IMODE(mode), uid, gid) for path, (mode, uid, gid) in modes.items()} == \
        {".": (0o755, 0, 0), "claude": (0o755, 0, 0)}
    assert [p.name for p in (tmp_path / "claude").iterdir()] == ["2.0.0"]
