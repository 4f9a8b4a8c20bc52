"""The `ollama` command line (cmd/cmd.go): every command but `serve` talks HTTP to $OLLAMA_HOST."""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import urllib.parse

from . import VERSION, envconfig
from .goformat import human_bytes, human_number, human_time
from .modelfile import ParserError, create_request, parse as parse_modelfile
from .names import Name

USAGE = """Large language model runner

Usage:
  ollama [flags]
  ollama [command]

Available Commands:
  serve       Start ollama
  create      Create a model
  show        Show information for a model
  run         Run a model
  stop        Stop a running model
  pull        Pull a model from a registry
  push        Push a model to a registry
  list        List models
  ps          List running models
  cp          Copy a model
  rm          Remove a model
  help        Help about any command

Flags:
  -h, --help      help for ollama
  -v, --version   Show version information

Use "ollama [command] --help" for more information about a command.
"""


class CLIError(Exception):
    pass


class StatusError(CLIError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- HTTP client


class Client:
    def __init__(self):
        self.host = envconfig.host()
        self.base = self.host.base()
        u = urllib.parse.urlsplit(self.base)
        self.hostname, self.port, self.scheme = u.hostname, u.port, u.scheme
        self.prefix = u.path.rstrip("/")

    def _conn(self, timeout: float | None = None):
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.hostname, self.port, timeout=timeout)

    def _dial_error(self, method: str, path: str, e: OSError) -> CLIError:
        url = f"{self.base}{path}"
        en = getattr(e, "errno", None)
        if isinstance(e, socket.gaierror):
            return CLIError(f'{method.title()} "{url}": dial tcp: lookup {self.hostname}: no such host')
        reason = {111: "connect: connection refused", 101: "connect: network is unreachable",
                  113: "connect: no route to host", 104: "read: connection reset by peer"}.get(en, str(e))
        if isinstance(e, (socket.timeout, TimeoutError)):
            reason = "i/o timeout"
        return CLIError(f'{method.title()} "{url}": dial tcp {self.host.host}: {reason}')

    def request(self, method: str, path: str, body=None, accept: str = "application/json"):
        conn = self._conn()
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": accept,
                   "User-Agent": f"ollama/{VERSION} (amd64 linux) Go/go1.24.0"}
        try:
            conn.request(method, self.prefix + path, body=data, headers=headers)
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            raise self._dial_error(method, path, e) from e
        resp._conn_ref = conn
        return resp

    def do(self, method: str, path: str, body=None):
        """Client.do: non-2xx → StatusError with the server's {"error"} text."""
        resp = self.request(method, path, body)
        raw = resp.read()
        resp._conn_ref.close()
        if resp.status >= 400:
            try:
                msg = json.loads(raw).get("error") or ""
            except (ValueError, AttributeError):
                msg = raw.decode("utf-8", "replace")
            if not msg:
                msg = "something went wrong, please see the ollama server logs for details"
            raise StatusError(resp.status, msg)
        if raw.strip():
            try:
                return json.loads(raw)
            except ValueError:
                return None
        return None

    def stream(self, path: str, body, fn):
        """Client.stream: NDJSON lines; a line with "error" ends it with that error."""
        resp = self.request("POST", path, body, accept="application/x-ndjson")
        try:
            for line in resp:
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    if resp.status >= 400:
                        raise StatusError(resp.status, f"{resp.status} {resp.reason}: {line.decode()}")
                    raise CLIError(line.decode())
                if resp.status >= 400:
                    msg = obj.get("error", "") if isinstance(obj, dict) else ""
                    raise StatusError(resp.status, f"{resp.status} {resp.reason}: {msg}" if msg else
                                      f"{resp.status} {resp.reason}")
                if isinstance(obj, dict) and obj.get("error"):
                    raise CLIError(obj["error"])
                fn(obj)
        finally:
            resp._conn_ref.close()

    def heartbeat(self) -> None:
        self.do("HEAD", "/")


def check_server(client: Client) -> None:
    """checkServerHeartbeat (PreRunE of most commands)."""
    try:
        client.heartbeat()
    except StatusError:
        raise
    except CLIError as e:
        if " refused" in str(e) or "could not connect" in str(e):
            raise CLIError("ollama server not responding - could not connect to ollama server, "
                           "run 'ollama serve' to start it") from e
        raise


# --------------------------------------------------------------------------- tables


def _title(h: str) -> str:
    return h.replace("_", " ").strip().upper() or " "


def render_table(rows: list[list[str]], header: list[str] | None = None) -> str:
    """tablewriter (v0.0.5) with NoWhiteSpace, TablePadding "    ", no borders, left aligned."""
    ncol = max([len(header or [])] + [len(r) for r in rows]) if (rows or header) else 0
    widths = [0] * ncol
    hdr = [_title(h) for h in header] if header else None
    for r in ([hdr] if hdr else []) + rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    out = []
    if hdr:
        line = ""
        for i in range(ncol):
            h = hdr[i] if i < len(hdr) else ""
            pad = " " if i == ncol - 1 else "    "
            line += h.ljust(widths[i]) + pad
        out.append(line)
    for r in rows:
        out.append("".join((r[i] if i < len(r) else "").ljust(widths[i]) + "    " for i in range(len(r))))
    return "".join(l + "\n" for l in out)


# --------------------------------------------------------------------------- progress (plain lines)


class Progress:
    """A line-per-event stand-in for ollama's progress bars (written to stderr)."""

    def __init__(self):
        self.status = None
        self.done: set[str] = set()

    def __call__(self, resp: dict) -> None:
        digest = resp.get("digest") or ""
        if digest:
            completed, total = resp.get("completed") or 0, resp.get("total") or 0
            if completed == 0 or digest in self.done:
                return
            if completed >= total:
                self.done.add(digest)
                name = digest.removeprefix("sha256:").strip()[:12] if digest.startswith("sha256:") else digest
                status = resp.get("status") or f"pulling {name}"
                if status.startswith("pulling ") and len(status.split()) == 2:
                    status = f"pulling {name}:"
                self._line(f"{status} 100% ▕{'█' * 16}▏ {human_bytes(total)}")
            return
        st = resp.get("status", "")
        if st != self.status:
            self.status = st
            self._line(st)

    @staticmethod
    def _line(s: str) -> None:
        sys.stderr.write(s + "\n")
        sys.stderr.flush()


# --------------------------------------------------------------------------- commands


def cmd_version() -> int:
    client = Client()
    server_version = ""
    try:
        v = client.do("GET", "/api/version")
        server_version = (v or {}).get("version", "") if isinstance(v, dict) else ""
    except CLIError:
        print("Warning: could not connect to a running Ollama instance")
    if server_version:
        print(f"ollama version is {server_version}")
    if server_version != VERSION:
        print(f"Warning: client version is {VERSION}")
    return 0


def cmd_list(args: list[str]) -> int:
    client = Client()
    check_server(client)
    models = (client.do("GET", "/api/tags") or {}).get("models") or []
    rows = []
    for m in models:
        if args and not m.get("name", "").lower().startswith(args[0].lower()):
            continue
        size = "-" if m.get("remote_model") else human_bytes(int(m.get("size") or 0))
        rows.append([m.get("name", ""), (m.get("digest") or "")[:12], size,
                     human_time(_parse_time(m.get("modified_at")), "Never")])
    sys.stdout.write(render_table(rows, ["NAME", "ID", "SIZE", "MODIFIED"]))
    return 0


def _parse_time(s) -> float | None:
    if not s:
        return None
    import datetime as dt
    import re

    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        return None
    base = dt.datetime.fromisoformat(m.group(1) + (m.group(3).replace("Z", "+00:00")))
    frac = float("0" + m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


def cmd_ps(args: list[str]) -> int:
    client = Client()
    check_server(client)
    models = (client.do("GET", "/api/ps") or {}).get("models") or []
    rows = []
    import time as _t

    for m in models:
        if args and not m.get("name", "").startswith(args[0]):
            continue
        size, vram = int(m.get("size") or 0), int(m.get("size_vram") or 0)
        if vram == 0:
            proc = "100% CPU"
        elif vram == size:
            proc = "100% GPU"
        elif vram > size or size == 0:
            proc = "Unknown"
        else:
            cpu = round((size - vram) / size * 100)
            proc = f"{cpu}%/{100 - cpu}% CPU/GPU"
        exp = _parse_time(m.get("expires_at"))
        until = "Stopping..." if exp is not None and exp < _t.time() else human_time(exp, "Never")
        rows.append([m.get("name", ""), (m.get("digest") or "")[:12], human_bytes(size), proc,
                     str(m.get("context_length", 0)), until])
    sys.stdout.write(render_table(rows, ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]))
    return 0


def cmd_pull(args: list[str], insecure: bool) -> int:
    client = Client()
    check_server(client)
    client.stream("/api/pull", {"name": args[0], "insecure": insecure}, Progress())
    return 0


def cmd_create(name: str, file: str | None, quantize: str | None) -> int:
    if not Name.parse(name).is_valid():
        raise CLIError(f"invalid model name: {name}")
    client = Client()
    check_server(client)
    filename = os.path.abspath(file or "Modelfile")
    if not os.path.exists(filename):
        if file:
            raise CLIError("specified Modelfile wasn't found")
        text, filename = "FROM .\n", os.path.abspath("Modelfile")
    else:
        with open(filename, encoding="utf-8", errors="replace") as f:
            text = f.read()
    try:
        cmds = parse_modelfile(text)
    except ParserError as e:
        raise CLIError(str(e)) from e
    progress = Progress()
    progress({"status": "gathering model components"})
    try:
        req = create_request(cmds, os.path.dirname(filename))
    except (ParserError, OSError) as e:
        raise CLIError(str(e)) from e
    for key in ("files", "adapters"):
        if key in req:
            mapped = {}
            for path, digest in req[key].items():
                _upload_blob(client, path, digest, progress)
                mapped[os.path.basename(path)] = digest
            req[key] = mapped
    req["model"] = name
    if quantize:
        req["quantize"] = quantize
    try:
        client.stream("/api/create", req, progress)
    except CLIError as e:
        if "path or Modelfile are required" in str(e):
            raise CLIError("the ollama server must be updated to use `ollama create` with this client") from e
        raise
    return 0


def _upload_blob(client: Client, path: str, digest: str, progress) -> None:
    progress({"status": f"copying file {digest} 0%"})
    try:
        client.do("HEAD", f"/api/blobs/{digest}")
    except StatusError as e:
        if e.status != 404:
            raise
        with open(os.path.realpath(path), "rb") as f:
            data = f.read()
        conn = client._conn()
        try:
            conn.request("POST", client.prefix + f"/api/blobs/{digest}", body=data,
                         headers={"Content-Type": "application/octet-stream"})
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as err:
            raise client._dial_error("POST", f"/api/blobs/{digest}", err) from err
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                msg = json.loads(raw).get("error", "")
            except (ValueError, AttributeError):
                msg = raw.decode("utf-8", "replace")
            raise StatusError(resp.status, msg)
    progress({"status": f"copying file {digest} 100%"})


def cmd_show(name: str, flags: dict) -> int:
    client = Client()
    check_server(client)
    chosen = [k for k in ("license", "modelfile", "parameters", "system", "template") if flags.get(k)]
    if len(chosen) > 1:
        raise CLIError("only one of '--license', '--modelfile', '--parameters', '--system', or '--template' "
                       "can be specified")
    resp = client.do("POST", "/api/show", {"name": name, "verbose": bool(flags.get("verbose"))}) or {}
    if chosen:
        what = chosen[0]
        if what in ("license", "modelfile", "parameters"):
            print(resp.get(what, ""))
        else:
            sys.stdout.write(resp.get(what, ""))
        return 0
    sys.stdout.write(show_info(resp))
    return 0


def show_info(resp: dict) -> str:
    out = []

    def section(header: str, rows: list[list[str]]) -> None:
        out.append(f"  {header}\n")
        out.append(render_table(rows))
        out.append("\n")

    rows = []
    mi = resp.get("model_info")
    details = resp.get("details") or {}
    if mi is not None and "general.architecture" in mi:
        arch = mi.get("general.architecture", "")
        rows.append(["", "architecture", arch])
        ps = details.get("parameter_size") or (human_number(int(mi["general.parameter_count"]))
                                               if "general.parameter_count" in mi else "")
        rows.append(["", "parameters", ps])
        for label, key in (("context length", "context_length"), ("embedding length", "embedding_length")):
            v = mi.get(f"{arch}.{key}")
            if isinstance(v, (int, float)):
                rows.append(["", label, str(int(v)) if float(v).is_integer() else repr(v)])
    else:
        rows.append(["", "architecture", details.get("family", "")])
        rows.append(["", "parameters", details.get("parameter_size", "")])
    rows.append(["", "quantization", details.get("quantization_level", "")])
    if resp.get("requires"):
        rows.append(["", "requires", resp["requires"]])
    section("Model", rows)
    if resp.get("capabilities"):
        section("Capabilities", [["", c] for c in resp["capabilities"]])
    if resp.get("parameters"):
        section("Parameters", [[""] + line.split() for line in resp["parameters"].splitlines() if line])

    def head(s: str, n: int) -> list[list[str]]:
        lines = [l.strip() for l in s.splitlines() if l.strip()]
        r = [["", l] for l in lines[:n]]
        if len(lines) > n:
            r.append(["", "..."])
        return r

    if resp.get("system"):
        section("System", head(resp["system"], 2))
    if resp.get("license"):
        section("License", head(resp["license"], 2))
    return "".join(out)


def cmd_cp(src: str, dst: str) -> int:
    client = Client()
    check_server(client)
    client.do("POST", "/api/copy", {"source": src, "destination": dst})
    print(f"copied '{src}' to '{dst}'")
    return 0


def _unload(client: Client, name: str) -> None:
    info = client.do("POST", "/api/show", {"model": name}) or {}
    if info.get("remote_host"):
        return
    client.stream("/api/generate", {"model": name, "keep_alive": 0}, lambda r: None)


def cmd_rm(names: list[str]) -> int:
    client = Client()
    check_server(client)
    for name in names:
        try:
            _unload(client, name)
        except CLIError as e:
            if "not found" not in str(e).lower():
                sys.stderr.write(f"Warning: unable to stop model '{name}'\n")
        client.do("DELETE", "/api/delete", {"name": name})
        print(f"deleted '{name}'")
    return 0


def cmd_stop(name: str) -> int:
    client = Client()
    check_server(client)
    try:
        _unload(client, name)
    except StatusError as e:
        if "not found" in str(e):
            raise CLIError(f'couldn\'t find model "{name}" to stop') from e
        raise
    return 0


def cmd_run(name: str, prompt_words: list[str]) -> int:
    client = Client()
    check_server(client)
    prompt = " ".join(prompt_words)
    if not prompt and not sys.stdin.isatty():
        prompt = sys.stdin.read()
    if not prompt:
        client.stream("/api/generate", {"model": name}, lambda r: None)
        return 0
    pieces = []
    client.stream("/api/generate", {"model": name, "prompt": prompt}, lambda r: pieces.append(r.get("response", "")))
    sys.stdout.write("".join(pieces) + "\n\n")
    return 0


# --------------------------------------------------------------------------- argument parsing


BOOL_FLAGS = {"--insecure", "--modelfile", "--license", "--parameters", "--system", "--template", "--verbose",
              "-v", "--version", "-h", "--help", "--experimental"}
VALUE_FLAGS = {"-f": "--file", "--file": "--file", "-q": "--quantize", "--quantize": "--quantize",
               "--keepalive": "--keepalive", "--format": "--format", "--think": "--think"}


def _split(argv: list[str]) -> tuple[list[str], dict]:
    pos, flags = [], {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            pos += argv[i + 1:]
            break
        if a.startswith("-") and a != "-":
            key, eq, val = a.partition("=")
            if key in VALUE_FLAGS:
                if not eq:
                    if i + 1 >= len(argv):
                        raise CLIError(f"flag needs an argument: {a}")
                    val = argv[i + 1]
                    i += 1
                flags[VALUE_FLAGS[key]] = val
            elif key in BOOL_FLAGS:
                flags[key] = val.lower() not in ("false", "0") if eq else True
            else:
                raise CLIError(f"unknown flag: {key}" if key.startswith("--") else
                               f"unknown shorthand flag: '{key[1:2]}' in {a}")
        else:
            pos.append(a)
        i += 1
    return pos, flags


def _nargs(cmd: str, pos: list[str], exact: int | None = None, minimum: int | None = None) -> None:
    if exact is not None and len(pos) != exact:
        raise CLIError(f"accepts {exact} arg(s), received {len(pos)}")
    if minimum is not None and len(pos) < minimum:
        raise CLIError(f"requires at least {minimum} arg(s), only received {len(pos)}")


def run(argv: list[str]) -> int:
    if not argv:
        sys.stdout.write(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd in ("-v", "--version"):
        return cmd_version()
    if cmd in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if cmd.startswith("-"):
        pos, flags = _split(argv)
        if flags.get("-v") or flags.get("--version"):
            return cmd_version()
        sys.stdout.write(USAGE)
        return 0
    pos, flags = _split(rest)
    if flags.get("-h") or flags.get("--help"):
        sys.stdout.write(USAGE)
        return 0
    if cmd == "serve":
        _nargs(cmd, pos, exact=0)
        from .server import serve

        return serve()
    if cmd in ("list", "ls"):
        return cmd_list(pos)
    if cmd == "ps":
        return cmd_ps(pos)
    if cmd == "pull":
        _nargs(cmd, pos, exact=1)
        return cmd_pull(pos, bool(flags.get("--insecure")))
    if cmd == "create":
        _nargs(cmd, pos, exact=1)
        return cmd_create(pos[0], flags.get("--file"), flags.get("--quantize"))
    if cmd == "show":
        _nargs(cmd, pos, exact=1)
        return cmd_show(pos[0], {"license": flags.get("--license"), "modelfile": flags.get("--modelfile"),
                                 "parameters": flags.get("--parameters"), "system": flags.get("--system"),
                                 "template": flags.get("--template"),
                                 "verbose": flags.get("--verbose") or flags.get("-v")})
    if cmd in ("cp", "copy"):
        _nargs(cmd, pos, exact=2)
        return cmd_cp(pos[0], pos[1])
    if cmd in ("rm", "delete"):
        _nargs(cmd, pos, minimum=1)
        return cmd_rm(pos)
    if cmd == "stop":
        _nargs(cmd, pos, exact=1)
        return cmd_stop(pos[0])
    if cmd == "run":
        _nargs(cmd, pos, minimum=1)
        return cmd_run(pos[0], pos[1:])
    if cmd == "push":
        raise CLIError("push is not supported by the ollama stand-in")
    raise CLIError(f'unknown command "{cmd}" for "ollama"')


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return run(argv)
    except CLIError as e:
        sys.stderr.write(f"Error: {e}\n")
        return 1
    except KeyboardInterrupt:
        return 130
