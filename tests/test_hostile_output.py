"""Hostile or broken GPU tool output (and RAM figures): the host fails alone, with the tool and a
short sanitized excerpt, never a traceback and never the whole output; numbers only from ASCII
digits and within sane ranges. Parsing, the real command on this machine, the deploy's
op-generation phase (@fake hosts) and the `plan`, `bundle --inventory` and `doctor` commands."""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyinfra.api.exceptions import FactProcessError

from localcode.facts import HardwareFact, Unreadable, parse_hardware
from localcode.sizing import GiB, MiB

from .plan_harness import REPO, M, linux_base, linux_hardware, no_ollama, plan_deploy

SECRET = "s3cret-gecos-phone-555"  # private data elsewhere in the output: never in a message
DEL = "\x7f"  # what the host's filter makes of every byte outside printable ASCII


def linux(*sections: str, ram_kb: int = 64 * 1024 * 1024) -> list[str]:
    return [f"{M}uname", "Linux", "x86_64", f"{M}meminfo", f"MemTotal:       {ram_kb} kB", *sections,
            f"{M}login", "root", f"{M}users", f"dev:x:1000:1000:{SECRET}:/home/dev:/bin/bash"]


def nvidia(*lines: str, rc: str = "0") -> list[str]:
    return [f"{M}nvidia", *lines, "", f"{M}nvidia-rc", rc]


def amd(text: str, rc: str = "0") -> list[str]:
    return [f"{M}amd", *text.split("\n"), "", f"{M}amd-rc", rc]


def darwin(memsize: str, limit: str = "0") -> list[str]:
    return [f"{M}uname", "Darwin", "arm64", f"{M}darwin", memsize, "Apple M4 Pro", limit, f"{M}login", "ana"]


def refused(output: list[str]) -> str:
    """The failure message, checked for what every message must be."""
    with pytest.raises(FactProcessError) as info:
        parse_hardware(output)
    message = str(info.value)
    assert message.isascii() and message.isprintable() and len(message) <= 320, message
    assert SECRET not in message
    assert isinstance(HardwareFact().process(output), Unreadable)
    return message


NVIDIA_MEMORY = {
    "negative": "-24576",
    "superscript two": "²",
    "superscript in digits": "2457²",
    "arabic-indic digits": "٢٤٥٧٦",
    "float overflow": "1e400",
    "decimal": "24576.0",
    "hex": "0x6000",
    "nan": "NaN",
    "infinity": "inf",
    "with units": "24576 MiB",
    "empty": "",
    "non-UTF-8 (filtered on the host)": f"245{DEL}{DEL}76",
    "replacement character": "245\ufffd76",
    "surrogate escape": "245\udcff76",
}


@pytest.mark.parametrize("value", NVIDIA_MEMORY.values(), ids=NVIDIA_MEMORY.keys())
def test_nvidia_memory_must_be_ascii_digits(value):
    message = refused(linux(*nvidia("NVIDIA RTX A5000, 24564", f"NVIDIA GeForce RTX 4090, {value}")))
    assert message.startswith("hardware: nvidia-smi") and "line 2" in message
    assert "NVIDIA GeForce RTX 4090" in message  # the offending line, as an excerpt


@pytest.mark.parametrize(("mib", "ok"), [
    (256, True), (255, False), (1, False), (0, False), (1024 * 1024, True), (1024 * 1024 + 1, False),
    (10**26, False), (10**19, False),
])
def test_nvidia_memory_range(mib, ok):
    output = linux(*nvidia(f"NVIDIA Test GPU, {mib}"))
    if ok:
        assert parse_hardware(output).gpus[0].vram_bytes == mib * MiB
    else:
        assert "out of range (256 MiB to 1 TiB)" in refused(output)


NVIDIA_LINES = {
    "empty name": (", 24576", "expected 'name, memory.total'"),
    "no comma": ("24576", "expected 'name, memory.total'"),
    "escape sequence in the name": ("NVIDIA \x1b[31mRTX\x1b[0m, 24576", "non-ASCII or control bytes"),
    "NUL in the name": ("NVIDIA\x00RTX, 24576", "non-ASCII or control bytes"),
    "non-UTF-8 name (filtered on the host)": (f"NVIDIA {DEL}{DEL} RTX, 24576", "non-ASCII or control bytes"),
    "unicode name": ("NVIDIA RTX Ā5000, 24576", "non-ASCII or control bytes"),
    "a very long line": ("N" * 100_000 + ", 24576", "100007 characters long"),
}


@pytest.mark.parametrize(("line", "why"), NVIDIA_LINES.values(), ids=NVIDIA_LINES.keys())
def test_nvidia_broken_lines(line, why):
    message = refused(linux(*nvidia(line)))
    assert message.startswith("hardware: nvidia-smi") and why in message


def test_excerpts_are_short_and_printable():
    message = refused(linux(*nvidia("NVIDIA \x1b]0;pwned\x07 " + "x" * 500 + ", 24576")))
    excerpt = message[message.index(": '") + 2:]
    assert len(excerpt) <= 82 and excerpt.endswith("...'") and "\x1b" not in message and "?]0;pwned?" in message


def test_huge_output_fails_without_quoting_it():
    message = refused(linux(*nvidia(*(f"NVIDIA Test GPU, {24576 + i}" for i in range(100_000)))))
    assert "100000 lines" in message and "24577" not in message


def test_output_cut_short_is_not_a_host_without_gpu():
    """The exit status comes after the output: without it the output was cut (over the cap)."""
    assert "cut short" in refused(linux(f"{M}nvidia", "NVIDIA GeForce RTX 4090, 24576"))


@pytest.mark.parametrize("rc", ["", "-1", "1e400", "²", f"0{DEL}", "0\n0", "1000"])
def test_exit_status_must_be_a_small_number(rc):
    assert "nvidia-smi: unexpected exit status" in refused(linux(*nvidia("NVIDIA X, 24576", rc=rc)))


def test_a_failing_tool_is_a_warning_with_a_clean_excerpt_but_non_ascii_still_fails():
    hw = parse_hardware(linux(*nvidia("NVIDIA-SMI has failed", "\tsecond line", rc="9")))
    assert hw.gpus == () and hw.warnings[0].startswith("nvidia-smi failed (exit 9")
    assert "non-ASCII" in refused(linux(*nvidia(f"NVIDIA-SMI {DEL}{DEL}", rc="9")))


def test_a_tool_that_prints_our_markers_cannot_pose_as_another_section():
    """A section that appears twice: a tool printed our marker (here: to claim another login)."""
    message = refused(linux(*nvidia(f"{M}login", "dev", "NVIDIA X, 24576")))
    assert "'login' appears 2 times" in message


AMD_JSON = {
    "negative": ('{"card0": {"VRAM Total Memory (B)": "-17163091968"}}', "not a whole number"),
    "negative number": ('{"card0": {"VRAM Total Memory (B)": -17163091968}}', "out of range"),
    "superscript": ('{"card0": {"VRAM Total Memory (B)": "²"}}', "non-ASCII"),
    "float overflow": ('{"card0": {"VRAM Total Memory (B)": 1e400}}', "not a whole number"),
    "float overflow text": ('{"card0": {"VRAM Total Memory (B)": "1e400"}}', "not a whole number"),
    "nan": ('{"card0": {"VRAM Total Memory (B)": NaN}}', "not a whole number"),
    "infinity": ('{"card0": {"VRAM Total Memory (B)": Infinity}}', "not a whole number"),
    "boolean": ('{"card0": {"VRAM Total Memory (B)": true}}', "not a whole number"),
    "missing": ('{"card0": {"VRAM Total Used Memory (B)": "1"}}', "not a whole number"),
    "card not an object": ('{"card0": "17163091968"}', "not a whole number"),
    "one byte": ('{"card0": {"VRAM Total Memory (B)": "1"}}', "out of range"),
    "10^26 MiB": ('{"card0": {"VRAM Total Memory (B)": %d}}' % (10**26 * MiB), "out of range"),
    "thousands of digits": ('{"card0": {"VRAM Total Memory (B)": %s}}' % ("9" * 4000), "out of range"),
    "deep nesting": ("[" * 4000 + "\n" + "]" * 4000, "unreadable JSON"),
    "a huge line": ("[" + "1," * 10_000 + "1]", "20003 characters long"),
    "a list": ("[]", "expected a JSON object"),
    "not JSON": ("WARNING: AMD GPU device(s) is/are in a low-power state", "not JSON"),
    "non-UTF-8 (filtered on the host)": ('{"card0": {"VRAM Total Memory (B)": "17%s"}}' % DEL, "non-ASCII"),
}


@pytest.mark.parametrize(("text", "why"), AMD_JSON.values(), ids=AMD_JSON.keys())
def test_rocm_smi_hostile_json(text, why):
    message = refused(linux(*amd(text)))
    assert message.startswith("hardware: rocm-smi") and why in message


def test_rocm_smi_accepts_numbers_and_text_in_range_and_skips_other_keys():
    text = ('{"card1": {"VRAM Total Memory (B)": 17163091968}, "card0": {"VRAM Total Memory (B)": "268435456"},'
            ' "system": {"Driver version": "6.8"}}')
    assert [g.vram_bytes for g in parse_hardware(linux(*amd(text))).gpus] == [256 * MiB, 17163091968]


# The kernel's KFD topology (node lines as the fact prints them) and rocm-smi's product names:
# each AMD card's gfx target. Garbage there fails the host, like garbage in the sizes.
CARD = '{"card0": {"VRAM Total Memory (B)": "17163091968"}}'


def kfd(*lines: str) -> list[str]:
    return [f"{M}kfd", *lines]


KFD = {
    "no end line (cut short)": (["node 1 gfx_target_version 100302"], "KFD topology: output cut short"),
    "empty": ([], "KFD topology: output cut short"),
    "not a node line": (["gfx_target_version 100302", "end"], "KFD topology line 1: expected"),
    "negative": (["node 1 gfx_target_version -100302", "end"], "KFD topology line 1: expected"),
    "superscript": (["node 1 gfx_target_version 10030²", "end"], "non-ASCII"),
    "arabic-indic digits": (["node 1 gfx_target_version ١٠٠٣٠٢", "end"], "non-ASCII"),
    "non-UTF-8 (filtered on the host)": ([f"node 1 gfx_target_version 1003{DEL}2", "end"], "non-ASCII"),
    "hex": (["node 1 gfx_target_version 0x18786", "end"], "KFD topology line 1: expected"),
    "float": (["node 1 gfx_target_version 1e400", "end"], "KFD topology line 1: expected"),
    "too many digits": (["node 1 gfx_target_version 1234567890", "end"], "KFD topology line 1: expected"),
    "minor above 15": (["node 1 gfx_target_version 101600", "end"], "gfx_target_version 101600 is no gfx target"),
    "stepping above 15": (["node 1 gfx_target_version 100316", "end"], "is no gfx target"),
    "absurd major": (["node 1 gfx_target_version 990000", "end"], "is no gfx target"),
    "node twice": (["node 1 gfx_target_version 100302", "node 1 gfx_target_version 110003", "end"],
                   "node 1 listed twice"),
    "trailing garbage": (["node 1 gfx_target_version 100302 extra", "end"], "KFD topology line 1: expected"),
    "our marker inside": ([f"{M}kfd", "end"], "'kfd' appears 2 times"),
    "thousands of nodes": ([f"node {i} gfx_target_version 100302" for i in range(300)] + ["end"],
                           "301 lines of output"),
}


@pytest.mark.parametrize(("lines", "why"), KFD.values(), ids=KFD.keys())
def test_hostile_kfd_topology(lines, why):
    message = refused(linux(*amd(CARD), *kfd(*lines)))
    assert why in message


def product(text: str, rc: str = "0") -> list[str]:
    return [f"{M}amd-product", *text.split("\n"), "", f"{M}amd-product-rc", rc]


GFX_VERSION = {
    "a number": ('{"card0": {"GFX Version": 1032}}', "GFX Version is not a gfx target: '1032'"),
    "not a target": ('{"card0": {"GFX Version": "gfx10 32; rm -rf /"}}', "GFX Version is not a gfx target"),
    "too long": ('{"card0": {"GFX Version": "gfx%s"}}' % ("1" * 300), "GFX Version is not a gfx target"),
    "a list": ('{"card0": {"GFX Version": ["gfx1032"]}}', "GFX Version is not a gfx target"),
    "non-ASCII": ('{"card0": {"GFX Version": "gfx1032²"}}', "non-ASCII"),
    "not JSON": ("ERROR: GPU[0] : Unable to get GFX version", "rocm-smi --showproductname: not JSON"),
    "a list of cards": ("[]", "expected a JSON object"),
    "deep nesting": ("[" * 4000 + "\n" + "]" * 4000, "unreadable JSON"),
}


@pytest.mark.parametrize(("text", "why"), GFX_VERSION.values(), ids=GFX_VERSION.keys())
def test_hostile_rocm_smi_product_names(text, why):
    message = refused(linux(*amd(CARD), *product(text)))
    assert message.startswith("hardware: rocm-smi --showproductname") and why in message


def test_product_names_of_other_cards_and_unknown_forms_are_no_failure():
    text = '{"card0": {"GFX Version": "gfx99999"}, "card7": {"GFX Version": 3}, "system": []}'
    assert parse_hardware(linux(*amd(CARD), *product(text))).gfx_targets == {}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=40), st.builds("node {} gfx_target_version {}".format,
                                                            st.integers(-5, 10**4), st.integers(-5, 10**7))),
                max_size=6), st.booleans())
def test_any_kfd_topology_parses_or_fails_the_host(lines, ended):
    """Whatever the kernel (or something posing as it) prints: targets or a FactProcessError."""
    try:
        hw = parse_hardware(linux(*amd(CARD), *kfd(*lines, *(["end"] if ended else []))))
    except FactProcessError as exc:
        assert str(exc).isascii() and str(exc).isprintable() and SECRET not in str(exc)
    else:
        assert set(hw.gfx_targets) <= {"card0"}
        assert all(re.fullmatch(r"gfx[0-9]{1,2}[0-9a-f]{2}", gfx) for gfx in hw.gfx_targets.values())


def test_hostile_kfd_tree_on_this_machine(tmp_path):
    """The real command over a topology tree whose properties carry bytes that are not UTF-8 and
    endless nodes: refused (or capped) on the host, decoded without error here."""
    nodes = tmp_path / "nodes"
    (nodes / "1").mkdir(parents=True)
    (nodes / "1" / "properties").write_bytes(b"gfx_target_version 1003\xff\xfe2\n")
    command = HardwareFact().command(("root",)).replace("/sys/class/kfd/kfd/topology/nodes", str(nodes))
    raw = subprocess.run(["sh", "-c", command], capture_output=True, timeout=60).stdout
    lines = [line.decode("utf-8") for line in raw.splitlines()]
    assert f"node 1 gfx_target_version 1003{DEL}{DEL}2" in lines
    for i in range(2, 4000):  # more nodes than the cap lets through: cut, and refused as cut
        (nodes / str(i)).mkdir()
        (nodes / str(i) / "properties").write_text(f"gfx_target_version {'1' * 9}\n")
    raw = subprocess.run(["sh", "-c", command], capture_output=True, timeout=60).stdout
    lines = [line.decode("utf-8") for line in raw.splitlines()]
    assert len(raw) < 200_000 and "end" not in lines[lines.index(f"{M}kfd"):]
    kfd_only = [f"{M}uname", "Linux", "x86_64", f"{M}meminfo", "MemTotal: 65536000 kB"]
    kfd_only += lines[lines.index(f"{M}kfd"):lines.index(f"{M}login")]
    result = HardwareFact().process(kfd_only)
    assert isinstance(result, Unreadable) and ("cut short" in result.message or "lines of output" in result.message)


RAM = {
    "negative": ("-65536000", "cannot read MemTotal"),
    "superscript": ("²", "non-ASCII"),
    "float overflow": ("1e400", "cannot read MemTotal"),
    "too small": (str(1024 * 1024 - 1), "out of range (1 GiB to 64 TiB)"),
    "too large": (str(64 * 1024**3 + 1), "out of range (1 GiB to 64 TiB)"),
    "10^26": (str(10**26), "out of range (1 GiB to 64 TiB)"),
}


@pytest.mark.parametrize(("value", "why"), RAM.values(), ids=RAM.keys())
def test_linux_ram(value, why):
    output = [f"{M}uname", "Linux", "x86_64", f"{M}meminfo", f"MemTotal:       {value} kB"]
    assert why in refused(output)


def test_ram_range_edges():
    assert parse_hardware(linux(ram_kb=1024 * 1024)).ram_bytes == GiB
    assert parse_hardware(linux(ram_kb=64 * 1024**3)).ram_bytes == 64 * 1024 * GiB


@pytest.mark.parametrize(("memsize", "limit", "why"), [
    ("-1", "0", "hw.memsize is not a whole number"),
    ("4²", "0", "non-ASCII"),
    (str(512 * MiB), "0", "hw.memsize out of range"),
    (str(65 * 1024 * GiB), "0", "hw.memsize out of range"),
    (str(48 * GiB), "-1", "wired_limit_mb is not a whole number"),
    (str(48 * GiB), str(49 * 1024), "wired_limit_mb out of range"),
    (str(48 * GiB), "1e400", "wired_limit_mb is not a whole number"),
])
def test_darwin_sysctl(memsize, limit, why):
    assert why in refused(darwin(memsize, limit))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=6), st.text(max_size=6))
def test_any_nvidia_output_parses_or_fails_the_host(lines, rc):
    """Whatever the tool prints: a plan or a FactProcessError, never another exception."""
    try:
        parse_hardware(linux(*nvidia(*lines, rc=rc)))
    except FactProcessError as exc:
        assert str(exc).isascii() and str(exc).isprintable()


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["card0", "card1", "VRAM Total Memory (B)", "x"]), inner, max_size=3),
                    max_leaves=8))
def test_any_rocm_json_parses_or_fails_the_host(value):
    import json

    try:
        parse_hardware(linux(*amd(json.dumps(value))))
    except FactProcessError as exc:
        assert str(exc).isascii() and str(exc).isprintable()


# The real command, on this machine, with a hostile nvidia-smi first on PATH.

TOOLS = {
    "non-UTF-8": (b"NVIDIA GeForce RTX 4090, \xff\xfe24576\n", "non-ASCII or control bytes in line 1"),
    "non-UTF-8 name": (b"NVIDIA \xc3\x28 RTX, 24576\n", "non-ASCII or control bytes in line 1"),
    "negative": (b"NVIDIA GeForce RTX 4090, -24576\n", "memory.total is not a whole number of MiB"),
    "superscript": ("NVIDIA GeForce RTX 4090, ²\n".encode(), "non-ASCII or control bytes in line 1"),
    "1e400": (b"NVIDIA GeForce RTX 4090, 1e400\n", "memory.total is not a whole number of MiB"),
    "markers": (f"{M}login\nnobody\n{M}users\n".encode(), "appears 2 times"),
}


def run_command_with(tmp_path: Path, script: str) -> list[str]:
    """The hardware command as pyinfra runs it: lines decoded as strict UTF-8 (it must not fail)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text(script)
    tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    raw = subprocess.run(["sh", "-c", HardwareFact().command(("root",))], capture_output=True, env=env,
                         timeout=60).stdout
    return [line.decode("utf-8") for line in raw.splitlines()]


@pytest.mark.parametrize(("printed", "why"), TOOLS.values(), ids=TOOLS.keys())
def test_hostile_tool_on_this_machine(tmp_path, printed, why):
    data = tmp_path / "out"
    data.write_bytes(printed)
    result = HardwareFact().process(run_command_with(tmp_path, f"#!/bin/sh\ncat {data}\n"))
    assert isinstance(result, Unreadable) and why in result.message, result


def test_endless_tool_output_is_capped_on_the_host(tmp_path):
    result = HardwareFact().process(run_command_with(tmp_path, "#!/bin/sh\nyes \"$(printf '%0900d' 0)\"\n"))
    assert isinstance(result, Unreadable) and "cut short" in result.message


def test_tool_output_without_a_final_newline_still_parses(tmp_path):
    hw = HardwareFact().process(run_command_with(tmp_path, "#!/bin/sh\nprintf 'NVIDIA RTX A5000, 24564'\n"))
    assert [(g.name, g.vram_bytes) for g in hw.gpus] == [("NVIDIA RTX A5000", 24564 * MiB)]


# The deploy's op-generation phase and the fleet commands, on @fake hosts.

BROKEN = [f"{M}uname", "Linux", "x86_64", f"{M}login", "root", f"{M}meminfo", "MemTotal: 65536000 kB",
          f"{M}nvidia", "NVIDIA GeForce RTX 4090, -24576", "", f"{M}nvidia-rc", "0"]
EXPECTED = "hardware: nvidia-smi line 1: memory.total is not a whole number of MiB: 'NVIDIA GeForce RTX 4090, -24576'"


def fake_host(hardware: list[str]) -> dict:
    return {"fake_delay": 0, "fake_delay_jitter": 0,
            "fake_responses": {**linux_base(), "uname -s; uname -m": hardware, "/api/tags": no_ollama()}}


def test_deploy_fails_the_broken_host_alone(monkeypatch):
    planned = plan_deploy([("@fake/good", fake_host(linux_hardware(64, (24576,)))),
                           ("@fake/broken", fake_host(BROKEN))], monkeypatch)
    [failure] = planned["@fake/broken"]
    assert failure.name == "Hardware facts"
    assert "@fake/broken: hardware: nvidia-smi line 1: memory.total is not a whole number of MiB" in failure.text()
    assert "NVIDIA GeForce RTX 4090, -24576" in failure.text()
    assert len(planned["@fake/good"]) > 5


@pytest.fixture
def fleet(tmp_path) -> Path:
    inventory = tmp_path / "fleet.py"
    inventory.write_text(f"hosts = [('@fake/good', {fake_host(linux_hardware(64, (24576,)))!r}),\n"
                         f"         ('@fake/broken', {fake_host(BROKEN)!r})]\n")
    return inventory


def localcode(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0"}
    result = subprocess.run([sys.executable, "-m", "localcode.cli", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def test_plan_reports_the_broken_host(fleet):
    result = localcode("plan", str(fleet))
    assert result.returncode == 1
    assert f"@fake/broken: error: {EXPECTED}" in result.stdout
    assert any(line.startswith("@fake/good ") and "nvidia 24 GiB" in line and "ERROR" not in line
               for line in result.stdout.splitlines())


def test_bundle_names_the_broken_host_and_bundles_the_others(fleet, tmp_path):
    empty = tmp_path / "www"
    empty.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(empty))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        result = localcode("bundle", str(tmp_path / "bundle"), "--inventory", str(fleet), "--quiet",
                           "--ollama-url", url, "--claude-url", url, "--registry", url)
    finally:
        server.shutdown()
        server.server_close()
    assert f"warning: no sizing for @fake/broken ({EXPECTED}); add its model with --model" in result.stderr
    assert result.returncode == 1 and "HTTP 404" in result.stderr  # it went on to fetch for the good host


def test_doctor_reports_the_broken_host(fleet):
    result = localcode("doctor", str(fleet))
    assert result.returncode == 1
    assert f"@fake/broken: ✗ {EXPECTED}" in result.stdout
