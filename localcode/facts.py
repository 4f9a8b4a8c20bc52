"""Facts: each gathers what belongs together in one remote command (one SSH round trip) and
parses it into a typed value. Output that cannot be parsed fails that host only
(FactProcessError), its message carrying a short sanitized excerpt, never the raw output."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError

from .amd import gfx_from_kfd, gfx_from_rocm_smi
from .shell import sh_quote
from .sizing import GiB, Gpu, Hardware, MiB

MARK = "::localcode::"
# The LaunchDaemon that keeps Apple Silicon's GPU memory limit across reboots
# (localcode/apple.py): whether it is there decides what the deploy does when the key is unset.
IOGPU_LABEL = "com.localcode.iogpu"
IOGPU_DAEMON = f"/Library/LaunchDaemons/{IOGPU_LABEL}.plist"


def sections(lines: list[str]) -> dict[str, list[str]]:
    """Split marked output (`::localcode::name` lines) into named sections."""
    sections: dict[str, list[str]] = {}
    current = sections.setdefault("", [])
    for line in lines:
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK):].strip(), [])
        else:
            current.append(line)
    return sections


def _excerpt(text: str, limit: int = 80) -> str:
    """What an error message may quote of a host's output: printable ASCII (anything else
    becomes `?`), at most `limit` characters. Never the whole output: it may hold private data."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text.strip())
    return clean if len(clean) <= limit else clean[:limit - 3] + "..."


def _fail(fact: str, why: str, excerpt: str | None = None) -> FactProcessError:
    """This host's fact failed: a short reason and, where one helps, the offending output cut
    to a sanitized excerpt."""
    message = f"{fact}: {_excerpt(why, 200)}"
    if excerpt:
        message += f": {_excerpt(excerpt)!r}"
    return FactProcessError(message)


@dataclass(frozen=True)
class Unreadable:
    """A fact whose output could not be parsed, with the reason (the tool and a short excerpt)."""

    message: str


# Sane ranges: outside them the number is garbage, not hardware.
GPU_RANGE = (256 * MiB, 1024 * GiB)
RAM_RANGE = (1 * GiB, 64 * 1024 * GiB)
# A GPU tool's output is cut at this many bytes on the host (ample for 64 GPUs) and every byte
# outside printable ASCII becomes DEL there, so nothing reaches the control side that cannot be
# decoded (pyinfra's readers decode UTF-8 strictly and drop the rest of the output).
TOOL_OUTPUT_LIMIT = 64 * 1024
ASCII_ONLY = "LC_ALL=C tr -c '\\11\\12\\40-\\176' '\\177'"
MAX_TOOL_LINES = 256
MAX_LINE = 4096
WHOLE = re.compile(r"[0-9]{1,64}")  # ASCII digits only ('²'.isdigit() is True, int('²') raises)
CARD = re.compile(r"card[0-9]{1,3}")
# The kernel's view of AMD GPUs (KFD topology): one node per CPU and GPU, each with a
# `properties` file of `key value` lines; `gfx_target_version` is 0 on CPU nodes. Needs no ROCm.
KFD_NODES = "/sys/class/kfd/kfd/topology/nodes"
KFD_END = "end"  # printed after the last node: without it the list was cut short
KFD_LINE = re.compile(r"node ([0-9]{1,4})(?: gfx_target_version ([0-9]{1,9}))?")
ROCM_GFX = re.compile(r"gfx[0-9a-f]{3,5}")


def _whole(text: str) -> int | None:
    return int(text) if WHOLE.fullmatch(text) else None


def _in_range(what: str, value: int, bounds: tuple[int, int], excerpt: str) -> int:
    low, high = bounds
    if not low <= value <= high:
        raise _fail("hardware", f"{what} out of range ({_size(low)} to {_size(high)})", excerpt)
    return value


def _size(n: int) -> str:
    return f"{n // 1024**4} TiB" if n >= 1024**4 else f"{n // GiB} GiB" if n >= GiB else f"{n // MiB} MiB"


def _text_lines(tool: str, lines: list[str]) -> list[str]:
    """The non-blank lines of a tool's output, refused when any is not printable ASCII (the
    host turned undecodable bytes into DEL), too long, or when there are too many."""
    kept = [line for line in lines if line.strip()]
    if len(kept) > MAX_TOOL_LINES:
        raise _fail("hardware", f"{tool}: {len(kept)} lines of output, more than any machine gives", kept[0])
    for number, line in enumerate(kept, 1):
        if any(not (" " <= c <= "~" or c == "\t") for c in line):
            raise _fail("hardware", f"{tool}: non-ASCII or control bytes in line {number}", line)
        if len(line) > MAX_LINE:
            raise _fail("hardware", f"{tool}: line {number} is {len(line)} characters long", line)
    return kept


def _exit_status(tool: str, section: str, s: dict[str, list[str]]) -> int:
    """The tool's exit status, printed after its output; missing when the output was cut."""
    if f"{section}-rc" not in s:
        raise _fail("hardware", f"{tool}: output cut short (more than {TOOL_OUTPUT_LIMIT // 1024} KiB?), "
                                "no exit status")
    lines = [line.strip() for line in s[f"{section}-rc"] if line.strip()]
    status = _whole(lines[0]) if len(lines) == 1 and len(lines[0]) <= 3 else None
    if status is None:
        raise _fail("hardware", f"{tool}: unexpected exit status", " ".join(lines))
    return status


def _kfd_command() -> str:
    """Each KFD node's number and gfx_target_version, then `end` (all capped), and only where
    the kernel lists no GPU target, rocm-smi's product names (their "GFX Version")."""
    return (f"if [ -d {KFD_NODES} ]; then echo {MARK}kfd; {{ for n in {KFD_NODES}/*; do "
            f"[ -r \"$n/properties\" ] && echo \"node ${{n##*/}} $(grep -a -m1 '^gfx_target_version ' \"$n/properties\")\"; "
            f"done; echo {KFD_END}; }} 2>/dev/null | head -c {TOOL_OUTPUT_LIMIT}; echo; fi; "
            f"if ! grep -qs '^gfx_target_version [1-9]' {KFD_NODES}/*/properties; then "
            f"{_bounded('amd-product', 'rocm-smi', '--showproductname --json')}; fi")


def _bounded(section: str, tool: str, args: str) -> str:
    """Run a GPU tool when present: stdout and stderr, capped, then its exit status (cut off
    with the output when the cap is reached, which the parser refuses)."""
    return (f"if command -v {tool} >/dev/null 2>&1; then echo {MARK}{section}; "
            f"{{ {tool} {args} 2>&1; rc=$?; echo; echo {MARK}{section}-rc; echo $rc; }} "
            f"| head -c {TOOL_OUTPUT_LIMIT}; echo; fi")


@dataclass(frozen=True)
class HostHardware:
    os: str
    arch: str
    ram_bytes: int
    gpus: tuple[Gpu, ...] = ()
    apple_chip: str | None = None
    wired_limit_bytes: int | None = None
    warnings: tuple[str, ...] = field(default=())
    login: str = ""   # the user the deploy runs as on this host
    accounts: dict = field(default_factory=dict)  # developer user -> Account | None
    iogpu_daemon: bool = False  # our LaunchDaemon (IOGPU_DAEMON) is installed
    gfx_targets: dict = field(default_factory=dict)  # AMD card (rocm-smi's name) -> gfx target, where known

    @property
    def apple_silicon(self) -> bool:
        return self.os == "Darwin" and self.arch == "arm64"

    def hardware(self) -> Hardware:
        return Hardware(self.ram_bytes, () if self.apple_silicon else self.gpus,
                        self.apple_silicon, self.wired_limit_bytes)


class HardwareFact(FactBase):
    """OS, arch, RAM and GPUs: /proc/meminfo or sysctl; nvidia-smi; rocm-smi JSON and each AMD
    card's gfx target (the kernel's KFD topology, else rocm-smi's product names); Apple chip and
    iogpu.wired_limit_mb. A GPU tool that fails (no working driver) becomes a warning. Also who
    we are on the host and the developer accounts: the host's identity, in the same trip.
    The hardware part reaches us as printable ASCII only, each GPU tool's output capped."""

    def command(self, users: tuple[str, ...] = ()) -> str:
        hardware = "; ".join([
            f"echo {MARK}uname; uname -s; uname -m",
            f"if [ -r /proc/meminfo ]; then echo {MARK}meminfo; grep '^MemTotal:' /proc/meminfo; fi",
            f"if [ \"$(uname -s)\" = Darwin ]; then echo {MARK}darwin; sysctl -n hw.memsize; "
            "sysctl -n machdep.cpu.brand_string; sysctl -n iogpu.wired_limit_mb 2>/dev/null || echo 0; "
            f"echo {MARK}iogpu-daemon; if [ -e {IOGPU_DAEMON} ]; then echo present; fi; fi",
            _bounded("nvidia", "nvidia-smi", "--query-gpu=name,memory.total --format=csv,noheader,nounits"),
            _bounded("amd", "rocm-smi", "--showmeminfo vram --json"),
            _kfd_command(),
        ])
        return "; ".join([
            f"{{ {hardware}; }} | {ASCII_ONLY}",
            f"echo {MARK}login; id -un",
            AccountsFact().command(users),
        ])

    def process(self, output: list[str]) -> HostHardware | Unreadable:
        """Output that cannot be parsed is returned as Unreadable, not raised: the deploy then
        fails this host alone through an operation, and plan and doctor show the reason
        (pyinfra would only log it and hand back None)."""
        try:
            return parse_hardware(output)
        except FactProcessError as exc:
            return Unreadable(str(exc))


def parse_hardware(output: list[str]) -> HostHardware:
    markers = Counter(line[len(MARK):].strip() for line in output if line.startswith(MARK))
    repeated = sorted(name for name, count in markers.items() if count > 1)
    if repeated:  # a tool printed our markers: it could pose as another section (login, users)
        raise _fail("hardware", f"section {repeated[0]!r} appears {markers[repeated[0]]} times "
                                "(a tool printed our section marker?)")
    s = sections(output)
    uname = _text_lines("uname", s.get("uname", []))
    if len(uname) != 2:
        raise _fail("hardware", "uname: expected the OS and the architecture", " ".join(uname or output[:1]))
    os_name, arch = uname[0].strip(), uname[1].strip()
    warnings: list[str] = []
    chip = wired = None
    daemon = False
    if os_name == "Darwin":
        ram, chip, wired = _darwin(_text_lines("sysctl", s.get("darwin", [])))
        daemon = _present("iogpu-daemon", s)
    else:
        meminfo = _text_lines("/proc/meminfo", s.get("meminfo", []))
        match = re.fullmatch(r"MemTotal:\s+([0-9]{1,64}) kB", meminfo[0].strip()) if meminfo else None
        if not match:
            raise _fail("hardware", "/proc/meminfo: cannot read MemTotal", meminfo[0] if meminfo else "")
        ram = _in_range("/proc/meminfo: MemTotal", int(match.group(1)) * 1024, RAM_RANGE, meminfo[0])
    gpus: list[Gpu] = []
    if "nvidia" in s:
        gpus += _nvidia(s, warnings)
    amd = _amd(s, warnings) if "amd" in s else []
    gpus += amd
    kfd = _kfd(s) if "kfd" in s else []  # read (and checked) even without rocm-smi's cards
    gfx = _gfx_targets(amd, kfd, s, warnings) if amd else {}
    login = (s.get("login") or [""])[0].strip()
    return HostHardware(os_name, arch, ram, tuple(gpus), chip, wired, tuple(warnings), login,
                        parse_accounts(output) if "users" in s else {}, daemon, gfx)


def _present(section: str, s: dict[str, list[str]]) -> bool:
    """A file test's answer: `present`, or nothing."""
    lines = _text_lines(section, s.get(section, []))
    if lines not in ([], ["present"]):
        raise _fail("hardware", f"{section}: expected 'present' or nothing", " ".join(lines))
    return bool(lines)


def _darwin(lines: list[str]) -> tuple[int, str, int | None]:
    """hw.memsize (bytes), the CPU brand, iogpu.wired_limit_mb (0: Metal's default)."""
    if len(lines) != 3:
        raise _fail("hardware", "sysctl: expected hw.memsize, the CPU brand and iogpu.wired_limit_mb",
                    " ".join(lines))
    memsize, chip, limit = (line.strip() for line in lines)
    ram = _whole(memsize)
    if ram is None:
        raise _fail("hardware", "sysctl hw.memsize is not a whole number of bytes", memsize)
    _in_range("sysctl hw.memsize", ram, RAM_RANGE, memsize)
    limit_mb = _whole(limit)
    if limit_mb is None:
        raise _fail("hardware", "sysctl iogpu.wired_limit_mb is not a whole number of MiB", limit)
    if limit_mb == 0:
        return ram, chip, None
    return ram, chip, _in_range("sysctl iogpu.wired_limit_mb", limit_mb * MiB, (MiB, ram), limit)


def _tool_lines(tool: str, section: str, vendor: str, s: dict[str, list[str]],
                warnings: list[str]) -> list[str] | None:
    """A GPU tool's output lines, or None (with a warning) when the tool failed: no working
    driver means no GPU, not a broken host."""
    status = _exit_status(tool, section, s)
    lines = _text_lines(tool, s[section])
    if status != 0:
        warnings.append(f"{tool} failed (exit {status}; no working {vendor} driver?): "
                        f"{_excerpt(' '.join(lines))}; GPU ignored")
        return None
    return lines


def _nvidia(s: dict[str, list[str]], warnings: list[str]) -> list[Gpu]:
    """`name, memory.total` lines (MiB, no units)."""
    lines = _tool_lines("nvidia-smi", "nvidia", "NVIDIA", s, warnings)
    if lines is None:
        return []
    gpus = []
    for number, line in enumerate(lines, 1):
        name, comma, mib = line.rpartition(",")
        name, mib = name.strip(), mib.strip()
        if not comma or not name:
            raise _fail("hardware", f"nvidia-smi line {number}: expected 'name, memory.total'", line)
        if mib == "[N/A]":  # unified-memory NVIDIA boards (DGX Spark) report no VRAM size
            warnings.append(f"nvidia-smi reports no memory size for {name}; GPU ignored")
            continue
        value = _whole(mib)
        if value is None:
            raise _fail("hardware", f"nvidia-smi line {number}: memory.total is not a whole number of MiB", line)
        gpus.append(Gpu("nvidia", _in_range(f"nvidia-smi line {number}: memory.total", value * MiB, GPU_RANGE, line),
                        name))
    return gpus


def _rocm_json(tool: str, lines: list[str]) -> dict:
    """rocm-smi's --json output: an object (of cards), its numbers kept as text."""
    text = "\n".join(lines)
    try:
        # Numbers stay text (1e400, NaN, Infinity included), checked like every other number.
        cards = json.loads(text, parse_float=str, parse_constant=str)
    except json.JSONDecodeError as exc:
        raise _fail("hardware", f"{tool}: not JSON ({exc.msg} at line {exc.lineno})",
                    text[max(0, exc.pos - 40):exc.pos + 40]) from None
    except RecursionError as exc:  # nested deeper than the parser goes
        raise _fail("hardware", f"{tool}: unreadable JSON ({type(exc).__name__})", text) from None
    if not isinstance(cards, dict):
        raise _fail("hardware", f"{tool}: expected a JSON object of cards", text)
    return cards


def _cards(cards: dict) -> list[tuple[str, Any]]:
    """rocm-smi's cards (card0, card1, ...) in their numeric order; its other keys skipped."""
    return sorted(((name, card) for name, card in cards.items() if CARD.fullmatch(name)),
                  key=lambda item: int(item[0][4:]))


def _amd(s: dict[str, list[str]], warnings: list[str]) -> list[Gpu]:
    """rocm-smi's JSON: {"card0": {"VRAM Total Memory (B)": "17163091968", ...}, ...}."""
    lines = _tool_lines("rocm-smi", "amd", "AMD", s, warnings)
    if lines is None:
        return []
    gpus = []
    for name, card in _cards(_rocm_json("rocm-smi", lines)):
        total = card.get("VRAM Total Memory (B)") if isinstance(card, dict) else None
        value = total if type(total) is int else _whole(total) if isinstance(total, str) else None
        if value is None:
            raise _fail("hardware", f"rocm-smi {name}: VRAM Total Memory (B) is not a whole number of bytes",
                        json.dumps(total))
        gpus.append(Gpu("amd", _in_range(f"rocm-smi {name}: VRAM Total Memory (B)", value, GPU_RANGE, str(value)),
                        name))
    return gpus


def _kfd(s: dict[str, list[str]]) -> list[str]:
    """The GPU nodes' gfx targets in node order, from `node <n> gfx_target_version <value>`
    lines ending in `end` (a node without the key is skipped: kernels before it had none)."""
    lines = _text_lines("KFD topology", s["kfd"])
    if not lines or lines[-1].strip() != KFD_END:
        raise _fail("hardware", "KFD topology: output cut short (no end line)")
    nodes: dict[int, str] = {}
    for number, line in enumerate(lines[:-1], 1):
        match = KFD_LINE.fullmatch(line.strip())
        if not match:
            raise _fail("hardware", f"KFD topology line {number}: expected 'node <n> gfx_target_version <value>'", line)
        node, value = int(match.group(1)), match.group(2)
        if node in nodes:
            raise _fail("hardware", f"KFD topology: node {node} listed twice", line)
        if value is None or int(value) == 0:  # a CPU node, or a kernel too old to say
            nodes[node] = ""
            continue
        gfx = gfx_from_kfd(int(value))
        if gfx is None:
            raise _fail("hardware", f"KFD topology node {node}: gfx_target_version {value} is no gfx target", line)
        nodes[node] = gfx
    return [nodes[n] for n in sorted(nodes) if nodes[n]]


def _gfx_targets(amd: list[Gpu], kfd: list[str], s: dict[str, list[str]], warnings: list[str]) -> dict[str, str]:
    """Each rocm-smi card's gfx target: the kernel's GPU nodes matched to the cards in order
    (both enumerate the devices the same way), else rocm-smi's "GFX Version". Where neither
    tells, the card has none here (the plan counts it and says so)."""
    names = [g.name for g in amd]
    if kfd:
        if len(kfd) == len(names) or len(set(kfd)) == 1:
            return dict(zip(names, kfd if len(kfd) == len(names) else kfd[:1] * len(names)))
        warnings.append(f"the kernel lists {len(kfd)} AMD GPUs ({', '.join(kfd)}), rocm-smi {len(names)}: "
                        "which card is which target is unknown")
        return {}
    if "amd-product" not in s:
        return {}
    status = _exit_status("rocm-smi --showproductname", "amd-product", s)
    lines = _text_lines("rocm-smi --showproductname", s["amd-product"])
    if status != 0:
        warnings.append(f"rocm-smi --showproductname failed (exit {status}): {_excerpt(' '.join(lines))}")
        return {}
    cards = dict(_cards(_rocm_json("rocm-smi --showproductname", lines)))
    targets = {}
    for name in names:
        card = cards.get(name)
        value = card.get("GFX Version") if isinstance(card, dict) else None
        if value is None or value == "N/A":  # rocm-smi before ROCm 6.1.1 does not print it
            continue
        if not isinstance(value, str) or not ROCM_GFX.fullmatch(value):
            raise _fail("hardware", f"rocm-smi --showproductname {name}: GFX Version is not a gfx target",
                        json.dumps(value))
        gfx = gfx_from_rocm_smi(value)
        if gfx is not None:
            targets[name] = gfx
    return targets


@dataclass(frozen=True)
class InstalledModel:
    name: str
    digest: str
    size: int


@dataclass(frozen=True)
class ShownModel:
    parameters: dict[str, Any]
    context_length: int | None
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class OllamaState:
    binary: str | None
    binary_version: str | None
    server_version: str | None
    models: tuple[InstalledModel, ...] = ()
    shown: dict[str, ShownModel | None] = field(default_factory=dict)  # /api/show of asked models


class OllamaFact(FactBase):
    """The installed `ollama` binary's own version and the *running* server's version, kept
    apart (after an upgrade without restart they differ), plus the models the server lists.
    The binary is asked with OLLAMA_HOST at a closed port, so it can only report itself."""

    def command(self, api: str = "127.0.0.1:11434", show: tuple[str, ...] = ()) -> str:
        url = sh_quote(f"http://{api}")
        shows = [f"echo; echo {MARK}show:{sh_quote(name)}; curl -s --max-time 10 -w '\n%{{http_code}}' -X POST "
                 f"-d {sh_quote(json.dumps({'model': name}))} {sh_quote(f'http://{api}/api/show')}; echo"
                 for name in show]
        return "; ".join([
            "bin=$(command -v ollama || for b in /usr/local/bin/ollama /opt/homebrew/bin/ollama; "
            "do [ -x \"$b\" ] && echo \"$b\" && break; done)",
            f"echo {MARK}bin; echo \"$bin\"",
            f"echo {MARK}client; [ -n \"$bin\" ] && OLLAMA_HOST=127.0.0.1:9 \"$bin\" --version 2>&1",
            f"echo {MARK}version; curl -s --max-time 5 {url}/api/version",
            f"echo; echo {MARK}tags; curl -s --max-time 5 {url}/api/tags",
            *shows,
            "true",
        ])

    def process(self, output: list[str]) -> OllamaState:
        return parse_ollama(output)


def parse_ollama(output: list[str]) -> OllamaState:
    s = sections(output)
    binary = next((line.strip() for line in s.get("bin", []) if line.strip()), None)
    client = None
    for line in s.get("client", []):
        match = re.search(r"(?:client version is|ollama version is) v?(\S+)", line)
        if match:
            client = match.group(1)
    server = models = None
    version_text = "".join(s.get("version", [])).strip()
    if version_text:
        try:
            server = json.loads(version_text)["version"]
        except (ValueError, KeyError, TypeError):
            raise _fail("ollama", "cannot parse /api/version", version_text) from None
    tags_text = "".join(s.get("tags", [])).strip()
    models = ()
    if tags_text and server is not None:
        try:
            models = tuple(InstalledModel(m["name"], m["digest"], int(m["size"]))
                           for m in json.loads(tags_text)["models"])
        except (ValueError, KeyError, TypeError):
            raise _fail("ollama", "cannot parse /api/tags", tags_text) from None
    shown = {name.removeprefix("show:"): _shown(name, lines, output)
             for name, lines in s.items() if name.startswith("show:") and server is not None}
    return OllamaState(binary, client if binary else None, server, models, shown)


def _shown(name: str, lines: list[str], output: list[str]) -> ShownModel | None:
    lines = [line for line in lines if line.strip()]
    status = lines[-1].strip() if lines else ""
    if status != "200":
        return None  # missing (404) or broken (500: e.g. a blob gone): to be created again
    try:
        body = json.loads("\n".join(lines[:-1]))
    except ValueError as exc:
        raise _fail("ollama", f"/api/show {name}: {exc}") from None
    info = body.get("model_info") or {}
    ctx = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    return ShownModel(parse_parameters(body.get("parameters", "")), ctx, tuple(body.get("capabilities") or ()))


def parse_parameters(text: str) -> dict[str, Any]:
    """`/api/show` parameters: lines of `name<spaces>value`, values in Go's %#v (strings quoted;
    repeated names such as `stop` become lists)."""
    params: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, _, raw = line.strip().partition(" ")
        raw = raw.strip()
        value: Any = json.loads(raw) if raw.startswith('"') else _number(raw)
        if key in params:
            params[key] = (params[key] if isinstance(params[key], list) else [params[key]]) + [value]
        else:
            params[key] = value
    return params


def _number(raw: str) -> Any:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(raw, raw)


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


class AccountsFact(FactBase):
    """Developer accounts (home, login shell, ids). Linux: getent passwd; macOS: dscl, whose raw
    output is parsed here rather than cut up by awk on the host, so every value is checked."""

    def default(self) -> dict[str, Account | None]:
        return {}

    def command(self, users: tuple[str, ...] = ()) -> str:
        """One round trip: a passwd line per user, or on macOS the user's dscl record after a
        marker of its own (a repeated marker would fail the hardware fact, hence each name once)."""
        names = " ".join(sh_quote(u) for u in dict.fromkeys(users))
        if not names:
            return f"echo {MARK}users"
        return (f"echo {MARK}users; for u in {names}; do "
                f"if command -v getent >/dev/null; then getent passwd \"$u\" || echo \"$u:{MISSING_ACCOUNT}\"; "
                f"else printf '%s\\n' \"{MARK}dscl:$u\"; "
                f"dscl . -read \"/Users/$u\" {' '.join(DSCL_KEYS)} 2>/dev/null || echo '{MISSING_ACCOUNT}'; fi; done")

    def process(self, output: list[str]) -> dict[str, Account | None]:
        return parse_accounts(output)


# What dscl is asked for, and the Account field each fills.
DSCL_KEYS = {"NFSHomeDirectory": "home", "UserShell": "shell", "UniqueID": "uid", "PrimaryGroupID": "gid"}
ACCOUNT_NAME = re.compile(r"[!-9;-~]{1,256}")  # printable ASCII but ':' and space
ACCOUNT_ID = re.compile(r"[0-9]{1,10}")  # ASCII digits; ids are 32-bit
MISSING_ACCOUNT = "?missing"


def parse_accounts(output: list[str]) -> dict[str, Account | None]:
    """Accounts from getent passwd lines (section `users`) and dscl records (a section
    `dscl:<name>` each); None for a user the host does not know. A name reported twice fails
    the host: which of the two accounts would the deploy write as?"""
    accounts: dict[str, Account | None] = {}

    def add(name: str, account: Account | None) -> None:
        if not ACCOUNT_NAME.fullmatch(name):
            raise _fail("accounts", "not a user name", name)
        if name in accounts:
            raise _fail("accounts", "one user reported twice", name)
        accounts[name] = account

    for section, lines in sections(output).items():
        if section == "users":
            for line in lines:
                add(*_passwd_entry(line))
        elif section.startswith("dscl:"):
            name = section.removeprefix("dscl:")
            add(name, None if lines == [MISSING_ACCOUNT] else _dscl_entry(name, lines))
    return accounts


def _passwd_entry(line: str) -> tuple[str, Account | None]:
    """`name:x:uid:gid:gecos:home:shell`, or `name:?missing`. Messages quote the offending field
    only: the GECOS field holds private data (names, phone numbers)."""
    fields = line.split(":")
    if len(fields) == 2 and fields[1] == MISSING_ACCOUNT:
        return fields[0], None
    if len(fields) != 7:
        raise _fail("accounts", f"passwd line with {len(fields)} fields, not 7", fields[0])
    name, _, uid, gid, _, home, shell = fields
    return name, _account(name, uid, gid, home, shell)


def _dscl_entry(name: str, lines: list[str]) -> Account:
    """`dscl . -read /Users/<name> <keys>`: `Key: value` a line, or `Key:` with the value on the
    next line after one space (dscl's form for values with spaces). Each key once, one value each."""
    if len(lines) > 2 * len(DSCL_KEYS):
        raise _fail("accounts", f"{name}: dscl printed {len(lines)} lines, more than its keys take")
    values: dict[str, str] = {}
    pending: str | None = None  # a key whose value is on the next line
    for line in lines:
        if pending is not None:
            if not line.startswith(" "):
                raise _fail("accounts", f"{name}: dscl printed no value for {pending}")
            values[pending], pending = line[1:], None
            continue
        key, colon, rest = line.partition(":")
        if not colon or key not in DSCL_KEYS:
            raise _fail("accounts", f"{name}: unexpected dscl line", key)
        if key in values:
            raise _fail("accounts", f"{name}: dscl printed {key} twice")
        if not rest.strip():
            pending = key
        elif rest.startswith(" ") and not any(c.isspace() for c in rest[1:]):
            values[key] = rest[1:]
        else:
            raise _fail("accounts", f"{name}: dscl printed several values for {key}")
    missing = [key for key in DSCL_KEYS if key not in values]
    if missing:
        raise _fail("accounts", f"{name}: dscl printed no {', '.join(missing)}")
    fields = {field: values[key] for key, field in DSCL_KEYS.items()}
    return _account(name, fields["uid"], fields["gid"], fields["home"], fields["shell"])


def _account(name: str, uid: str, gid: str, home: str, shell: str) -> Account:
    """The checks both sources share: ids from ASCII digits within 32 bits, an absolute home and
    a shell of sane length without control characters."""
    for what, value in (("uid", uid), ("gid", gid)):
        if not ACCOUNT_ID.fullmatch(value) or int(value) >= 2**32:
            raise _fail("accounts", f"{name}: {what} is not a 32-bit whole number", value)
    for what, value in (("home", home), ("shell", shell)):
        if len(value) > MAX_LINE or not value.isprintable():
            raise _fail("accounts", f"{name}: {what} too long or with control characters", value)
    if not home.startswith("/"):
        raise _fail("accounts", f"{name}: home is not an absolute path", home)
    return Account(name, int(uid), int(gid), home, shell)

