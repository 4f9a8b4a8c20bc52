"""Environment settings read the way ollama/envconfig/config.go reads them."""

from __future__ import annotations

import ipaddress
import os
import pwd
from dataclasses import dataclass

from .goformat import MAX_DURATION_NS, parse_go_duration


def var(key: str) -> str:
    """envconfig.Var: trimmed of spaces, then of surrounding quotes."""
    return os.environ.get(key, "").strip().strip("\"'")


def env_bool(key: str, default: bool = False) -> bool:
    """envconfig.Bool: strconv.ParseBool, and any unparsable non-empty value means true."""
    s = var(key)
    if not s:
        return default
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return True


def env_uint(key: str, default: int) -> int:
    s = var(key)
    if s:
        try:
            n = int(s, 10)
            if n >= 0:
                return n
        except ValueError:
            pass
    return default


@dataclass(frozen=True)
class HostURL:
    scheme: str
    host: str  # as Go's url.Host: "127.0.0.1:11434", "[::1]:11434", ":11434"
    hostname: str
    port: int
    path: str

    def base(self) -> str:
        """Base URL a client connects to (an empty or unspecified host means this machine)."""
        h = self.hostname
        if h in ("", "0.0.0.0"):
            h = "127.0.0.1"
        elif h == "::":
            h = "::1"
        if ":" in h:
            h = f"[{h}]"
        p = ("/" + self.path) if self.path else ""
        return f"{self.scheme}://{h}:{self.port}{p}"


def _split_host_port(hostport: str) -> tuple[str, str]:
    """net.SplitHostPort (raises ValueError where Go returns an error)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError("missing ']' in address")
        host = hostport[1:end]
        rest = hostport[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError("missing port in address")
        port = rest[1:]
        if ":" in port:
            raise ValueError("too many colons in address")
        return host, port
    i = hostport.rfind(":")
    if i < 0:
        raise ValueError("missing port in address")
    host, port = hostport[:i], hostport[i + 1 :]
    if ":" in host:
        raise ValueError("too many colons in address")
    return host, port


def host() -> HostURL:
    """envconfig.Host: default http://127.0.0.1:11434; accepts 0.0.0.0, :11434, host:port, http://host:port."""
    default_port = "11434"
    s = var("OLLAMA_HOST")
    scheme, sep, hostport = s.partition("://")
    if not sep:
        scheme, hostport = "http", s
        if s == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    elif scheme == "http":
        default_port = "80"
    elif scheme == "https":
        default_port = "443"
    hostport, _, path = hostport.partition("/")
    try:
        h, port = _split_host_port(hostport)
    except ValueError:
        h, port = "127.0.0.1", default_port
        try:
            h = str(ipaddress.ip_address(hostport.strip("[]")))
        except ValueError:
            if hostport:
                h = hostport
    try:
        n = int(port, 10)
        if n < 0 or n > 65535:
            raise ValueError
    except ValueError:
        port = default_port
        n = int(port)
    joined = f"[{h}]:{n}" if ":" in h else f"{h}:{n}"
    return HostURL(scheme=scheme, host=joined, hostname=h, port=n, path=path)


def home_dir() -> str:
    h = os.environ.get("HOME")
    if h:
        return h
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return "/"


def models_dir() -> str:
    """envconfig.Models: OLLAMA_MODELS, else $HOME/.ollama/models."""
    s = var("OLLAMA_MODELS")
    if s:
        return s
    return os.path.join(home_dir(), ".ollama", "models")


def keep_alive_ns() -> int:
    """envconfig.KeepAlive: default 5m; a Go duration or integer seconds; negative = forever."""
    ka = 5 * 60 * 1_000_000_000
    s = var("OLLAMA_KEEP_ALIVE")
    if s:
        try:
            ka = parse_go_duration(s)
        except ValueError:
            try:
                ka = int(s, 10) * 1_000_000_000
            except ValueError:
                pass
    if ka < 0:
        return MAX_DURATION_NS
    return ka


def no_prune() -> bool:
    return env_bool("OLLAMA_NOPRUNE")


def context_length() -> int:
    """OLLAMA_CONTEXT_LENGTH (0 = unset)."""
    return env_uint("OLLAMA_CONTEXT_LENGTH", 0)


def max_loaded_models() -> int:
    return env_uint("OLLAMA_MAX_LOADED_MODELS", 0)
