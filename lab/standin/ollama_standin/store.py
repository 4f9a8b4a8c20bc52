"""The content-addressed model store, as ollama/server (images.go, manifest.go, layer.go) keeps it.

$OLLAMA_MODELS/blobs/sha256-<hex>                        files 0644
$OLLAMA_MODELS/manifests/<host>/<ns>/<model>/<tag>      dirs 0755
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import envconfig, gguf, gotemplate
from .goformat import GoMap, go_encoder, go_json, json_to_go
from .names import Name

DIGEST_RE = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MT = "application/vnd.ollama.image."
LAYER_PRUNE_GRACE_S = 3600

# builtin parsers (model/parsers/parsers.go): name → (tools, thinking)
PARSERS = {
    "qwen3-coder": (True, False), "qwen3-vl-instruct": (True, False), "qwen3-vl-thinking": (True, True),
    "ministral": (True, False), "passthrough": (False, False), "harmony": (True, True),
    "cogito": (True, True), "deepseek3": (True, True), "olmo3": (True, False), "olmo3-think": (False, True),
    "nemotron-3-nano": (True, True), "functiongemma": (True, False), "glm-4.7": (True, True),
    "glm-4.6": (True, True), "lfm2": (True, False), "lfm2-thinking": (True, True),
}

DEFAULT_TEMPLATE = "{{ .Prompt }}"


class InvalidDigest(ValueError):
    pass


def version_tuple(v: str) -> tuple[int, ...]:
    nums = re.findall(r"\d+", v.split("-")[0].split("+")[0])
    return tuple(int(x) for x in nums[:3]) + (0,) * (3 - len(nums[:3]))


@dataclass
class Layer:
    media_type: str
    digest: str
    size: int
    from_: str = ""
    name: str = ""
    status: str = ""

    def to_json(self) -> dict:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.from_:
            d["from"] = self.from_
        if self.name:
            d["name"] = self.name
        return d

    @classmethod
    def from_json(cls, d: dict | None) -> "Layer":
        d = d or {}
        return cls(media_type=d.get("mediaType", "") or "", digest=d.get("digest", "") or "",
                   size=int(d.get("size", 0) or 0), from_=d.get("from", "") or "", name=d.get("name", "") or "")


@dataclass
class Manifest:
    schema_version: int
    media_type: str
    config: Layer
    layers: list[Layer]
    path: str = ""
    mtime_ns: int = 0
    digest: str = ""  # sha256 hex of the manifest file bytes
    raw: bytes = b""

    def size(self) -> int:
        return sum(l.size for l in self.layers) + self.config.size

    def all_digests(self) -> list[str]:
        return [l.digest for l in self.layers] + [self.config.digest]

    def to_go_json(self) -> bytes:
        """json.Marshal(manifest) (what pulls before 0.19 wrote)."""
        return go_json({
            "schemaVersion": self.schema_version,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [l.to_json() for l in self.layers],
        }).encode()

    @classmethod
    def parse(cls, data: bytes) -> "Manifest":
        d = json.loads(data)
        if not isinstance(d, dict):
            raise ValueError("json: cannot unmarshal into Manifest")
        return cls(schema_version=int(d.get("schemaVersion", 0) or 0), media_type=d.get("mediaType", "") or "",
                   config=Layer.from_json(d.get("config")),
                   layers=[Layer.from_json(x) for x in (d.get("layers") or [])], raw=data)


class Store:
    def __init__(self, root: str | None = None):
        self.root = root or envconfig.models_dir()

    # ----------------------------------------------------------------- paths

    def _mkdirs(self, path: str) -> None:
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        if parent and parent != path:
            self._mkdirs(parent)
        try:
            os.mkdir(path, 0o755)
            os.chmod(path, 0o755)
        except FileExistsError:
            pass

    def blobs_dir(self) -> str:
        p = os.path.join(self.root, "blobs")
        self._mkdirs(p)
        return p

    def manifests_dir(self) -> str:
        p = os.path.join(self.root, "manifests")
        self._mkdirs(p)
        return p

    def blob_path(self, digest: str) -> str:
        if not DIGEST_RE.match(digest):
            raise InvalidDigest("invalid digest format")
        return os.path.join(self.blobs_dir(), digest.replace(":", "-"))

    def manifest_path(self, name: Name) -> str:
        return os.path.join(self.manifests_dir(), name.filepath())

    def has_blob(self, digest: str) -> bool:
        try:
            return os.path.isfile(self.blob_path(digest))
        except InvalidDigest:
            return False

    # ----------------------------------------------------------------- manifests

    def parse_named_manifest(self, name: Name) -> Manifest:
        if not name.is_valid():
            raise ValueError(f"unqualified name: {name}")
        p = self.manifest_path(name)
        with open(p, "rb") as f:  # FileNotFoundError when missing
            data = f.read()
            st = os.fstat(f.fileno())
        m = Manifest.parse(data)
        m.path = p
        m.mtime_ns = st.st_mtime_ns
        m.digest = hashlib.sha256(data).hexdigest()
        return m

    def manifests(self, continue_on_error: bool = True) -> dict[str, tuple[Name, Manifest]]:
        """Manifests(): every manifests/*/*/*/* file, keyed by str(name)."""
        root = self.manifests_dir()
        out: dict[str, tuple[Name, Manifest]] = {}
        for match in sorted(glob.glob(os.path.join(glob.escape(root), "*", "*", "*", "*"))):
            try:
                if os.path.isdir(match):
                    continue
            except OSError:
                if not continue_on_error:
                    raise
                continue
            rel = os.path.relpath(match, root)
            n = Name.from_filepath(rel)
            if not n.is_valid():
                if not continue_on_error:
                    raise ValueError(f"{rel} bad manifest name")
                continue
            try:
                m = self.parse_named_manifest(n)
            except (OSError, ValueError) as e:
                if not continue_on_error:
                    raise ValueError(f"{n} {e}") from e
                continue
            out[str(n)] = (n, m)
        return out

    def existing_name(self, n: Name) -> Name:
        """getExistingName: case-insensitive match of each part against installed models."""
        host, ns, model, tag = n.host, n.namespace, n.model, n.tag
        for e, _ in self.manifests(True).values():
            if e.host.lower() == n.host.lower():
                host = e.host
            if e.namespace.lower() == n.namespace.lower():
                ns = e.namespace
            if e.model.lower() == n.model.lower():
                model = e.model
            if e.tag.lower() == n.tag.lower():
                tag = e.tag
        return Name(host=host, namespace=ns, model=model, tag=tag, scheme=n.scheme)

    def write_manifest(self, name: Name, config: Layer, layers: list[Layer]) -> None:
        """WriteManifest: json.NewEncoder(f).Encode(manifest) → trailing newline."""
        p = self.manifest_path(name)
        self._mkdirs(os.path.dirname(p))
        data = go_encoder({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.to_json(),
            "layers": [l.to_json() for l in layers],
        })
        self.write_file(p, data)

    def write_file(self, path: str, data: bytes) -> None:
        self._mkdirs(os.path.dirname(path))
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)

    def copy_model(self, src: Name, dst: Name) -> None:
        if src.filepath() == dst.filepath():
            return
        srcpath = self.manifest_path(src)
        with open(srcpath, "rb") as f:  # FileNotFoundError → 404
            data = f.read()
        self.write_file(self.manifest_path(dst), data)

    def remove_manifest(self, m: Manifest) -> None:
        os.remove(m.path)
        self.prune_directory(self.manifests_dir())

    def in_use(self) -> set[str]:
        used: set[str] = set()
        for _, m in self.manifests(True).values():
            used.update(d for d in m.all_digests() if d)
        return used

    def remove_layers(self, m: Manifest) -> None:
        """Manifest.RemoveLayers: delete this manifest's blobs that no other manifest uses."""
        used = self.in_use()
        for d in m.all_digests():
            if not d or d in used:
                continue
            try:
                os.remove(self.blob_path(d))
            except FileNotFoundError:
                pass

    def remove_layer_if_unused(self, digest: str) -> None:
        """Layer.Remove."""
        if not digest or digest in self.in_use():
            return
        try:
            os.remove(self.blob_path(digest))
        except (FileNotFoundError, InvalidDigest):
            pass

    def delete_unused(self, digests: set[str]) -> None:
        """deleteUnusedLayers."""
        left = set(digests) - self.in_use()
        for d in left:
            try:
                os.remove(self.blob_path(d))
            except (OSError, InvalidDigest):
                pass

    # ----------------------------------------------------------------- layers

    def new_layer(self, data: bytes, media_type: str) -> Layer:
        """NewLayer: write the blob unless it exists; status says which."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        status = "using existing layer"
        if not os.path.exists(path):
            status = "creating new layer"
            fd, tmp = tempfile.mkstemp(prefix="sha256-", dir=self.blobs_dir())
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.rename(tmp, path)
                os.chmod(path, 0o644)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        return Layer(media_type=media_type, digest=digest, size=len(data), status=f"{status} {digest}")

    def layer_from_layer(self, digest: str, media_type: str, from_: str) -> Layer:
        """NewLayerFromLayer."""
        if not digest:
            raise ValueError("creating new layer from layer with empty digest")
        st = os.stat(self.blob_path(digest))
        return Layer(media_type=media_type, digest=digest, size=st.st_size, from_=from_,
                     status=f"using existing layer {digest}")

    # ----------------------------------------------------------------- prune

    def fix_blobs(self) -> None:
        """fixBlobs: sha256:<hex> file names → sha256-<hex>."""
        for dirpath, _, files in os.walk(self.blobs_dir()):
            for fn in files:
                typ, sep, sha = fn.partition(":")
                if sep and typ == "sha256":
                    os.rename(os.path.join(dirpath, fn), os.path.join(dirpath, f"sha256-{sha}"))

    def prune_layers(self, version: str, log: Callable[[str], None] = lambda s: None) -> None:
        """PruneLayers: invalid names (partials) and unreferenced blobs go; from 0.21.0 only if
        their mtime is more than an hour old."""
        grace = version_tuple(version) >= (0, 21, 0)
        p = self.blobs_dir()
        delete: set[str] = set()
        now = time.time()
        for entry in sorted(os.scandir(p), key=lambda e: e.name):
            if grace:
                if entry.is_dir(follow_symlinks=False):
                    continue
                try:
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                except OSError:
                    continue
                if now - mtime < LAYER_PRUNE_GRACE_S:
                    continue
            name = entry.name.replace("-", ":")
            if not DIGEST_RE.match(name):
                try:
                    os.remove(entry.path)
                except OSError as e:
                    log(f"couldn't remove blob {entry.name}: {e}")
                continue
            delete.add(name)
        log(f"total blobs: {len(delete)}")
        used = self.in_use()
        removed = 0
        for d in delete - used:
            try:
                os.remove(self.blob_path(d))
                removed += 1
            except OSError:
                pass
        log(f"total unused blobs removed: {removed}")

    def prune_directory(self, path: str) -> None:
        """PruneDirectory: remove empty directories bottom-up (path itself too)."""
        if os.path.islink(path) or not os.path.isdir(path):
            return
        for e in os.listdir(path):
            self.prune_directory(os.path.join(path, e))
        if not os.listdir(path):
            os.rmdir(path)

    def startup_prune(self, version: str, log: Callable[[str], None] = lambda s: None) -> None:
        self.blobs_dir()
        self.fix_blobs()
        if envconfig.no_prune():
            return
        try:
            self.manifests(False)
        except (OSError, ValueError) as e:
            log(f"corrupt manifests detected, skipping prune operation.  Re-pull or delete to clear: {e}")
            return
        self.prune_layers(version, log)
        self.prune_directory(self.manifests_dir())


# --------------------------------------------------------------------------- models


@dataclass
class Model:
    name: str  # full name (registry.ollama.ai/library/x:tag)
    short_name: str
    digest: str
    config: dict = field(default_factory=dict)
    model_path: str = ""
    parent_model: str = ""
    adapter_paths: list[str] = field(default_factory=list)
    projector_paths: list[str] = field(default_factory=list)
    template: str = DEFAULT_TEMPLATE
    system: str = ""
    license: list[str] = field(default_factory=list)
    options: dict | None = None
    messages: list[dict] = field(default_factory=list)
    _gguf: Any = None

    def gguf(self):
        if self._gguf is None and self.model_path:
            self._gguf = gguf.read_gguf(self.model_path)
        return self._gguf

    def capabilities(self) -> list[str]:
        """Model.Capabilities (server/images.go)."""
        cfg_caps = self.config.get("capabilities") or []
        if "image" in cfg_caps:
            return ["image"]
        caps: list[str] = []
        if self.model_path:
            try:
                g = self.gguf()
                caps.append("embedding" if g.has("pooling_type") else "completion")
                if g.has("vision.block_count"):
                    caps.append("vision")
            except (OSError, ValueError, EOFError):
                pass
        elif cfg_caps:
            caps.extend(cfg_caps)
        if self.template is None:
            return caps
        parser = PARSERS.get(self.config.get("parser") or "")
        try:
            v = gotemplate.vars_of(self.template)
        except gotemplate.TemplateError:
            v = []
        if "tools" in v or (parser and parser[0]):
            caps.append("tools")
        if "suffix" in v:
            caps.append("insert")
        if self.projector_paths:
            caps.append("vision")
        if "thinking" in caps:
            return caps
        try:
            o, c = gotemplate.infer_thinking_tags(self.template)
        except gotemplate.TemplateError:
            o, c = "", ""
        family = self.config.get("model_family") or ""
        if (o and c) or family in ("gptoss", "gpt-oss") or (parser and parser[1]):
            caps.append("thinking")
        return caps

    def modelfile_commands(self) -> list[tuple[str, str]]:
        """Model.String()'s commands (parameters sorted: Go iterates its map at random)."""
        cmds: list[tuple[str, str]] = [("model", self.model_path)]
        cmds += [("adapter", a) for a in self.adapter_paths]
        cmds += [("model", p) for p in self.projector_paths]
        if self.template is not None:
            cmds.append(("template", self.template))
        if self.system:
            cmds.append(("system", self.system))
        if self.config.get("renderer"):
            cmds.append(("renderer", self.config["renderer"]))
        if self.config.get("parser"):
            cmds.append(("parser", self.config["parser"]))
        from .goformat import go_v

        for k in sorted(self.options or {}):
            v = self.options[k]
            if isinstance(v, list):
                cmds += [(k, go_v(x)) for x in v]
            else:
                cmds.append((k, go_v(v)))
        cmds += [("license", l) for l in self.license]
        cmds += [("message", f"{m.get('role', '')}: {m.get('content', '')}") for m in self.messages]
        return cmds


def get_model(store: Store, name: Name) -> Model:
    """GetModel (server/images.go). FileNotFoundError when the manifest or a blob is missing."""
    m = store.parse_named_manifest(name)
    model = Model(name=str(name), short_name=name.display_shortest(), digest=m.digest)
    if m.config.digest:
        with open(store.blob_path(m.config.digest), "rb") as f:
            cfg = json.loads(f.read() or b"{}")
        model.config = cfg if isinstance(cfg, dict) else {}
    for layer in m.layers:
        path = store.blob_path(layer.digest)
        mt = layer.media_type
        if mt == MT + "model":
            model.model_path = path
            model.parent_model = layer.from_
        elif mt == MT + "adapter":
            model.adapter_paths.append(path)
        elif mt == MT + "projector":
            model.projector_paths.append(path)
        elif mt in (MT + "prompt", MT + "template"):
            with open(path, "rb") as f:
                model.template = f.read().decode("utf-8", "replace")
        elif mt == MT + "system":
            with open(path, "rb") as f:
                model.system = f.read().decode("utf-8", "replace")
        elif mt == MT + "params":
            with open(path, "rb") as f:
                opts = json.loads(f.read() or b"null")
            model.options = json_to_go(opts) if isinstance(opts, dict) else None
        elif mt == MT + "messages":
            with open(path, "rb") as f:
                msgs = json.loads(f.read() or b"[]")
            model.messages = msgs if isinstance(msgs, list) else []
        elif mt == MT + "license":
            with open(path, "rb") as f:
                model.license.append(f.read().decode("utf-8", "replace"))
    return model


def config_blob(config: dict) -> bytes:
    """model.ConfigV2 encoded like json.NewEncoder: field order of the Go struct, trailing newline."""
    order = ["model_format", "model_family", "model_families", "model_type", "file_type", "renderer", "parser",
             "requires", "remote_host", "remote_model", "capabilities", "context_length", "embedding_length",
             "base_name", "architecture", "os", "rootfs"]
    omitempty = {"renderer", "parser", "requires", "remote_host", "remote_model", "capabilities",
                 "context_length", "embedding_length", "base_name"}
    out: dict[str, Any] = {}
    for k in order:
        v = config.get(k)
        if k in omitempty and not v:
            continue
        if k == "model_families" and v is None:
            out[k] = None
            continue
        if k == "rootfs":
            v = v or {}
            out[k] = {"type": v.get("type", "layers"), "diff_ids": v.get("diff_ids")}
            continue
        out[k] = "" if v is None else v
    return go_encoder(out)


def params_blob(params: dict) -> bytes:
    """json.NewEncoder(&b).Encode(map[string]any): sorted keys, trailing newline."""
    return go_encoder(GoMap(params), sort_keys=True)
