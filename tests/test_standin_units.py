"""Unit conformance of the stand-in's Go-compatible pieces (no processes)."""

from __future__ import annotations

import io

import pytest

try:
    from tests import test_standin_harness  # noqa: F401  (puts lab/standin on sys.path)
except ImportError:  # tests/ not a package
    import test_standin_harness  # noqa: F401
from ollama_standin import envconfig, gguf, gotemplate
from ollama_standin.goformat import (F32, GoMap, go_fmt_float, go_json, go_sharp_v, human_bytes, human_number,
                                     parse_go_duration)
from ollama_standin.modelfile import ParserError, create_request, modelfile_string, parse, quote
from ollama_standin.names import Name
import synthetic_models


@pytest.mark.parametrize("value,expected", [
    ("", "http://127.0.0.1:11434"),
    ("0.0.0.0", "http://0.0.0.0:11434"),
    (":11434", "http://:11434"),
    (":9000", "http://:9000"),
    ("example.com", "http://example.com:11434"),
    ("10.0.0.5:1234", "http://10.0.0.5:1234"),
    ("http://10.0.0.5:1234", "http://10.0.0.5:1234"),
    ("http://10.0.0.5", "http://10.0.0.5:80"),
    ("https://example.com", "https://example.com:443"),
    ("[::1]:11434", "http://[::1]:11434"),
    ("::1", "http://[::1]:11434"),
    ('"127.0.0.1:5"', "http://127.0.0.1:5"),
    ("127.0.0.1:99999", "http://127.0.0.1:11434"),
])
def test_ollama_host_parsing_matches_envconfig(monkeypatch, value, expected):
    monkeypatch.setenv("OLLAMA_HOST", value)
    h = envconfig.host()
    assert f"{h.scheme}://{h.host}" == expected


def test_client_connects_to_loopback_for_unspecified_hosts(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0")
    assert envconfig.host().base() == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", ":8080")
    assert envconfig.host().base() == "http://127.0.0.1:8080"


def test_models_dir_and_keep_alive_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert envconfig.models_dir() == str(tmp_path / ".ollama" / "models")
    monkeypatch.delenv("OLLAMA_KEEP_ALIVE", raising=False)
    assert envconfig.keep_alive_ns() == 5 * 60 * 10**9
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", "90")
    assert envconfig.keep_alive_ns() == 90 * 10**9
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", "-1")
    assert envconfig.keep_alive_ns() == 2**63 - 1
    monkeypatch.setenv("OLLAMA_NOPRUNE", "yes-please")  # unparsable but set → true, like envconfig.Bool
    assert envconfig.no_prune()
    monkeypatch.setenv("OLLAMA_NOPRUNE", "false")
    assert not envconfig.no_prune()


@pytest.mark.parametrize("raw,full,short", [
    ("qwen3-coder:30b", "registry.ollama.ai/library/qwen3-coder:30b", "qwen3-coder:30b"),
    ("gpt-oss", "registry.ollama.ai/library/gpt-oss:latest", "gpt-oss:latest"),
    ("user/model:tag", "registry.ollama.ai/user/model:tag", "user/model:tag"),
    ("myhost:5000/ns/m:t", "myhost:5000/ns/m:t", "myhost:5000/ns/m:t"),
])
def test_model_names(raw, full, short):
    n = Name.parse(raw)
    assert n.is_valid()
    assert str(n) == full and n.display_shortest() == short
    assert n.filepath().count("/") == 3


def test_invalid_model_names():
    for raw in ("", "a/b/c/d/e:f", "bad name", ":tag", "ns.with.dot/m"):
        assert not Name.parse(raw).is_valid(), raw


def test_go_number_formatting():
    assert go_json({"n": 65536.0, "f": 0.7, "big": 1e21, "tiny": 1e-7}) == '{"n":65536,"f":0.7,"big":1e+21,"tiny":1e-7}'
    assert go_json(F32(1000000.0)) == "1000000"
    assert go_json({"s": "<|im_end|>&"}) == '{"s":"\\u003c|im_end|\\u003e\\u0026"}'
    assert go_json(GoMap(b=1, a=2)) == '{"a":2,"b":1}'
    # fmt %v of float64: shortest digits, %e from exponent 6 on (so 1048576 → 1.048576e+06)
    assert [go_fmt_float(x) for x in (65536.0, 262144.0, 1048576.0, 0.7, 1.0)] == \
        ["65536", "262144", "1.048576e+06", "0.7", "1"]
    assert go_sharp_v("<|im_end|>") == '"<|im_end|>"'
    assert go_sharp_v(65536.0) == "65536"


def test_human_formats():
    assert human_bytes(18_600_000_000) == "18 GB"
    assert human_bytes(4_700_000_000) == "4.7 GB"
    assert human_bytes(3_000_000) == "3 MB"
    assert human_bytes(999) == "999 B"
    assert human_number(30_500_000_000) == "30.5B"
    assert human_number(24_000_000_000) == "24B"
    assert human_number(494_030_000) == "494.03M"
    assert parse_go_duration("1h30m") == 5400 * 10**9
    with pytest.raises(ValueError, match="missing unit"):
        parse_go_duration("10")


MODELFILE = '''# a comment
FROM qwen3-coder:30b
PARAMETER num_ctx 65536
PARAMETER stop "<|im_end|>"
PARAMETER stop <|endoftext|>
PARAMETER temperature 0.2
TEMPLATE """{{ .System }} "quoted"
{{ .Prompt }}"""
SYSTEM "You are
terse."
LICENSE MIT
'''


def test_modelfile_parser_values_and_quotes():
    cmds = parse(MODELFILE)
    assert [(c.name, c.args) for c in cmds] == [
        ("model", "qwen3-coder:30b"), ("num_ctx", "65536"), ("stop", "<|im_end|>"), ("stop", "<|endoftext|>"),
        ("temperature", "0.2"), ("template", '{{ .System }} "quoted"\n{{ .Prompt }}'),
        ("system", "You are\nterse."), ("license", "MIT")]
    req = create_request(cmds, "/nonexistent")
    assert req == {"from": "qwen3-coder:30b", "template": '{{ .System }} "quoted"\n{{ .Prompt }}',
                   "system": "You are\nterse.", "license": ["MIT"],
                   "parameters": {"num_ctx": 65536, "stop": ["<|im_end|>", "<|endoftext|>"], "temperature": 0.2}}
    assert isinstance(req["parameters"]["num_ctx"], int)
    # printing quotes multi-line values: triple quotes only when the value holds a double quote
    text = modelfile_string([(c.name, c.args) for c in cmds])
    assert 'TEMPLATE """{{ .System }} "quoted"\n{{ .Prompt }}"""\n' in text
    assert 'SYSTEM "You are\nterse."\n' in text
    assert quote(" x") == '" x"' and quote("plain") == "plain"


@pytest.mark.parametrize("text,error", [
    ("PARAMETER num_ctx 1", "no FROM line"),
    ("FROM x\nBOGUS y", '(line 2): command must be one of "from", "license", "template", "system", "adapter", '
                        '"renderer", "parser", "parameter", "message", or "requires"'),
    ('FROM x\nSYSTEM """never closed', "unexpected EOF"),
    ("FROM x\nMESSAGE robot hi", '(line 2): message role must be one of "system", "user", or "assistant"'),
])
def test_modelfile_parser_errors(text, error):
    with pytest.raises(ParserError) as e:
        parse(text)
    assert str(e.value).startswith(error)


def test_modelfile_parameter_types():
    with pytest.raises(ParserError, match="unknown parameter 'bogus'"):
        create_request(parse("FROM x\nPARAMETER bogus 1"), "/")
    with pytest.raises(ParserError, match=r"invalid int value \[lots\]"):
        create_request(parse("FROM x\nPARAMETER num_ctx lots"), "/")


def test_template_capability_analysis():
    tools = "{{ if .Tools }}{{ range .Tools }}{{ . }}{{ end }}{{ end }}{{ .Prompt }}"
    assert "tools" in gotemplate.vars_of(tools)
    assert "tools" not in gotemplate.vars_of("{{ .Prompt }}")
    think = ('{{- range $i, $_ := .Messages }}{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}'
             '{{ .Content }}{{ end }}')
    assert gotemplate.infer_thinking_tags(think) == ("<think>", "</think>")
    # .Thinking outside a range over .Messages is not a thinking template (thinking.InferTags)
    assert gotemplate.infer_thinking_tags("{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}") == ("", "")


def test_synthetic_models_are_deterministic_gguf():
    a = synthetic_models.build_all(["qwen3-coder:30b", "gpt-oss:20b"])
    b = synthetic_models.build_all(["qwen3-coder:30b", "gpt-oss:20b"])
    assert [m.manifest for m in a] == [m.manifest for m in b]
    assert [m.blobs for m in a] == [m.blobs for m in b]
    for m in a:
        model_layer = m.layers[0]
        assert model_layer["mediaType"] == "application/vnd.ollama.image.model"
        data = m.blobs[model_layer["digest"]]
        assert 1 << 20 <= len(data) <= 4 << 20
        g = gguf.read_gguf_stream(io.BytesIO(data))
        assert g.version == 3
        spec = synthetic_models.spec_for(m.tag)
        arch = spec["arch"]
        assert g.kv["general.architecture"] == arch
        assert g.kv[f"{arch}.context_length"] == spec["context"]
        assert g.kv[f"{arch}.block_count"] == spec["layers"]
        assert g.parameter_count() == round(spec["params_b"] * 1e9)
        assert g.kv[f"{arch}.attention.key_length"] == spec["key_len"]
        assert not data[:4] != b"GGUF"
    q, o = a
    assert q.tag == "qwen3-coder:30b" and q.repository == "library/qwen3-coder" and q.reference == "30b"
    assert o.repository == "library/gpt-oss" and o.references() == ["20b", "latest"]
    assert b'"rootfs":{"type":"layers","diff_ids":[' in q.blobs[q.config_digest]


def test_synthetic_models_match_the_catalog():
    """Every model the product's catalog knows exists as a synthetic model with the same trained
    context and capabilities, so the lab serves what the sizing plans for."""
    from localcode.catalog import effective_catalog

    for entry in effective_catalog((), ()).models:
        spec = synthetic_models.spec_for(entry.tag)
        assert spec["context"] == entry.max_context, entry.tag
        assert (spec["tools"], spec["vision"]) == ("tools" in entry.capabilities, "vision" in entry.capabilities), \
            entry.tag


def test_tool_input_fills_required_and_explicit_assignments():
    from ollama_standin.anthropic import tool_input

    tool = {"name": "Agent", "input_schema": {"type": "object", "required": ["description", "prompt"],
            "properties": {"description": {"type": "string"}, "prompt": {"type": "string"},
                           "subagent_type": {"type": "string"}}}}
    assert tool_input(tool, "use the Agent tool with `look around` and `subagent_type=quick` `colour=red`") == {
        "description": "look around", "prompt": "look around", "subagent_type": "quick"}
