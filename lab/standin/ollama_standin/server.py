"""`ollama serve`: the HTTP API (server/routes.go, server/create.go, middleware/anthropic.go).

Every request is logged as one JSON line to $OLLAMA_STANDIN_LOG (default
$HOME/.ollama/standin-requests.jsonl) and as a GIN-style access line on stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

from . import anthropic, envconfig
from . import REGISTRY_URL, VERSION
from .goformat import (GoMap, MAX_DURATION_NS, go_json, go_quote, go_sharp_v, go_time_json, human_number,
                       parse_go_duration)
from .gguf import read_gguf
from .modelfile import modelfile_string
from .names import Name
from .pull import PullError, Puller
from .store import (CONFIG_MEDIA_TYPE, DIGEST_RE, MT, InvalidDigest, Layer, Store, config_blob, get_model,
                    params_blob, version_tuple)

GIB = 1024**3
INVALID_MODEL_NAME = "invalid model name"


def go_duration_str(ns: int) -> str:
    """time.Duration.String for non-negative durations."""
    if ns < 1000:
        return f"{ns}ns"
    for div, unit, prec in ((1000, "µs", 3), (1_000_000, "ms", 6)):
        if ns < div * 1000:
            return (f"{ns / div:.{prec}f}".rstrip("0").rstrip(".")) + unit
    return f"{ns / 1e9:.9f}".rstrip("0").rstrip(".") + "s"


def log_line(msg: str, level: str = "INFO", source: str = "routes.go") -> None:
    ts = go_time_json()
    sys.stderr.write(f'time={ts} level={level} source={source} msg="{msg}"\n')
    sys.stderr.flush()


# --------------------------------------------------------------------------- GPUs


def detect_gpus() -> tuple[bool, int]:
    """(a GPU tool is on PATH, total VRAM bytes) from nvidia-smi / rocm-smi, as the lab fakes them."""
    total = 0
    found = False
    smi = shutil.which("nvidia-smi")
    if smi:
        found = True
        try:
            out = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
            for line in out.splitlines():
                try:
                    total += int(float(line.rsplit(",", 1)[1].strip())) * 1024 * 1024
                except (IndexError, ValueError):
                    pass
        except (OSError, subprocess.SubprocessError):
            pass
    rocm = shutil.which("rocm-smi")
    if rocm:
        found = True
        try:
            out = subprocess.run([rocm, "--showmeminfo", "vram", "--json"], capture_output=True, text=True,
                                 timeout=10).stdout
            for card in (json.loads(out or "{}") or {}).values():
                if isinstance(card, dict):
                    try:
                        total += int(card.get("VRAM Total Memory (B)", 0))
                    except (TypeError, ValueError):
                        pass
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return found, total


# --------------------------------------------------------------------------- scheduler


class OptionError(ValueError):
    pass


OPTION_TYPES = {
    "num_ctx": "int", "num_batch": "int", "num_gpu": "int", "main_gpu": "int", "use_mmap": "bool",
    "num_thread": "int", "num_keep": "int", "seed": "int", "num_predict": "int", "top_k": "int",
    "top_p": "float", "min_p": "float", "typical_p": "float", "repeat_last_n": "int", "temperature": "float",
    "repeat_penalty": "float", "presence_penalty": "float", "frequency_penalty": "float", "stop": "array",
}


def from_map(opts: dict, m: dict | None) -> None:
    """api.Options.FromMap: type checks of model/request options."""
    for k, v in (m or {}).items():
        kind = OPTION_TYPES.get(k)
        if kind is None or v is None:
            continue
        if kind == "int":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise OptionError(f'option "{k}" must be of type integer')
            opts[k] = int(v)
        elif kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise OptionError(f'option "{k}" must be of type float32')
            opts[k] = float(v)
        elif kind == "bool":
            if not isinstance(v, bool):
                raise OptionError(f'option "{k}" must be of type boolean')
            opts[k] = v
        elif kind == "array":
            if not isinstance(v, list):
                raise OptionError(f'option "{k}" must be of type array')
            if not all(isinstance(x, str) for x in v):
                raise OptionError(f'option "{k}" must be of an array of strings')
            opts[k] = v


def kv_cache_bytes(g, num_ctx: int) -> int:
    arch = g.architecture
    kv = g.kv
    n_layer = int(kv.get(f"{arch}.block_count", 0) or 0)
    hkv = kv.get(f"{arch}.attention.head_count_kv", 0)
    heads = kv.get(f"{arch}.attention.head_count", 1) or 1
    emb = int(kv.get(f"{arch}.embedding_length", 0) or 0)
    head_dim = emb // (heads if isinstance(heads, int) and heads else 1) if emb else 128
    k_len = int(kv.get(f"{arch}.attention.key_length", head_dim) or head_dim)
    v_len = int(kv.get(f"{arch}.attention.value_length", head_dim) or head_dim)
    window = int(kv.get(f"{arch}.attention.sliding_window", 0) or 0)
    pattern = kv.get(f"{arch}.attention.sliding_window_pattern")
    total = 0
    for i in range(n_layer):
        h = hkv[i] if isinstance(hkv, list) and i < len(hkv) else (hkv if isinstance(hkv, int) else 0)
        if not h:
            continue
        sliding = False
        if window:
            if isinstance(pattern, list) and i < len(pattern):
                sliding = bool(pattern[i])
            elif arch == "gptoss":
                sliding = i % 2 == 0
        ctx = min(num_ctx, window) if sliding else num_ctx
        total += int(h) * (k_len + v_len) * 2 * ctx
    factor = {"q8_0": 34 / 64, "q4_0": 18 / 64}.get(envconfig.var("OLLAMA_KV_CACHE_TYPE"), 1.0)
    parallel = envconfig.env_uint("OLLAMA_NUM_PARALLEL", 1) or 1
    return int(total * factor) * parallel


@dataclass
class Runner:
    name: str
    short_name: str
    digest: str
    details: dict
    size: int
    size_vram: int
    num_ctx: int
    expires_ns: int  # absolute, time.time_ns()
    model_key: str = ""
    last_used: float = field(default_factory=time.monotonic)


class Scheduler:
    def __init__(self, version: str, gpu_found: bool, vram: int):
        self.version = version
        self.gpu_found = gpu_found
        self.vram = vram
        self.loaded: dict[str, Runner] = {}
        self.lock = threading.Lock()
        if version_tuple(version) >= (0, 15, 5):
            self.default_ctx = 262144 if vram >= 47 * GIB else 32768 if vram >= 23 * GIB else 4096
        else:
            self.default_ctx = 4096

    def _expire(self) -> None:
        now = time.time_ns()
        for k in [k for k, r in self.loaded.items() if r.expires_ns <= now]:
            del self.loaded[k]

    def load(self, model, req_options: dict | None, keep_alive_ns: int | None) -> Runner:
        opts: dict[str, Any] = {}
        from_map(opts, model.options)
        from_map(opts, req_options)
        if "num_ctx" in (req_options or {}) or "num_ctx" in (model.options or {}):
            num_ctx = opts.get("num_ctx", 0)
        elif envconfig.context_length():
            num_ctx = envconfig.context_length()
        else:
            num_ctx = self.default_ctx
        g = model.gguf() if model.model_path else None
        family = model.config.get("model_family") or ""
        if family in ("gptoss", "gpt-oss", "qwen3vl", "qwen3vlmoe") and self.vram >= 20 * GIB:
            num_ctx = max(num_ctx, 8192)
        num_ctx = max(num_ctx, 4)
        caps = model.capabilities()
        if "vision" in caps:
            num_ctx = max(num_ctx, 2048)
        if g is not None:
            trained = int(g.key("context_length") or 0)
            if trained and num_ctx > trained:
                log_line(f"requested context size too large for model num_ctx={num_ctx} n_ctx_train={trained}",
                         "WARN", "server.go")
                num_ctx = trained
        size = 0
        if g is not None:
            size = g.tensor_bytes() + kv_cache_bytes(g, num_ctx)
        for p in model.projector_paths:
            try:
                size += read_gguf(p).tensor_bytes()
            except (OSError, ValueError, EOFError):
                pass
        ka = envconfig.keep_alive_ns() if keep_alive_ns is None else keep_alive_ns
        expires = time.time_ns() + min(ka, MAX_DURATION_NS - time.time_ns())
        cfg = model.config
        details = {"parent_model": "", "format": cfg.get("model_format", "") or "",
                   "family": cfg.get("model_family", "") or "", "families": cfg.get("model_families"),
                   "parameter_size": cfg.get("model_type", "") or "",
                   "quantization_level": cfg.get("file_type", "") or ""}
        r = Runner(name=model.short_name, short_name=model.short_name, digest=model.digest, details=details,
                   size=size, size_vram=size if self.gpu_found else 0, num_ctx=num_ctx, expires_ns=expires,
                   model_key=model.name)
        with self.lock:
            self._expire()
            old = self.loaded.get(model.name)
            if old and old.num_ctx == num_ctx and old.digest == model.digest:
                old.expires_ns = expires
                old.last_used = time.monotonic()
                return old
            self.loaded[model.name] = r
            limit = envconfig.max_loaded_models() or 3
            while len(self.loaded) > limit:
                victim = min((x for x in self.loaded.values() if x is not r), key=lambda x: x.last_used,
                             default=None)
                if victim is None:
                    break
                del self.loaded[victim.model_key]
        if ka == 0:
            self.unload(model.name)
        return r

    def unload(self, key: str) -> None:
        with self.lock:
            self.loaded.pop(key, None)

    def ps(self) -> list[Runner]:
        with self.lock:
            self._expire()
            return sorted(self.loaded.values(), key=lambda r: -(r.expires_ns // 1_000_000_000))


# --------------------------------------------------------------------------- request handling


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_keep_alive(v) -> int | None:
    """api.Duration.UnmarshalJSON (None when absent)."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise HTTPError(400, "json: cannot unmarshal bool into Go struct field of type api.Duration")
    if isinstance(v, (int, float)):
        if v < 0:
            return MAX_DURATION_NS
        return int(v * 1_000_000_000)
    if isinstance(v, str):
        try:
            d = parse_go_duration(v)
        except ValueError as e:
            raise HTTPError(400, str(e))
        return MAX_DURATION_NS if d < 0 else d
    raise HTTPError(400, "json: cannot unmarshal into Go struct field of type api.Duration")


class Streamer:
    """streamResponse / waitForStream: NDJSON progress, errors as {"error"} (HTTP 200 once started)."""

    def __init__(self, h: "Handler", stream: bool):
        self.h = h
        self.stream = stream
        self.started = False
        self.latest: dict = {}
        self.failed = False

    def send(self, obj: dict) -> None:
        if self.failed:
            raise _Aborted()
        if not self.stream:
            self.latest = obj
            return
        if not self.started:
            self.h.start_chunked(200, "application/x-ndjson")
            self.started = True
        self.h.write_chunk((go_json(obj) + "\n").encode())

    def error(self, message: str, status: int = 500) -> None:
        self.failed = True
        if not self.stream:
            self.h.send_json(status, {"error": message})
            return
        if not self.started:
            self.h.send_json(status, {"error": message})
            return
        self.h.write_chunk((go_json({"error": message}) + "\n").encode())
        self.h.end_chunked()

    def finish(self) -> None:
        if self.failed:
            return
        if not self.stream:
            self.h.send_json(200, self.latest)
            return
        if not self.started:
            self.h.start_chunked(200, "application/x-ndjson")
            self.started = True
        self.h.end_chunked()


class _Aborted(Exception):
    pass


class App:
    def __init__(self, version: str = VERSION, registry_url: str = REGISTRY_URL, store: Store | None = None):
        self.version = version
        self.registry_url = registry_url
        self.store = store or Store()
        found, vram = detect_gpus()
        self.sched = Scheduler(version, found, vram)
        self.log_path = os.environ.get("OLLAMA_STANDIN_LOG") or os.path.join(
            envconfig.home_dir(), ".ollama", "standin-requests.jsonl")
        self.log_lock = threading.Lock()
        self.create_lock = threading.Lock()

    def has_messages_api(self) -> bool:
        return version_tuple(self.version) >= (0, 14, 0)

    def request_log(self, entry: dict) -> None:
        try:
            d = os.path.dirname(self.log_path)
            if d and not os.path.isdir(d):
                os.makedirs(d, 0o755, exist_ok=True)
            line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
            with self.log_lock, open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError:
            pass


ROUTES: dict[str, dict[str, str]] = {
    "/": {"GET": "root", "HEAD": "root"},
    "/api/version": {"GET": "version", "HEAD": "version"},
    "/api/tags": {"GET": "tags", "HEAD": "tags"},
    "/api/show": {"POST": "show"},
    "/api/pull": {"POST": "pull"},
    "/api/push": {"POST": "push"},
    "/api/delete": {"DELETE": "delete"},
    "/api/create": {"POST": "create"},
    "/api/copy": {"POST": "copy"},
    "/api/ps": {"GET": "ps"},
    "/api/generate": {"POST": "generate"},
    "/api/chat": {"POST": "chat"},
    "/v1/messages": {"POST": "messages"},
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ollama-standin"
    sys_version = ""
    app: App  # set on the class by serve()

    # ----------------------------------------------------------------- plumbing

    def log_message(self, format: str, *args: Any) -> None:  # silence http.server
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        # like Go's net/http: a Date header, no Server header
        self._status = code
        self._log_request()  # before any byte of the response: a client that got it finds the line
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def _headers(self, status: int, ctype: str, length: int | None, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def send_body(self, status: int, ctype: str, body: bytes, extra: dict | None = None) -> None:
        self._headers(status, ctype, len(body), extra)
        if self.command != "HEAD":
            self.wfile.write(body)
        self._responded = True

    def send_json(self, status: int, obj: Any) -> None:
        self.send_body(status, "application/json; charset=utf-8", go_json(obj).encode())

    def send_text(self, status: int, text: str) -> None:
        self.send_body(status, "text/plain; charset=utf-8", text.encode())

    def start_chunked(self, status: int, ctype: str, extra: dict | None = None) -> None:
        self._headers(status, ctype, None, extra)
        self._chunked = True
        self._responded = True

    def write_chunk(self, data: bytes) -> None:
        if not data:
            return
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def end_chunked(self) -> None:
        if getattr(self, "_chunked", False):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            self._chunked = False

    def read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                out += self.rfile.read(size)
                self.rfile.readline()
            return bytes(out)
        return self.rfile.read(n) if n > 0 else b""

    def json_body(self) -> Any:
        """ShouldBindJSON: empty body → 'missing request body'; bad JSON → 400."""
        raw = self._raw_body
        if not raw.strip():
            raise HTTPError(400, "missing request body")
        try:
            return json.loads(raw)
        except ValueError as e:
            raise HTTPError(400, f"invalid character in JSON body: {e.msg}") from e

    def _dispatch(self) -> None:
        self._status = 0
        self._responded = False
        self._chunked = False
        self._model = None
        self._logged = False
        start = time.monotonic()
        url = urlsplit(self.path)
        path = url.path
        self._raw_body = b""
        try:
            self._raw_body = self.read_body()
            try:
                body = json.loads(self._raw_body) if self._raw_body.strip() else None
                if isinstance(body, dict):
                    m = body.get("model") or body.get("name") or body.get("source")
                    self._model = m if isinstance(m, str) else None
            except ValueError:
                pass
            self.route(path)
        except (BrokenPipeError, ConnectionResetError, _Aborted):
            self.close_connection = True
        except HTTPError as e:
            if not self._responded:
                self.send_json(e.status, {"error": e.message})
        except Exception as e:  # noqa: BLE001 - a stand-in must not die on one bad request
            traceback.print_exc()
            if not self._responded:
                try:
                    self.send_json(500, {"error": str(e)})
                except OSError:
                    pass
        finally:
            if self._chunked:
                try:
                    self.end_chunked()
                except OSError:
                    pass
            dur = time.monotonic() - start
            self._log_request()
            self._access_log(path + (("?" + url.query) if url.query else ""), dur)

    def _log_request(self) -> None:
        if getattr(self, "_logged", True):
            return
        self._logged = True
        url = urlsplit(self.path)
        self.app.request_log({
            "time": go_time_json(), "method": self.command, "path": url.path, "query": url.query or None,
            "model": self._model, "status": self._status, "remote": self.client_address[0],
        })

    def _access_log(self, path: str, dur: float) -> None:
        ts = time.strftime("%Y/%m/%d - %H:%M:%S")
        lat = go_duration_str(int(dur * 1e9))
        sys.stderr.write(f'[GIN] {ts} | {self._status:3d} | {lat:>13} | {self.client_address[0]:>15} | '
                         f'{self.command:<7}  {go_quote(path)}\n')
        sys.stderr.flush()

    do_GET = do_POST = do_HEAD = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = _dispatch

    def route(self, path: str) -> None:
        app = self.app
        if path.startswith("/api/blobs/"):
            methods = {"POST": "create_blob", "HEAD": "head_blob"}
        else:
            methods = ROUTES.get(path)
            if path == "/v1/messages" and not app.has_messages_api():
                methods = None
        if not methods:
            self.send_text(404, "404 page not found")
            return
        name = methods.get(self.command)
        if name is None:
            self.send_body(405, "text/plain", b"405 method not allowed",
                           {"Allow": ", ".join(sorted(methods))})
            return
        getattr(self, "h_" + name)()

    # ----------------------------------------------------------------- helpers

    def _name(self, s: str) -> Name:
        return Name.parse(s)

    def _load_model(self, model_name: str, not_found: Callable[[str], HTTPError]):
        n = Name.parse(model_name)
        if not n.is_valid():
            raise not_found(model_name)
        n = self.app.store.existing_name(n)
        try:
            return get_model(self.app.store, n)
        except FileNotFoundError:
            raise not_found(model_name)
        except InvalidDigest as e:
            raise HTTPError(500, str(e))

    # ----------------------------------------------------------------- simple routes

    def h_root(self) -> None:
        self.send_text(200, "Ollama is running")

    def h_version(self) -> None:
        self.send_json(200, {"version": self.app.version})

    def h_tags(self) -> None:
        store = self.app.store
        models = []
        for n, m in store.manifests(True).values():
            cf: dict = {}
            if m.config.digest:
                try:
                    with open(store.blob_path(m.config.digest), "rb") as f:
                        cf = json.loads(f.read())
                    if not isinstance(cf, dict):
                        continue
                except (OSError, ValueError, InvalidDigest):
                    continue
            entry = {"name": n.display_shortest(), "model": n.display_shortest()}
            if cf.get("remote_model"):
                entry["remote_model"] = cf["remote_model"]
            if cf.get("remote_host"):
                entry["remote_host"] = cf["remote_host"]
            entry.update({
                "modified_at": go_time_json(m.mtime_ns),
                "size": m.size(),
                "digest": m.digest,
                "details": {"parent_model": "", "format": cf.get("model_format", "") or "",
                            "family": cf.get("model_family", "") or "", "families": cf.get("model_families"),
                            "parameter_size": cf.get("model_type", "") or "",
                            "quantization_level": cf.get("file_type", "") or ""},
            })
            models.append((m.mtime_ns // 1_000_000_000, entry))
        models.sort(key=lambda x: (-x[0], x[1]["name"]))
        self.send_json(200, {"models": [e for _, e in models]})

    def h_ps(self) -> None:
        out = []
        for r in self.app.sched.ps():
            out.append({"name": r.name, "model": r.short_name, "size": r.size, "digest": r.digest,
                        "details": r.details, "expires_at": go_time_json(r.expires_ns),
                        "size_vram": r.size_vram, "context_length": r.num_ctx})
        self.send_json(200, {"models": out})

    def h_push(self) -> None:
        req = self.json_body()
        if not isinstance(req, dict) or not (req.get("model") or req.get("name")):
            raise HTTPError(400, "model is required")
        s = Streamer(self, req.get("stream") is not False)
        s.send({"status": "retrieving manifest"})
        s.error("push is not supported by the ollama stand-in")

    # ----------------------------------------------------------------- show

    def h_show(self) -> None:
        req = self.json_body()
        if not isinstance(req, dict):
            raise HTTPError(400, "json: cannot unmarshal into Go value of type api.ShowRequest")
        model_name = req.get("model") or req.get("name")
        if not model_name:
            raise HTTPError(400, "model is required")
        n = Name.parse(model_name)
        if not n.is_valid():
            raise HTTPError(400, INVALID_MODEL_NAME)
        store = self.app.store
        n = store.existing_name(n)
        try:
            m = get_model(store, n)
            manifest = store.parse_named_manifest(n)
        except FileNotFoundError:
            raise HTTPError(404, f"model '{model_name}' not found")
        if req.get("system"):
            m.system = req["system"]
        cfg = m.config
        resp: dict[str, Any] = {}
        license_text = "\n".join(m.license)
        if license_text:
            resp["license"] = license_text
        mf = ('# Modelfile generated by "ollama show"\n# To build a new Modelfile based on this, replace FROM with:\n'
              f"# FROM {m.short_name}\n\n") + modelfile_string(m.modelfile_commands())
        resp["modelfile"] = mf
        params = []
        for k in sorted(m.options or {}):
            v = m.options[k]
            if isinstance(v, list):
                params += [f"{k:<30} {go_sharp_v(x)}" for x in v]
            else:
                params.append(f"{k:<30} {go_sharp_v(v)}")
        if params:
            resp["parameters"] = "\n".join(params)
        if m.template:
            resp["template"] = m.template
        if m.system:
            resp["system"] = m.system
        if cfg.get("renderer"):
            resp["renderer"] = cfg["renderer"]
        if cfg.get("parser"):
            resp["parser"] = cfg["parser"]
        resp["details"] = {"parent_model": m.parent_model, "format": cfg.get("model_format", "") or "",
                           "family": cfg.get("model_family", "") or "", "families": cfg.get("model_families"),
                           "parameter_size": cfg.get("model_type", "") or "",
                           "quantization_level": cfg.get("file_type", "") or ""}
        if m.messages:
            resp["messages"] = [{"role": x.get("role", ""), "content": x.get("content", "")} for x in m.messages]
        model_info: dict = GoMap()
        tensors = []
        if m.model_path:
            try:
                g = m.gguf()
            except FileNotFoundError:
                raise HTTPError(500, f"open {m.model_path}: no such file or directory")
            except (OSError, ValueError, EOFError) as e:
                raise HTTPError(500, str(e))
            for k, v in g.kv.items():
                if k in ("general.name", "tokenizer.chat_template"):
                    continue
                if isinstance(v, list) and len(v) > 5 and not req.get("verbose"):
                    v = []
                model_info[k] = v
            tensors = [{"name": t.name, "type": t.type_name(), "shape": t.shape} for t in g.tensors]
        resp["model_info"] = model_info
        if m.projector_paths:
            try:
                pg = read_gguf(m.projector_paths[0])
                resp["projector_info"] = GoMap({k: ([] if isinstance(v, list) and len(v) > 5 else v)
                                                for k, v in pg.kv.items()})
            except (OSError, ValueError, EOFError) as e:
                raise HTTPError(500, str(e))
        if tensors:
            resp["tensors"] = tensors
        caps = m.capabilities()
        if caps:
            resp["capabilities"] = caps
        resp["modified_at"] = go_time_json(manifest.mtime_ns)
        if cfg.get("requires"):
            resp["requires"] = cfg["requires"]
        self.send_json(200, resp)

    # ----------------------------------------------------------------- pull

    def h_pull(self) -> None:
        req = self.json_body()
        if not isinstance(req, dict):
            raise HTTPError(400, "json: cannot unmarshal into Go value of type api.PullRequest")
        n = Name.parse(req.get("model") or req.get("name") or "")
        if not n.is_valid():
            raise HTTPError(400, INVALID_MODEL_NAME)
        store = self.app.store
        n = store.existing_name(n)
        s = Streamer(self, req.get("stream") is not False)
        puller = Puller(store, self.app.registry_url, self.app.version, s.send, insecure=bool(req.get("insecure")),
                        no_prune=envconfig.no_prune(), log=lambda m: log_line(m, "WARN", "images.go"))
        try:
            puller.pull(n)
        except PullError as e:
            s.error(str(e))
            return
        except InvalidDigest as e:
            s.error(str(e))
            return
        s.finish()

    # ----------------------------------------------------------------- delete / copy

    def h_delete(self) -> None:
        req = self.json_body()
        if not isinstance(req, dict):
            raise HTTPError(400, "json: cannot unmarshal into Go value of type api.DeleteRequest")
        raw = req.get("model") or req.get("name") or ""
        n = Name.parse(raw)
        if not n.is_valid():
            raise HTTPError(400, f'name "{raw}" is invalid')
        store = self.app.store
        n = store.existing_name(n)
        try:
            m = store.parse_named_manifest(n)
        except FileNotFoundError:
            raise HTTPError(404, f"model '{raw}' not found")
        except ValueError as e:
            raise HTTPError(500, str(e))
        store.remove_manifest(m)
        store.remove_layers(m)
        self.app.sched.unload(str(n))
        self.send_body(200, "text/plain; charset=utf-8", b"")

    def h_copy(self) -> None:
        req = self.json_body()
        if not isinstance(req, dict):
            raise HTTPError(400, "json: cannot unmarshal into Go value of type api.CopyRequest")
        src_raw, dst_raw = req.get("source") or "", req.get("destination") or ""
        src = Name.parse(src_raw)
        if not src.is_valid():
            raise HTTPError(400, f'source "{src_raw}" is invalid')
        store = self.app.store
        src = store.existing_name(src)
        dst = Name.parse(dst_raw)
        if not dst.is_valid():
            raise HTTPError(400, f'destination "{dst_raw}" is invalid')
        dst = store.existing_name(dst)
        try:
            store.copy_model(src, dst)
        except FileNotFoundError:
            raise HTTPError(404, f'model "{src_raw}" not found')
        self.send_body(200, "text/plain; charset=utf-8", b"")

    # ----------------------------------------------------------------- blobs

    def h_head_blob(self) -> None:
        digest = self.path.split("?")[0].rsplit("/", 1)[-1]
        try:
            p = self.app.store.blob_path(digest)
        except InvalidDigest as e:
            raise HTTPError(400, str(e))
        if not os.path.isfile(p):
            self.send_json(404, {"error": f"blob {digest} not found"})
            return
        self.send_body(200, "text/plain; charset=utf-8", b"")

    def h_create_blob(self) -> None:
        import hashlib

        digest = self.path.split("?")[0].rsplit("/", 1)[-1]
        store = self.app.store
        try:
            p = store.blob_path(digest)
        except InvalidDigest as e:
            raise HTTPError(400, str(e))
        if os.path.isfile(p):
            self.send_body(200, "text/plain; charset=utf-8", b"")
            return
        data = self._raw_body
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest:
            raise HTTPError(400, "digest mismatch")
        store.new_layer(data, "")
        self.send_body(201, "text/plain; charset=utf-8", b"")

    # ----------------------------------------------------------------- create

    def h_create(self) -> None:
        req = self.json_body()
        if not isinstance(req, dict):
            raise HTTPError(400, "json: cannot unmarshal into Go value of type api.CreateRequest")
        files = req.get("files") or {}
        if not isinstance(files, dict):
            raise HTTPError(400, "json: cannot unmarshal into Go struct field CreateRequest.files")
        for fn in files:
            if fn.startswith("/") or ".." in fn.split("/") or fn in ("", "."):
                raise HTTPError(400, "file path must be relative")
        n = Name.parse(req.get("model") or req.get("name") or "")
        if not n.is_valid():
            raise HTTPError(400, INVALID_MODEL_NAME)
        params = req.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise HTTPError(400, "json: cannot unmarshal into Go struct field CreateRequest.parameters")
        store = self.app.store
        n = store.existing_name(n)
        s = Streamer(self, req.get("stream") is not False)
        with self.app.create_lock:
            try:
                self._create(req, n, s)
            except HTTPError as e:
                s.error(e.message, e.status)
                return
            except PullError as e:
                s.error(str(e))
                return
            except (OSError, ValueError) as e:
                s.error(str(e))
                return
        s.finish()

    def _create(self, req: dict, name: Name, s: Streamer) -> None:
        store = self.app.store
        try:
            old = store.parse_named_manifest(name)
        except (OSError, ValueError):
            old = None
        config: dict[str, Any] = {"model_format": "", "model_family": "", "model_families": None, "model_type": "",
                                  "file_type": "", "renderer": req.get("renderer") or "",
                                  "parser": req.get("parser") or "", "requires": req.get("requires") or "",
                                  "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}
        base: list[tuple[Layer, Any]] = []  # (layer, gguf or None)
        if req.get("from"):
            from_name = Name.parse(req["from"])
            if not from_name.is_valid():
                raise HTTPError(400, INVALID_MODEL_NAME)
            try:
                bm = store.parse_named_manifest(from_name)
            except FileNotFoundError:
                Puller(store, self.app.registry_url, self.app.version, s.send,
                       no_prune=envconfig.no_prune()).pull(from_name)
                bm = store.parse_named_manifest(from_name)
            for src in bm.layers:
                layer = store.layer_from_layer(src.digest, src.media_type, from_name.display_shortest())
                layer.name = src.name
                g = None
                if layer.media_type in (MT + "model", MT + "projector", MT + "adapter"):
                    g = read_gguf(store.blob_path(layer.digest))
                base.append((layer, g))
            if bm.config.digest:
                try:
                    with open(store.blob_path(bm.config.digest), "rb") as f:
                        bc = json.loads(f.read())
                    for k in ("renderer", "parser", "requires"):
                        if not config[k]:
                            config[k] = bc.get(k) or ""
                except (OSError, ValueError):
                    pass
        elif req.get("files"):
            for fn, digest in req["files"].items():
                if not isinstance(digest, str) or not DIGEST_RE.match(digest):
                    raise HTTPError(400, "invalid digest format")
                path = store.blob_path(digest)
                if not (fn.endswith(".gguf") or _is_gguf(path)):
                    raise HTTPError(400, "unknown type")
                s.send({"status": "parsing GGUF"})
                try:
                    g = read_gguf(path)
                except FileNotFoundError:
                    raise OSError(f"open {path}: no such file or directory")
                except (ValueError, EOFError):
                    raise HTTPError(400, "supplied file was not in GGUF format")
                mt = MT + "model"
                if g.kv.get("general.type") == "adapter":
                    mt = MT + "adapter"
                elif (not g.key("block_count") and g.key("vision.block_count")) or g.kv.get("general.type") == "projector":
                    mt = MT + "projector"
                base.append((store.layer_from_layer(digest, mt, path), g))
        else:
            raise HTTPError(400, "neither 'from' or 'files' was specified")

        layers: list[Layer] = []
        for layer, g in base:
            if g is not None:
                config["model_format"] = config["model_format"] or "gguf"
                config["model_family"] = config["model_family"] or g.architecture
                config["model_type"] = config["model_type"] or human_number(g.parameter_count())
                config["file_type"] = config["file_type"] or g.file_type()
                config["model_families"] = (config["model_families"] or []) + [g.architecture]
            layers.append(layer)

        def remove_type(mt: str) -> None:
            nonlocal layers
            keep = []
            for l in layers:
                if l.media_type == mt:
                    store.remove_layer_if_unused(l.digest)
                else:
                    keep.append(l)
            layers = keep

        if req.get("template"):
            remove_type(MT + "template")
            layers.append(store.new_layer(req["template"].encode(), MT + "template"))
        if req.get("system"):
            remove_type(MT + "system")
            layers.append(store.new_layer(req["system"].encode(), MT + "system"))
        lic = req.get("license")
        if isinstance(lic, str) and lic:
            layers.append(store.new_layer(lic.encode(), MT + "license"))
        elif isinstance(lic, list):
            for x in lic:
                if not isinstance(x, str):
                    raise HTTPError(500, "json: cannot unmarshal into Go value of type string")
                layers.append(store.new_layer(x.encode(), MT + "license"))
        params = dict(req.get("parameters") or {})
        for l in [l for l in layers if l.media_type == MT + "params"]:
            with open(store.blob_path(l.digest), "rb") as f:
                existing = json.loads(f.read() or b"{}") or {}
            for k, v in existing.items():
                params.setdefault(k, v)
        if params:
            remove_type(MT + "params")
            layers.append(store.new_layer(params_blob(params), MT + "params"))
        msgs = req.get("messages")
        if msgs:
            remove_type(MT + "messages")
            enc = [{"role": m.get("role", ""), "content": m.get("content", "")} for m in msgs if isinstance(m, dict)]
            from .goformat import go_encoder

            layers.append(store.new_layer(go_encoder(enc), MT + "messages"))
        config["rootfs"] = {"type": "layers", "diff_ids": [l.digest for l in layers]}
        config_layer = store.new_layer(config_blob(config), CONFIG_MEDIA_TYPE)
        for l in layers:
            if l.status:
                s.send({"status": l.status})
        s.send({"status": "writing manifest"})
        store.write_manifest(name, Layer(config_layer.media_type, config_layer.digest, config_layer.size),
                             [Layer(l.media_type, l.digest, l.size, l.from_, l.name) for l in layers])
        if not envconfig.no_prune() and old is not None:
            store.remove_layers(old)
        self.app.sched.unload(str(name))
        s.send({"status": "success"})

    # ----------------------------------------------------------------- generate / chat

    def _runner_for(self, req: dict, model) -> Any:
        ka = parse_keep_alive(req.get("keep_alive"))
        opts = req.get("options")
        if opts is not None and not isinstance(opts, dict):
            raise HTTPError(400, "json: cannot unmarshal into Go struct field of type map[string]interface {}")
        try:
            return self.app.sched.load(model, opts, ka)
        except OptionError as e:
            raise HTTPError(500, str(e))

    def h_generate(self) -> None:
        req = self.json_body()
        if not isinstance(req, dict):
            raise HTTPError(400, "json: cannot unmarshal into Go value of type api.GenerateRequest")
        model_name = req.get("model") or ""
        model = self._load_model(model_name, lambda n: HTTPError(404, f"model '{n}' not found"))
        ka = parse_keep_alive(req.get("keep_alive"))
        prompt = req.get("prompt") or ""
        if not prompt and ka == 0:
            self.app.sched.unload(model.name)
            self.send_json(200, {"model": model_name, "created_at": go_time_json(utc=True), "response": "",
                                 "done": True, "done_reason": "unload"})
            return
        caps = model.capabilities()
        if "completion" not in caps:
            raise HTTPError(400, f'"{model_name}" does not support generate')
        self._runner_for(req, model)
        if not prompt:
            self.send_json(200, {"model": model_name, "created_at": go_time_json(utc=True), "response": "",
                                 "done": True, "done_reason": "load"})
            return
        text = anthropic.answer_text(model_name)
        self._ndjson_answer(req, model_name, lambda piece, done: {"response": piece}, text, prompt)

    def _ndjson_answer(self, req: dict, model_name: str, shape: Callable, text: str, prompt_obj: Any,
                       tool_calls: list | None = None) -> None:
        stream = req.get("stream") is not False
        pt = anthropic.estimate_tokens(prompt_obj)
        et = anthropic.estimate_tokens(text or json.dumps(tool_calls or []))
        metrics = {"total_duration": 1_000_000, "load_duration": 100_000, "prompt_eval_count": pt,
                   "prompt_eval_duration": 100_000, "eval_count": et, "eval_duration": 500_000}
        if not stream:
            obj = {"model": model_name, "created_at": go_time_json(utc=True)}
            obj.update(shape(text, True))
            if tool_calls:
                obj.setdefault("message", {})["tool_calls"] = tool_calls
            obj.update({"done": True, "done_reason": "stop"})
            obj.update(metrics)
            self.send_json(200, obj)
            return
        self.start_chunked(200, "application/x-ndjson")
        words = text.split(" ") if text else []
        pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
        for p in pieces:
            obj = {"model": model_name, "created_at": go_time_json(utc=True)}
            obj.update(shape(p, False))
            obj["done"] = False
            self.write_chunk((go_json(obj) + "\n").encode())
        if tool_calls:
            obj = {"model": model_name, "created_at": go_time_json(utc=True)}
            obj.update(shape("", False))
            obj["message"]["tool_calls"] = tool_calls
            obj["done"] = False
            self.write_chunk((go_json(obj) + "\n").encode())
        obj = {"model": model_name, "created_at": go_time_json(utc=True)}
        obj.update(shape("", True))
        obj.update({"done": True, "done_reason": "stop"})
        obj.update(metrics)
        self.write_chunk((go_json(obj) + "\n").encode())
        self.end_chunked()

    def h_chat(self) -> None:
        req = self.json_body()
        if not isinstance(req, dict):
            raise HTTPError(400, "json: cannot unmarshal into Go value of type api.ChatRequest")
        model_name = req.get("model") or ""
        n = Name.parse(model_name)
        if not n.is_valid():
            raise HTTPError(400, "model is required")
        model = self._load_model(model_name, lambda x: HTTPError(404, f"model '{x}' not found"))
        msgs = req.get("messages") or []
        ka = parse_keep_alive(req.get("keep_alive"))
        if not msgs and ka == 0:
            self.app.sched.unload(model.name)
            self.send_json(200, {"model": model_name, "created_at": go_time_json(utc=True),
                                 "message": {"role": "assistant", "content": ""}, "done": True,
                                 "done_reason": "unload"})
            return
        tools = req.get("tools") or []
        caps = model.capabilities()
        if tools and "tools" not in caps:
            raise HTTPError(400, f"{model_name} does not support tools")
        self._runner_for(req, model)
        if not msgs:
            self.send_json(200, {"model": model_name, "created_at": go_time_json(utc=True),
                                 "message": {"role": "assistant", "content": ""}, "done": True,
                                 "done_reason": "load"})
            return
        tool_calls = None
        text = anthropic.answer_text(model_name)
        as_anthropic = {"messages": [{"role": m.get("role"), "content": m.get("content") or ""}
                                     for m in msgs if isinstance(m, dict) and m.get("role") != "tool"],
                        "tools": [{"name": (t.get("function") or {}).get("name"),
                                   "input_schema": (t.get("function") or {}).get("parameters") or {}}
                                  for t in tools if isinstance(t, dict)]}
        if not any(isinstance(m, dict) and m.get("role") == "tool" for m in msgs):
            t = anthropic.requested_tool(as_anthropic)
            if t is not None:
                args = anthropic.tool_input(t, anthropic.latest_user_text(as_anthropic["messages"]))
                tool_calls = [{"id": anthropic.tool_call_id(as_anthropic),
                               "function": {"index": 0, "name": t["name"], "arguments": args}}]
                text = ""
        self._ndjson_answer(req, model_name, lambda piece, done: {"message": {"role": "assistant", "content": piece}},
                            text, msgs, tool_calls)

    # ----------------------------------------------------------------- /v1/messages

    def _anthropic_error(self, status: int, message: str) -> None:
        self.send_body(status, "application/json", (go_json(anthropic.new_error(status, message)) + "\n").encode())

    def h_messages(self) -> None:
        raw = self._raw_body
        try:
            req = json.loads(raw) if raw.strip() else None
        except ValueError as e:
            self._anthropic_error(400, f"invalid character in JSON body: {e.msg}")
            return
        if req is None:
            self._anthropic_error(400, "EOF")
            return
        try:
            anthropic.validate(req)
        except anthropic.BadRequest as e:
            self._anthropic_error(400, str(e))
            return
        model_name = req["model"]
        n = Name.parse(model_name)
        if not n.is_valid():
            self._anthropic_error(400, "model is required")
            return
        try:
            model = get_model(self.app.store, self.app.store.existing_name(n))
        except FileNotFoundError:
            self._anthropic_error(404, f"model '{model_name}' not found")
            return
        caps = model.capabilities()
        if req.get("tools") and "tools" not in caps:
            self._anthropic_error(400, f"{model_name} does not support tools")
            return
        try:
            self.app.sched.load(model, None, None)
        except OptionError as e:
            self._anthropic_error(500, str(e))
            return
        plan = anthropic.plan(req)
        mid = anthropic.message_id()
        if not req.get("stream"):
            self.send_body(200, "application/json",
                           (go_json(anthropic.response(mid, model_name, plan)) + "\n").encode())
            return
        self.start_chunked(200, "text/event-stream", {"Cache-Control": "no-cache", "Connection": "keep-alive"})
        delta_input = version_tuple(self.app.version) >= (0, 16, 0)
        for event, data in anthropic.stream_events(mid, model_name, plan, delta_input):
            self.write_chunk(f"event: {event}\ndata: {go_json(data)}\n\n".encode())
        self.end_chunked()


def _is_gguf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:  # keep stderr quiet on client resets
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def initialize_keypair() -> None:
    """cmd.initializeKeypair: ~/.ollama/id_ed25519(.pub) on first start (via ssh-keygen when present)."""
    d = os.path.join(envconfig.home_dir(), ".ollama")
    priv, pub = os.path.join(d, "id_ed25519"), os.path.join(d, "id_ed25519.pub")
    if os.path.exists(priv):
        return
    keygen = shutil.which("ssh-keygen")
    if not keygen:
        return
    print(f"Couldn't find '{priv}'. Generating new private key.", flush=True)
    try:
        os.makedirs(d, 0o755, exist_ok=True)
        tmp = os.path.join(d, f".id_ed25519.{os.getpid()}")
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", tmp], check=True,
                       capture_output=True, timeout=30)
        with open(tmp + ".pub") as f:
            pubkey = " ".join(f.read().split()[:2]) + "\n"
        os.chmod(tmp, 0o600)
        os.rename(tmp, priv)
        with open(pub, "w") as f:
            f.write(pubkey)
        os.chmod(pub, 0o644)
        os.remove(tmp + ".pub")
        print(f"Your new public key is: \n\n{pubkey}", flush=True)
    except (OSError, subprocess.SubprocessError) as e:
        log_line(f"could not create keypair: {e}", "WARN", "cmd.go")


def serve() -> int:
    initialize_keypair()
    h = envconfig.host()
    app = App()
    log_line(f"server config env=map[OLLAMA_HOST:{h.scheme}://{h.host} OLLAMA_MODELS:{app.store.root} "
             f"OLLAMA_NOPRUNE:{str(envconfig.no_prune()).lower()} OLLAMA_KEEP_ALIVE:{envconfig.keep_alive_ns()}ns]",
             source="routes.go")
    app.store.startup_prune(app.version, lambda m: log_line(m, source="images.go"))
    bind_host = h.hostname
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    if bind_host == "":
        bind_host = "0.0.0.0"

    class Srv(_Server):
        address_family = family

    handler = type("BoundHandler", (Handler,), {"app": app})
    try:
        httpd = Srv((bind_host, h.port), handler)
    except OSError as e:
        reason = {98: "bind: address already in use", 99: "bind: cannot assign requested address",
                  13: "bind: permission denied"}.get(e.errno, str(e))
        sys.stderr.write(f"Error: listen tcp {h.host}: {reason}\n")
        return 1
    log_line(f"Listening on {h.host} (version {app.version})")
    found, vram = app.sched.gpu_found, app.sched.vram
    log_line(f"inference compute id=0 library={'cuda' if found else 'cpu'} total=\\\"{vram / GIB:.1f} GiB\\\"",
             source="types.go")

    def stop(signum, frame):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
    return 0
