"""Facts: each gathers what belongs together in one remote command (one SSH round trip) and
parses it into a typed value. Output that cannot be parsed fails that host only
(FactProcessError, raw output in the message)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError

from .shell import sh_quote
from .sizing import Gpu, Hardware, MiB

MARK = "::localcode::"


def _sections(lines: list[str]) -> dict[str, list[str]]:
    """Split marked output (`::localcode::name` lines) into named sections."""
    sections: dict[str, list[str]] = {}
    current = sections.setdefault("", [])
    for line in lines:
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK):].strip(), [])
        else:
            current.append(line)
    return sections


def _fail(fact: str, why: str, lines: list[str]) -> FactProcessError:
    raw = "\n".join(lines)
    return FactProcessError(f"{fact}: {why}; raw output:\n{raw}")


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

    @property
    def apple_silicon(self) -> bool:
        return self.os == "Darwin" and self.arch == "arm64"

    def hardware(self) -> Hardware:
        return Hardware(self.ram_bytes, () if self.apple_silicon else self.gpus,
                        self.apple_silicon, self.wired_limit_bytes)


class HardwareFact(FactBase):
    """OS, arch, RAM and GPUs: /proc/meminfo or sysctl; nvidia-smi; rocm-smi JSON; Apple chip and
    iogpu.wired_limit_mb. A GPU tool that fails (no working driver) becomes a warning. Also who
    we are on the host and the developer accounts: the host's identity, in the same trip."""

    def command(self, users: tuple[str, ...] = ()) -> str:
        return "; ".join([
            f"echo {MARK}uname; uname -s; uname -m",
            f"echo {MARK}login; id -un",
            f"if [ -r /proc/meminfo ]; then echo {MARK}meminfo; grep '^MemTotal:' /proc/meminfo; fi",
            f"if [ \"$(uname -s)\" = Darwin ]; then echo {MARK}darwin; sysctl -n hw.memsize; "
            "sysctl -n machdep.cpu.brand_string; sysctl -n iogpu.wired_limit_mb 2>/dev/null || echo 0; fi",
            f"if command -v nvidia-smi >/dev/null 2>&1; then echo {MARK}nvidia; "
            "nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits 2>&1; "
            f"rc=$?; echo {MARK}nvidia-rc; echo $rc; fi",
            f"if command -v rocm-smi >/dev/null 2>&1; then echo {MARK}amd; "
            "rocm-smi --showmeminfo vram --json 2>&1; "
            f"rc=$?; echo {MARK}amd-rc; echo $rc; fi",
            AccountsFact().command(users),
        ])

    def process(self, output: list[str]) -> HostHardware:
        return parse_hardware(output)


def parse_hardware(output: list[str]) -> HostHardware:
    s = _sections(output)
    uname = s.get("uname", [])
    if len(uname) < 2:
        raise _fail("hardware", "no uname output", output)
    os_name, arch = uname[0].strip(), uname[1].strip()
    warnings: list[str] = []
    chip = wired = None
    if os_name == "Darwin":
        darwin = s.get("darwin", [])
        if len(darwin) < 3 or not darwin[0].strip().isdigit():
            raise _fail("hardware", "cannot read sysctl hw.memsize", output)
        ram = int(darwin[0])
        chip = darwin[1].strip()
        limit_mb = darwin[2].strip()
        wired = int(limit_mb) * MiB if limit_mb.isdigit() and int(limit_mb) > 0 else None
    else:
        match = re.match(r"MemTotal:\s+(\d+) kB", (s.get("meminfo") or [""])[0])
        if not match:
            raise _fail("hardware", "cannot read MemTotal from /proc/meminfo", output)
        ram = int(match.group(1)) * 1024
    gpus: list[Gpu] = []
    if "nvidia" in s:
        gpus += _nvidia(s["nvidia"], s.get("nvidia-rc", ["1"]), warnings, output)
    if "amd" in s:
        gpus += _amd(s["amd"], s.get("amd-rc", ["1"]), warnings, output)
    login = (s.get("login") or [""])[0].strip()
    return HostHardware(os_name, arch, ram, tuple(gpus), chip, wired, tuple(warnings), login,
                        parse_accounts(output) if "users" in s else {})


def _nvidia(lines: list[str], rc: list[str], warnings: list[str], raw: list[str]) -> list[Gpu]:
    text = " ".join(line.strip() for line in lines)
    if rc[0].strip() != "0":
        warnings.append(f"nvidia-smi failed (no working NVIDIA driver?): {text[:200]}; GPU ignored")
        return []
    gpus = []
    for line in lines:
        name, _, mib = line.rpartition(",")
        mib = mib.strip()
        if mib == "[N/A]":  # unified-memory NVIDIA boards (DGX Spark) report no VRAM size
            warnings.append(f"nvidia-smi reports no memory size for {name.strip()}; GPU ignored")
            continue
        if not name or not mib.isdigit():
            raise _fail("hardware", f"unexpected nvidia-smi line {line!r}", raw)
        gpus.append(Gpu("nvidia", int(mib) * MiB, name.strip()))
    return gpus


def _amd(lines: list[str], rc: list[str], warnings: list[str], raw: list[str]) -> list[Gpu]:
    if rc[0].strip() != "0":
        warnings.append(f"rocm-smi failed (no working AMD driver?): {' '.join(lines)[:200]}; GPU ignored")
        return []
    try:
        cards = json.loads("\n".join(lines))
        return [Gpu("amd", int(card["VRAM Total Memory (B)"]), name)
                for name, card in sorted(cards.items()) if name.startswith("card")]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _fail("hardware", f"cannot parse rocm-smi JSON ({exc})", raw) from None


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
    s = _sections(output)
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
            raise _fail("ollama", "cannot parse /api/version", output) from None
    tags_text = "".join(s.get("tags", [])).strip()
    models = ()
    if tags_text and server is not None:
        try:
            models = tuple(InstalledModel(m["name"], m["digest"], int(m["size"]))
                           for m in json.loads(tags_text)["models"])
        except (ValueError, KeyError, TypeError):
            raise _fail("ollama", "cannot parse /api/tags", output) from None
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
        raise _fail("ollama", f"/api/show {name}: {exc}", output) from None
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
    """Developer accounts (home, login shell, ids). Linux: getent passwd; macOS: dscl."""

    def default(self) -> dict[str, Account | None]:
        return {}

    def command(self, users: tuple[str, ...] = ()) -> str:
        names = " ".join(sh_quote(u) for u in users)
        return "; ".join([
            f"echo {MARK}users",
            f"for u in {names}; do "
            "if command -v getent >/dev/null; then getent passwd \"$u\" || echo \"$u:?missing\"; "
            "else h=$(dscl . -read \"/Users/$u\" NFSHomeDirectory UserShell UniqueID PrimaryGroupID 2>/dev/null) "
            "&& echo \"$u:x:$(echo \"$h\" | awk '/UniqueID/{print $2}'):$(echo \"$h\" | awk '/PrimaryGroupID/{print $2}'):"
            ":$(echo \"$h\" | awk '/NFSHomeDirectory/{print $2}'):$(echo \"$h\" | awk '/UserShell/{print $2}')\" "
            "|| echo \"$u:?missing\"; fi; done" if users else "true",
            "true",
        ])

    def process(self, output: list[str]) -> dict[str, Account | None]:
        return parse_accounts(output)


def parse_accounts(output: list[str]) -> dict[str, Account | None]:
    s = _sections(output)
    accounts: dict[str, Account | None] = {}
    for line in s.get("users", []):
        fields = line.split(":")
        if len(fields) == 2 and fields[1] == "?missing":
            accounts[fields[0]] = None
            continue
        if len(fields) != 7 or not fields[2].isdigit() or not fields[3].isdigit():
            raise _fail("accounts", f"unexpected passwd line {line!r}", output)
        accounts[fields[0]] = Account(fields[0], int(fields[2]), int(fields[3]), fields[5], fields[6])
    return accounts

