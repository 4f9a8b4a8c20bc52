"""GGUF (v1–v3) metadata reader and a small writer, following ollama/fs/ggml/gguf.go.

Only the header is read: key/values and tensor infos. Like the real decoder, the tensor data is
never read and `general.parameter_count` is replaced by the sum of the tensors' element counts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .goformat import F32

MAGIC = b"GGUF"

T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, \
    T_UINT64, T_INT64, T_FLOAT64 = range(13)

_SCALAR = {
    T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h", T_UINT32: "<I", T_INT32: "<i",
    T_FLOAT32: "<f", T_UINT64: "<Q", T_INT64: "<q", T_FLOAT64: "<d",
}

# ggml tensor types: name, block size, bytes per block
TENSOR_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 30: ("BF16", 1, 2), 39: ("MXFP4", 32, 17),
}

# Ollama's FileType numbering (fs/ggml/type.go) → String()
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "MXFP4", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
    18: "Q6_K", 21: "Q2_K_S", 32: "BF16",
}
FILE_TYPE_BY_NAME = {v: k for k, v in FILE_TYPES.items()}


def file_type_string(v: Any) -> str:
    try:
        return FILE_TYPES.get(int(v), "unknown")
    except (TypeError, ValueError):
        return "unknown"


@dataclass
class Tensor:
    name: str
    kind: int
    offset: int
    shape: list[int]

    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def type_name(self) -> str:
        return TENSOR_TYPES.get(self.kind, (f"type({self.kind})", 1, 1))[0]

    def size(self) -> int:
        _, block, nbytes = TENSOR_TYPES.get(self.kind, ("?", 1, 4))
        return self.elements() * nbytes // block


@dataclass
class GGUFFile:
    version: int
    kv: dict[str, Any] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)
    tensors: list[Tensor] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        v = self.kv.get("general.architecture")
        return v if isinstance(v, str) else "unknown"

    def key(self, k: str) -> Any:
        """gguf.File.KeyValue: keys other than general.*/tokenizer.* get the arch prefix."""
        if not k.startswith(("general.", "tokenizer.")):
            k = self.architecture + "." + k
        return self.kv.get(k)

    def has(self, k: str) -> bool:
        if not k.startswith(("general.", "tokenizer.")):
            k = self.architecture + "." + k
        return k in self.kv

    def parameter_count(self) -> int:
        return int(self.kv.get("general.parameter_count", 0) or 0)

    def file_type(self) -> str:
        """KV.FileType().String(): general.file_type when > 0, else unknown."""
        v = self.kv.get("general.file_type")
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return file_type_string(v)
        return "unknown"

    def tensor_bytes(self) -> int:
        return sum(t.size() for t in self.tensors)


class _Reader:
    def __init__(self, f: BinaryIO):
        self.f = f

    def read(self, n: int) -> bytes:
        b = self.f.read(n)
        if len(b) != n:
            raise EOFError("unexpected EOF in GGUF header")
        return b

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self, version: int) -> str:
        n = self.unpack("<I" if version == 1 else "<Q")
        return self.read(n).decode("utf-8", "replace")

    def value(self, t: int, version: int, max_array: int):
        if t in _SCALAR:
            v = self.unpack(_SCALAR[t])
            return F32(v) if t == T_FLOAT32 else v
        if t == T_BOOL:
            return self.read(1) != b"\x00"
        if t == T_STRING:
            return self.string(version)
        if t == T_ARRAY:
            et = self.unpack("<I")
            n = self.unpack("<I" if version == 1 else "<Q")
            items = [self.value(et, version, max_array) for _ in range(n)]
            return items
        raise ValueError(f"invalid type: {t}")


def read_gguf(path: str, max_array: int = -1) -> GGUFFile:
    with open(path, "rb") as f:
        return read_gguf_stream(f, max_array)


def is_gguf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def read_gguf_stream(f: BinaryIO, max_array: int = -1) -> GGUFFile:
    r = _Reader(f)
    magic = r.read(4)
    if magic != MAGIC:
        raise ValueError("invalid file magic")
    version = r.unpack("<I")
    if version == 1:
        n_tensors, n_kv = r.unpack("<I"), r.unpack("<I")
    else:
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    g = GGUFFile(version=version)
    for _ in range(n_kv):
        k = r.string(version)
        t = r.unpack("<I")
        g.kv[k] = r.value(t, version, max_array)
        g.types[k] = t
    params = 0
    for _ in range(n_tensors):
        name = r.string(version)
        dims = r.unpack("<I")
        shape = [r.unpack("<Q") for _ in range(dims)]
        kind = r.unpack("<I")
        offset = r.unpack("<Q")
        t = Tensor(name, kind, offset, shape)
        g.tensors.append(t)
        params += t.elements()
    g.kv["general.parameter_count"] = params
    g.types["general.parameter_count"] = T_UINT64
    return g


# --------------------------------------------------------------------------- writer


def _w_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _w_value(t: int, v) -> bytes:
    if t in _SCALAR:
        return struct.pack(_SCALAR[t], v)
    if t == T_BOOL:
        return b"\x01" if v else b"\x00"
    if t == T_STRING:
        return _w_string(v)
    raise ValueError(t)


def encode_kv(key: str, t: int, value, elem_type: int | None = None) -> bytes:
    out = _w_string(key) + struct.pack("<I", t)
    if t == T_ARRAY:
        assert elem_type is not None
        out += struct.pack("<IQ", elem_type, len(value))
        out += b"".join(_w_value(elem_type, x) for x in value)
    else:
        out += _w_value(t, value)
    return out


def write_gguf_header(kvs: list[tuple[str, int, Any, int | None]], tensors: list[Tensor],
                      alignment: int = 32) -> bytes:
    """GGUF v3 header (magic, counts, key/values, tensor infos) padded to the alignment."""
    out = bytearray(MAGIC)
    out += struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, t, value, et in kvs:
        out += encode_kv(key, t, value, et)
    for tensor in tensors:
        out += _w_string(tensor.name)
        out += struct.pack("<I", len(tensor.shape))
        for d in tensor.shape:
            out += struct.pack("<Q", d)
        out += struct.pack("<IQ", tensor.kind, tensor.offset)
    pad = (-len(out)) % alignment
    out += b"\x00" * pad
    return bytes(out)
