#!/usr/bin/env python3
"""Small deterministic stand-ins for the Ollama library models of the research catalog.

Each model is what `ollama pull` would store, scaled down to 1–4 MiB:

* a real GGUF v3 model blob: general.* metadata, `<arch>.context_length`, `.block_count`,
  `.embedding_length`, `.attention.head_count(_kv)`, `.attention.key_length/value_length`, expert and
  sliding-window keys where the real model has them, `<arch>.vision.block_count` for vision models,
  a tiny tokenizer; tensor infos whose element counts add up to the real parameter count (so Ollama's
  decoder reports general.parameter_count = e.g. 30.5e9 and /api/ps sizes are realistic); the data
  area is deterministic pseudo-random filler (the declared tensors are not really there);
* a Go template layer (uses .Tools for tool-capable models, .Thinking inside range .Messages for
  thinking ones), a params layer, a license layer;
* the config blob (application/vnd.docker.container.image.v1+json) and a Docker v2 manifest in the
  compact form Ollama's Go code writes, so the registry digest == the ID `ollama list` shows.

The specs below come from the same research as localcode/catalog.yaml (models' config files and
cards); they are embedded so the output depends on this file alone, and a test checks them
against the catalog.

    python3 lab/standin/synthetic_models.py --store DIR [MODEL ...]   # write an OLLAMA_MODELS tree
    python3 lab/standin/synthetic_models.py --list
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ollama_standin import gguf  # noqa: E402
from ollama_standin.gguf import (T_ARRAY, T_BOOL, T_FLOAT32, T_STRING, T_UINT32, T_UINT64, Tensor,  # noqa: E402
                                 write_gguf_header)
from ollama_standin.goformat import go_encoder, go_json  # noqa: E402

MIB = 1 << 20
MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MT = "application/vnd.ollama.image."

# tag, aliases, gguf arch, layers, kv heads (int or per-layer list), key/value length, context, tools,
# thinking, vision, quant, params (billions), download GB, embedding, heads, experts (n, used), window,
# shared_kv (last layers that reuse earlier layers' KV, Gemma 4 E models)
SPECS: list[dict] = [
    {"tag": "qwen3-coder:30b", "aliases": ["qwen3-coder:latest"], "arch": "qwen3moe", "layers": 48,
     "kv_heads": 4, "key_len": 128, "value_len": 128, "context": 262144, "tools": True, "thinking": False,
     "vision": False, "quant": "Q4_K_M", "params_b": 30.5, "download_gb": 18.6, "embedding": 2048,
     "heads": 32, "experts": (128, 8), "family_style": "qwen"},
    {"tag": "devstral-small-2:24b", "aliases": ["devstral-small-2:latest", "devstral-small-2:24b-instruct-2512-q4_K_M"],
     "arch": "mistral3", "layers": 40, "kv_heads": 8, "key_len": 128, "value_len": 128, "context": 262144,
     "tools": True, "thinking": False, "vision": True, "quant": "Q4_K_M", "params_b": 24, "download_gb": 15.2,
     "embedding": 5120, "heads": 32, "family_style": "mistral"},
    {"tag": "gpt-oss:20b", "aliases": ["gpt-oss:latest"], "arch": "gptoss", "layers": 24, "kv_heads": 8,
     "key_len": 64, "value_len": 64, "context": 131072, "tools": True, "thinking": True, "vision": False,
     "quant": "MXFP4", "params_b": 20.9, "download_gb": 13.8, "embedding": 2880, "heads": 64,
     "experts": (32, 4), "window": 128, "family_style": "harmony"},
    {"tag": "gemma4:e4b", "aliases": ["gemma4:latest"], "arch": "gemma4", "layers": 42,
     "kv_heads": "pattern:2/2", "key_len": 512, "value_len": 512, "swa_len": 256, "full_every": 6,
     "context": 131072, "tools": True, "thinking": True, "vision": True, "quant": "Q4_K_M", "params_b": 8.0,
     "download_gb": 9.61, "embedding": 2560, "heads": 8, "window": 512, "shared_kv": 18, "family_style": "gemma"},
    {"tag": "gemma4:26b", "aliases": [], "arch": "gemma4", "layers": 30, "kv_heads": "pattern:8/2",
     "key_len": 512, "value_len": 512, "swa_len": 256, "full_every": 6, "context": 262144, "tools": True,
     "thinking": True, "vision": True, "quant": "Q4_K_M", "params_b": 25.8, "download_gb": 17.99,
     "embedding": 2816, "heads": 16, "experts": (128, 8), "window": 1024, "family_style": "gemma"},
    {"tag": "gemma4:31b", "aliases": ["gemma4:31b-it-q4_K_M"], "arch": "gemma4", "layers": 60,
     "kv_heads": "pattern:16/4", "key_len": 512, "value_len": 512, "swa_len": 256, "full_every": 6,
     "context": 262144, "tools": True, "thinking": True, "vision": True, "quant": "Q4_K_M", "params_b": 30.7,
     "download_gb": 19.9, "embedding": 5376, "heads": 32, "window": 1024, "family_style": "gemma"},
    {"tag": "nemotron-3-nano:30b", "aliases": [], "arch": "nemotron_h_moe", "layers": 52,
     "kv_heads": "attn:2@6", "key_len": 128, "value_len": 128, "context": 1048576, "tools": True,
     "thinking": True, "vision": False, "quant": "Q4_K_M", "params_b": 31.6, "download_gb": 24,
     "embedding": 2688, "heads": 32, "experts": (128, 6), "family_style": "nemotron"},
    {"tag": "glm-4.7-flash:latest", "aliases": ["glm-4.7-flash:q4_K_M"], "arch": "glm4moelite", "layers": 47,
     "kv_heads": 1, "key_len": 576, "value_len": 512, "context": 202752, "tools": True, "thinking": True,
     "vision": False, "quant": "Q4_K_M", "params_b": 29.9, "download_gb": 19, "embedding": 2048, "heads": 20,
     "experts": (64, 4), "kv_lora_rank": 512, "family_style": "glm"},
    {"tag": "gemma4:12b", "aliases": [], "arch": "gemma4", "layers": 48, "kv_heads": "pattern:8/1",
     "key_len": 512, "value_len": 512, "swa_len": 256, "full_every": 6, "context": 131072, "tools": True,
     "thinking": True, "vision": True, "quant": "Q4_K_M", "params_b": 12.0, "download_gb": 7.6,
     "embedding": 3840, "heads": 16, "window": 1024, "family_style": "gemma"},
    {"tag": "gemma4:e2b", "aliases": [], "arch": "gemma4", "layers": 35, "kv_heads": "pattern:1/1",
     "key_len": 512, "value_len": 512, "swa_len": 256, "full_every": 5, "context": 131072, "tools": True,
     "thinking": True, "vision": True, "quant": "Q4_K_M", "params_b": 5.1, "download_gb": 7.2,
     "embedding": 1536, "heads": 8, "window": 512, "shared_kv": 20, "family_style": "gemma"},
    {"tag": "qwen3.5:9b", "aliases": [], "arch": "qwen35", "layers": 32, "kv_heads": "attn:4@8", "key_len": 256,
     "value_len": 256, "context": 262144, "tools": True, "thinking": True, "vision": True, "quant": "Q4_K_M",
     "params_b": 9.65, "download_gb": 6.6, "embedding": 4096, "heads": 16, "family_style": "qwen"},
    {"tag": "qwen3.5:4b", "aliases": [], "arch": "qwen35", "layers": 32, "kv_heads": "attn:4@8", "key_len": 256,
     "value_len": 256, "context": 262144, "tools": True, "thinking": True, "vision": True, "quant": "Q4_K_M",
     "params_b": 4.21, "download_gb": 3.4, "embedding": 2560, "heads": 16, "family_style": "qwen"},
    {"tag": "qwen2.5-coder:7b", "aliases": [], "arch": "qwen2", "layers": 28, "kv_heads": 4, "key_len": 128,
     "value_len": 128, "context": 32768, "tools": True, "thinking": False, "vision": False, "quant": "Q4_K_M",
     "params_b": 7.6, "download_gb": 4.7, "embedding": 3584, "heads": 28, "family_style": "qwen"},
    {"tag": "qwen2.5-coder:14b", "aliases": [], "arch": "qwen2", "layers": 48, "kv_heads": 8, "key_len": 128,
     "value_len": 128, "context": 32768, "tools": True, "thinking": False, "vision": False, "quant": "Q4_K_M",
     "params_b": 14.7, "download_gb": 9.0, "embedding": 5120, "heads": 40, "family_style": "qwen"},
    {"tag": "qwen2.5-coder:32b", "aliases": ["qwen2.5-coder:32b-instruct"], "arch": "qwen2", "layers": 64,
     "kv_heads": 8, "key_len": 128, "value_len": 128, "context": 32768, "tools": True, "thinking": False,
     "vision": False, "quant": "Q4_K_M", "params_b": 32.5, "download_gb": 19.9, "embedding": 5120, "heads": 40,
     "family_style": "qwen"},
]

QUANT_TENSOR_TYPE = {"Q4_K_M": 12, "Q4_K_S": 12, "Q8_0": 8, "F16": 1, "BF16": 30, "MXFP4": 39, "Q4_0": 2}

PARAMS = {
    "qwen": {"repeat_penalty": 1.05, "stop": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"], "temperature": 0.7,
             "top_k": 20, "top_p": 0.8},
    "mistral": {"temperature": 0.15},
    "harmony": {"temperature": 1},
    "gemma": {"stop": ["<end_of_turn>"], "temperature": 1, "top_k": 64, "top_p": 0.95},
    "nemotron": {"temperature": 1, "top_p": 1},
    "glm": {"temperature": 1, "top_p": 0.95},
}

LICENSES = {
    "qwen": "Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/\n",
    "mistral": "Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/\n",
    "harmony": "Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/\n",
    "gemma": "Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/\n",
    "nemotron": "NVIDIA Open Model License Agreement\n",
    "glm": "MIT License\n\nCopyright (c) 2025 Zhipu AI\n",
}

TOOLS_BLOCK = """{{- if .Tools }}
# Tools

You may call one or more functions to assist with the user query.
<tools>
{{- range .Tools }}
{{ . }}
{{- end }}
</tools>
{{- end }}"""

THINKING_BLOCK = """{{- if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}"""


def template_for(spec: dict) -> str:
    """A Go template in the style of the family; .Tools / .Thinking exactly when the model has them."""
    start, end = {
        "qwen": ("<|im_start|>", "<|im_end|>"), "mistral": ("[INST]", "[/INST]"),
        "harmony": ("<|start|>", "<|end|>"), "gemma": ("<start_of_turn>", "<end_of_turn>"),
        "nemotron": ("<|im_start|>", "<|im_end|>"), "glm": ("<|", "|>"),
    }[spec["family_style"]]
    parts = [f"{{{{- if .System }}}}{start}system\n{{{{ .System }}}}{end}\n{{{{ end }}}}"]
    if spec["tools"]:
        parts.append(TOOLS_BLOCK)
    body = ["{{- range $i, $_ := .Messages }}",
            f'{{{{- if eq .Role "user" }}}}{start}user\n{{{{ .Content }}}}{end}',
            f'{{{{ else if eq .Role "assistant" }}}}{start}assistant']
    if spec["thinking"]:
        body.append(THINKING_BLOCK)
    body.append("\n{{ .Content }}")
    if spec["tools"]:
        body.append("{{- range .ToolCalls }}\n<tool_call>{{ .Function.Name }} {{ .Function.Arguments }}</tool_call>"
                    "{{- end }}")
        body.append(f'{end}\n{{{{ else if eq .Role "tool" }}}}{start}tool\n{{{{ .Content }}}}{end}')
    else:
        body.append(end)
    body.append("\n{{ end }}\n{{- end }}" + f"{start}assistant\n")
    return "\n".join(parts) + "\n" + "".join(body)


@dataclass
class SyntheticModel:
    tag: str  # e.g. qwen3-coder:30b
    aliases: list[str]
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest → bytes
    manifest: bytes = b""
    config_digest: str = ""
    layers: list[dict] = field(default_factory=list)

    @property
    def repository(self) -> str:
        return "library/" + self.tag.split(":")[0]

    @property
    def reference(self) -> str:
        return self.tag.split(":")[1]

    @property
    def manifest_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    @property
    def id(self) -> str:
        return hashlib.sha256(self.manifest).hexdigest()[:12]

    def references(self) -> list[str]:
        """Every tag this model is published under (the tag itself first)."""
        return [self.reference] + [a.split(":")[1] for a in self.aliases]


def _digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _filler(seed: str, n: int) -> bytes:
    return hashlib.shake_256(("localcode-synthetic:" + seed).encode()).digest(n) if n > 0 else b""


def blob_size(spec: dict) -> int:
    """1–4 MiB, growing with the real download size (download_gb / 5 MiB)."""
    mib = min(4.0, max(1.0, round(spec["download_gb"] / 5, 1)))
    return int(mib * MIB)


def _kv_heads(spec: dict):
    kv = spec["kv_heads"]
    n = spec["layers"]
    if isinstance(kv, int):
        return kv, None
    if kv.startswith("pattern:"):  # sliding/global heads, one global layer every full_every
        sliding, full = (int(x) for x in kv[len("pattern:"):].split("/"))
        every = spec["full_every"]
        per_layer = [full if (i + 1) % every == 0 else sliding for i in range(n)]
        pattern = [(i + 1) % every != 0 for i in range(n)]
        return per_layer, pattern
    if kv.startswith("attn:"):  # hybrid: heads on a few attention layers, 0 on SSM layers
        heads, count = kv[len("attn:"):].split("@")
        step = n // int(count)
        per_layer = [int(heads) if i % step == step - 1 and i // step < int(count) else 0 for i in range(n)]
        return per_layer, None
    raise ValueError(kv)


def gguf_bytes(spec: dict) -> bytes:
    arch = spec["arch"]
    params = int(round(spec["params_b"] * 1e9))
    ttype = QUANT_TENSOR_TYPE.get(spec["quant"], 12)
    block = gguf.TENSOR_TYPES[ttype][1]
    name = spec["tag"]
    size_label = f"{spec['params_b']:g}B".replace(".0B", "B")
    kv_heads, pattern = _kv_heads(spec)
    kvs: list[tuple] = [
        ("general.architecture", T_STRING, arch, None),
        ("general.type", T_STRING, "model", None),
        ("general.name", T_STRING, f"{name} (synthetic)", None),
        ("general.size_label", T_STRING, size_label, None),
        ("general.parameter_count", T_UINT64, params, None),
        ("general.file_type", T_UINT32, gguf.FILE_TYPE_BY_NAME.get(spec["quant"], 15), None),
        ("general.quantization_version", T_UINT32, 2, None),
        (f"{arch}.context_length", T_UINT32, spec["context"], None),
        (f"{arch}.block_count", T_UINT32, spec["layers"], None),
        (f"{arch}.embedding_length", T_UINT32, spec["embedding"], None),
        (f"{arch}.feed_forward_length", T_UINT32, spec["embedding"] * 4, None),
        (f"{arch}.attention.head_count", T_UINT32, spec["heads"], None),
    ]
    if isinstance(kv_heads, list):
        kvs.append((f"{arch}.attention.head_count_kv", T_ARRAY, kv_heads, T_UINT32))
    else:
        kvs.append((f"{arch}.attention.head_count_kv", T_UINT32, kv_heads, None))
    kvs += [(f"{arch}.attention.key_length", T_UINT32, spec["key_len"], None),
            (f"{arch}.attention.value_length", T_UINT32, spec["value_len"], None)]
    if spec.get("swa_len"):
        kvs += [(f"{arch}.attention.key_length_swa", T_UINT32, spec["swa_len"], None),
                (f"{arch}.attention.value_length_swa", T_UINT32, spec["swa_len"], None)]
    if spec.get("window"):
        kvs.append((f"{arch}.attention.sliding_window", T_UINT32, spec["window"], None))
    if pattern is not None:
        kvs.append((f"{arch}.attention.sliding_window_pattern", T_ARRAY, pattern, T_BOOL))
    if spec.get("shared_kv"):
        kvs.append((f"{arch}.attention.shared_kv_layers", T_UINT32, spec["shared_kv"], None))
    if spec.get("kv_lora_rank"):
        kvs.append((f"{arch}.attention.kv_lora_rank", T_UINT32, spec["kv_lora_rank"], None))
    if spec.get("experts"):
        kvs += [(f"{arch}.expert_count", T_UINT32, spec["experts"][0], None),
                (f"{arch}.expert_used_count", T_UINT32, spec["experts"][1], None)]
    kvs.append((f"{arch}.rope.freq_base", T_FLOAT32, 1000000.0, None))
    if spec["vision"]:
        kvs += [(f"{arch}.vision.block_count", T_UINT32, 24, None),
                (f"{arch}.vision.embedding_length", T_UINT32, 1024, None)]
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "hello", "world", "!"]
    kvs += [("tokenizer.ggml.model", T_STRING, "gpt2", None),
            ("tokenizer.ggml.tokens", T_ARRAY, tokens, T_STRING),
            ("tokenizer.ggml.bos_token_id", T_UINT32, 1, None),
            ("tokenizer.ggml.eos_token_id", T_UINT32, 2, None)]
    # tensor infos: the element counts add up to the real parameter count
    emb = spec["embedding"]
    vocab_params = (emb * 151936) // block * block
    rest = params - vocab_params
    if rest <= 0 or rest % block:
        vocab_params, rest = 0, params
    tensors = []
    offset = 0
    if vocab_params:
        t = Tensor("token_embd.weight", ttype, offset, [emb, vocab_params // emb] if vocab_params % emb == 0
                   else [block, vocab_params // block])
        tensors.append(t)
        offset += (t.size() + 31) // 32 * 32
    tensors.append(Tensor("blk.0.ffn_down.weight", ttype, offset, [block, rest // block]))
    header = write_gguf_header(kvs, tensors)
    size = max(blob_size(spec), len(header) + 4096)
    return header + _filler(name + ":model", size - len(header))


def build_model(spec: dict) -> SyntheticModel:
    style = spec["family_style"]
    model_blob = gguf_bytes(spec)
    template = template_for(spec).encode()
    license_blob = LICENSES[style].encode()
    params = go_encoder(PARAMS[style], sort_keys=True)
    layer_list = [(MT + "model", model_blob), (MT + "template", template), (MT + "license", license_blob),
                  (MT + "params", params)]
    m = SyntheticModel(tag=spec["tag"], aliases=[a for a in spec["aliases"] if _valid_alias(a, spec["tag"])])
    layers = []
    for mt, data in layer_list:
        d = _digest(data)
        m.blobs[d] = data
        layers.append({"mediaType": mt, "digest": d, "size": len(data)})
    g = gguf.read_gguf_stream(__import__("io").BytesIO(model_blob))
    from ollama_standin.goformat import human_number

    config = {
        "model_format": "gguf", "model_family": spec["arch"], "model_families": [spec["arch"]],
        "model_type": human_number(g.parameter_count()), "file_type": g.file_type(),
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
    }
    config_bytes = go_encoder(config)
    cd = _digest(config_bytes)
    m.blobs[cd] = config_bytes
    m.config_digest = cd
    m.layers = layers
    # the compact json.Marshal form (no trailing newline), as registry.ollama.ai serves and Ollama writes
    m.manifest = go_json({
        "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": cd, "size": len(config_bytes)},
        "layers": layers,
    }).encode()
    return m


def _valid_alias(alias: str, tag: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*", alias)) and \
        alias.split(":")[0] == tag.split(":")[0]


def model_tags() -> list[str]:
    return [s["tag"] for s in SPECS]


def spec_for(tag: str) -> dict:
    for s in SPECS:
        if s["tag"] == tag or tag in s["aliases"]:
            return s
    raise KeyError(f"no synthetic model {tag!r} (known: {', '.join(model_tags())})")


def build_all(models: list[str] | None = None) -> list[SyntheticModel]:
    tags = model_tags() if models is None else list(models)
    seen, out = set(), []
    for t in tags:
        s = spec_for(t)
        if s["tag"] in seen:
            continue
        seen.add(s["tag"])
        out.append(build_model(s))
    return out


def write_store(models_dir, models: list[SyntheticModel], with_aliases: bool = False) -> None:
    """Sideload models into an OLLAMA_MODELS tree (blobs first, then manifests; 0644 / 0755)."""
    root = Path(models_dir)
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True, mode=0o755)
    for m in models:
        for d, data in m.blobs.items():
            p = blobs / d.replace(":", "-")
            if not p.exists():
                tmp = p.with_name(p.name + ".tmp")
                tmp.write_bytes(data)
                os.chmod(tmp, 0o644)
                os.replace(tmp, p)
    for m in models:
        refs = m.references() if with_aliases else [m.reference]
        for ref in refs:
            p = root / "manifests" / "registry.ollama.ai" / "library" / m.tag.split(":")[0] / ref
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            p.write_bytes(m.manifest)
            os.chmod(p, 0o644)
    for d, _, _ in os.walk(root):
        os.chmod(d, 0o755)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="synthetic Ollama models")
    ap.add_argument("models", nargs="*", help="model tags (default: all)")
    ap.add_argument("--store", help="write an OLLAMA_MODELS tree here")
    ap.add_argument("--aliases", action="store_true", help="also write the alias tags")
    ap.add_argument("--list", action="store_true", help="print tag, id, size of each model")
    a = ap.parse_args(argv)
    models = build_all(a.models or None)
    if a.store:
        write_store(a.store, models, a.aliases)
    if a.list or not a.store:
        for m in models:
            print(f"{m.tag}\t{m.id}\t{sum(len(b) for b in m.blobs.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
