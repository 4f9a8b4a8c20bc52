"""`ollama pull` against an OCI registry, after server/images.go (PullModel) and server/download.go.

GET /v2/<ns>/<model>/manifests/<tag> (Accept: docker v2 manifest), HEAD the blob for its size,
GET the blob for its direct URL (a 307 to the CDN on registry.ollama.ai; same-host redirects are
followed), then Range-GETs into sha256-<hex>-partial with progress kept in -partial-<N> JSON files,
verify sha256, rename, write the manifest.

Deviation, on purpose: a plain registry:2 answers the blob GET with 200 and no Location; the real
Ollama then fails ("http: no Location header in response", https://github.com/ollama/ollama/issues/7244). The stand-in uses
the blob URL itself as the direct URL instead, so it can pull from Debian's docker-registry.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Callable

from .goformat import go_json
from .names import DEFAULT_HOST, Name
from .store import Manifest, Store, version_tuple

ACCEPT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
NUM_PARTS = 16
MIN_PART = 100 * 1000 * 1000
MAX_PART = 1000 * 1000 * 1000
CHUNK = 1 << 20


_locks_guard = threading.Lock()
_digest_locks: dict[str, threading.Lock] = {}


def _digest_lock(digest: str) -> threading.Lock:
    """One download per blob at a time (the real server shares one blobDownload per digest)."""
    with _locks_guard:
        return _digest_locks.setdefault(digest, threading.Lock())


class PullError(Exception):
    pass


class NotFound(PullError):
    def __str__(self) -> str:
        return "file does not exist"


def _errno_text(e: OSError) -> str:
    en = getattr(e, "errno", None)
    if isinstance(e, socket.gaierror):
        return "no such host"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "i/o timeout"
    texts = {errno.ECONNREFUSED: "connect: connection refused", errno.ENETUNREACH: "connect: network is unreachable",
             errno.EHOSTUNREACH: "connect: no route to host", errno.ECONNRESET: "read: connection reset by peer"}
    return texts.get(en, str(e))


class _Conn:
    """One HTTP(S) request at a time with Go-like error texts."""

    def __init__(self, user_agent: str, timeout: float = 30.0):
        self.ua = user_agent
        self.timeout = timeout

    def request(self, method: str, url: str, headers: dict | None = None):
        u = urllib.parse.urlsplit(url)
        port = u.port or (443 if u.scheme == "https" else 80)
        if u.scheme == "https":
            conn = http.client.HTTPSConnection(u.hostname, port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(u.hostname, port, timeout=self.timeout)
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        h = {"User-Agent": self.ua}
        h.update(headers or {})
        try:
            conn.request(method, path, headers=h)
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            hostport = f"{u.hostname}:{port}"
            if isinstance(e, socket.gaierror):
                raise PullError(f'{method.title()} "{url}": dial tcp: lookup {u.hostname}: no such host') from e
            raise PullError(f'{method.title()} "{url}": dial tcp {hostport}: {_errno_text(e)}') from e
        resp._conn_ref = conn  # keep alive until closed
        return resp


def _close(resp) -> None:
    try:
        resp.close()
    finally:
        conn = getattr(resp, "_conn_ref", None)
        if conn is not None:
            conn.close()


def registry_base(name: Name, registry_url: str, insecure: bool) -> str:
    """The registry for a name: the baked URL stands in for registry.ollama.ai."""
    if name.host.lower() == DEFAULT_HOST:
        return registry_url.rstrip("/")
    scheme = name.scheme or "https"
    if insecure and scheme != "http":
        scheme = "http"
    return f"{scheme}://{name.host}"


class Puller:
    def __init__(self, store: Store, registry_url: str, version: str, fn: Callable[[dict], None],
                 insecure: bool = False, no_prune: bool = False, log: Callable[[str], None] = lambda s: None):
        self.store = store
        self.registry_url = registry_url
        self.version = version
        self.fn = fn
        self.insecure = insecure
        self.no_prune = no_prune
        self.log = log
        self.http = _Conn(f"ollama/{version} (amd64 linux) Go/go1.24.0")

    # -------------------------------------------------------------- requests

    def _request(self, method: str, url: str, headers: dict | None = None):
        """makeRequestWithRetry: 404 → file does not exist; >= 400 → '<code>: <body>'."""
        resp = self.http.request(method, url, headers)
        if resp.status == 404:
            _close(resp)
            raise NotFound()
        if resp.status == 401:
            _close(resp)
            raise PullError("unauthorized: access denied")
        if resp.status >= 400:
            body = resp.read().decode("utf-8", "replace")
            _close(resp)
            raise PullError(f"{resp.status}: {body}")
        return resp

    # -------------------------------------------------------------- pull

    def pull(self, name: Name) -> None:
        store = self.store
        delete_map: set[str] = set()
        try:
            old = store.parse_named_manifest(name)
            delete_map.update(d for d in old.all_digests() if d)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            self.log(f"pulling model with bad existing manifest name={name} error={e}")
        if name.scheme == "http" and not self.insecure:
            raise PullError("insecure protocol http")
        self.fn({"status": "pulling manifest"})
        base = registry_base(name, self.registry_url, self.insecure)
        repo = name.repository()
        try:
            resp = self._request("GET", f"{base}/v2/{repo}/manifests/{name.tag}", {"Accept": ACCEPT_MANIFEST})
            data = resp.read()
            _close(resp)
            manifest = Manifest.parse(data)
        except (PullError, ValueError) as e:
            raise PullError(f"pull model manifest: {e}") from e
        layers = list(manifest.layers)
        if manifest.config.digest:
            layers.append(manifest.config)
        cache_hit: dict[str, bool] = {}
        for layer in layers:
            with _digest_lock(layer.digest):
                cache_hit[layer.digest] = self.download_blob(base, repo, layer.digest)
            delete_map.discard(layer.digest)
        self.fn({"status": "verifying sha256 digest"})
        for layer in layers:
            if cache_hit.get(layer.digest):
                continue
            path = store.blob_path(layer.digest)
            got = _sha256_path(path)
            if got != layer.digest:
                try:
                    os.remove(path)
                except OSError:
                    pass
                raise PullError(f"digest mismatch, file must be downloaded again: want {layer.digest}, got {got}")
        for layer in layers:
            delete_map.discard(layer.digest)
        delete_map.discard(manifest.config.digest)
        self.fn({"status": "writing manifest"})
        # 0.19.0 (https://github.com/ollama/ollama/pull/15104) keeps the registry's bytes; before, json.Marshal re-encoded the struct.
        raw = data if version_tuple(self.version) >= (0, 19, 0) else manifest.to_go_json()
        store.write_file(store.manifest_path(name), raw)
        if not self.no_prune and delete_map:
            self.fn({"status": "removing unused layers"})
            store.delete_unused(delete_map)
        self.fn({"status": "success"})

    # -------------------------------------------------------------- blobs

    def _progress(self, digest: str, total: int, completed: int) -> None:
        self.fn({"status": f"pulling {digest[7:19]}", "digest": digest, "total": total, "completed": completed})

    def download_blob(self, base: str, repo: str, digest: str) -> bool:
        """downloadBlob → True when the blob was already there (trusted, not re-hashed)."""
        if not digest:
            raise PullError(f"{repo}: digest is empty")
        fp = self.store.blob_path(digest)
        try:
            st = os.stat(fp)
            self._progress(digest, st.st_size, st.st_size)
            return True
        except FileNotFoundError:
            pass
        blob_url = f"{base}/v2/{repo}/blobs/{digest}"
        parts = self._read_parts(fp)
        if parts:
            total = sum(p["Size"] for p in parts)
        else:
            resp = self._request("HEAD", blob_url)
            total = int(resp.getheader("Content-Length") or 0)
            _close(resp)
            size = total // NUM_PARTS
            size = max(MIN_PART, min(MAX_PART, size))
            offset = 0
            parts = []
            while offset < total:
                sz = min(size, total - offset)
                parts.append({"N": len(parts), "Offset": offset, "Size": sz, "Completed": 0})
                offset += sz
            for p in parts:
                self._write_part(fp, p)
        completed = sum(p["Completed"] for p in parts)
        self._progress(digest, total, completed)
        partial = fp + "-partial"
        fd = os.open(partial, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            os.ftruncate(fd, total)
            direct = self._direct_url(blob_url)
            last = time.monotonic()
            for p in parts:
                tries = 0
                while p["Completed"] < p["Size"]:
                    try:
                        last = self._download_part(fd, fp, direct, p, digest, total, parts, last)
                    except PullError:
                        tries += 1
                        if tries >= 3:
                            raise
                        time.sleep(0.2 * tries)
        finally:
            os.close(fd)
        for p in parts:
            try:
                os.remove(f"{partial}-{p['N']}")
            except FileNotFoundError:
                pass
        os.rename(partial, fp)
        os.chmod(fp, 0o644)
        self._progress(digest, total, total)
        return False

    def _direct_url(self, blob_url: str) -> str:
        host = urllib.parse.urlsplit(blob_url).hostname
        url = blob_url
        for _ in range(11):
            resp = self._request("GET", url)
            status = resp.status
            loc = resp.getheader("Location")
            _close(resp)  # do not read the body: only the location matters
            if status in (301, 302, 303, 307, 308) and loc:
                nxt = urllib.parse.urljoin(url, loc)
                if urllib.parse.urlsplit(nxt).hostname == host:
                    url = nxt  # same host: the Go client follows it
                    continue
                if status != 307:
                    raise PullError(f"unexpected status code {status}")
                return nxt
            if status == 200:
                return url  # registry:2 serves the blob itself (see module docstring)
            raise PullError(f"unexpected status code {status}")
        raise PullError("maximum redirects exceeded (10) for directURL")

    def _download_part(self, fd: int, fp: str, url: str, part: dict, digest: str, total: int,
                       parts: list[dict], last: float) -> float:
        start = part["Offset"] + part["Completed"]
        end = part["Offset"] + part["Size"] - 1
        resp = self.http.request("GET", url, {"Range": f"bytes={start}-{end}"})
        try:
            if resp.status not in (200, 206):
                raise PullError(f"unexpected status code {resp.status}")
            if resp.status == 200 and start:  # range ignored: skip what we already have
                remaining = start
                while remaining:
                    c = resp.read(min(CHUNK, remaining))
                    if not c:
                        break
                    remaining -= len(c)
            pos = start
            while pos <= end:
                chunk = resp.read(min(CHUNK, end - pos + 1))
                if not chunk:
                    break
                os.pwrite(fd, chunk, pos)
                pos += len(chunk)
                part["Completed"] = pos - part["Offset"]
                now = time.monotonic()
                if now - last >= 0.06:
                    last = now
                    self._write_part(fp, part)
                    self._progress(digest, total, sum(p["Completed"] for p in parts))
        except OSError as e:
            raise PullError(str(e)) from e
        finally:
            _close(resp)
            self._write_part(fp, part)
        if part["Completed"] < part["Size"]:
            raise PullError("unexpected EOF")
        return last

    def _read_parts(self, fp: str) -> list[dict]:
        parts = []
        d = os.path.dirname(fp)
        prefix = os.path.basename(fp) + "-partial-"
        for fn in sorted(os.listdir(d)):
            if fn.startswith(prefix) and fn[len(prefix):].isdigit():
                try:
                    with open(os.path.join(d, fn)) as f:
                        p = json.load(f)
                    parts.append({"N": int(p["N"]), "Offset": int(p["Offset"]), "Size": int(p["Size"]),
                                  "Completed": int(p.get("Completed", 0))})
                except (OSError, ValueError, KeyError, TypeError) as e:
                    raise PullError(str(e)) from e
        parts.sort(key=lambda p: p["N"])
        return parts

    def _write_part(self, fp: str, part: dict) -> None:
        path = f"{fp}-partial-{part['N']}"
        data = (go_json({"N": part["N"], "Offset": part["Offset"], "Size": part["Size"],
                         "Completed": part["Completed"]}) + "\n").encode()
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)


def _sha256_path(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
