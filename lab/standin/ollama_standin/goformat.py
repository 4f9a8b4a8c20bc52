"""Go-compatible formatting: encoding/json output, fmt's %v/%#v for floats, time and size texts.

The stand-in must produce the same bytes the real (Go) Ollama writes where bytes matter
(config/params/manifest blobs, digests) and the same texts where tools parse them.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import struct
import time

# --------------------------------------------------------------------------- JSON


class F32(float):
    """A float that Go holds as float32 (GGUF metadata): formatted with float32 precision."""


class RawJSON(str):
    """Already-encoded JSON inserted verbatim (json.RawMessage)."""


def _shortest_f32(x: float) -> str:
    target = struct.pack("<f", x)
    for p in range(1, 10):
        s = "%.*g" % (p, x)
        if struct.pack("<f", float(s)) == target:
            return s
    return repr(x)


def _digits_exp(s: str) -> tuple[str, int, bool]:
    """A shortest repr like '1.5e-07' / '262144.0' → (digits, decimal exponent dp, negative)."""
    neg = s.startswith("-")
    s = s.lstrip("-")
    if "e" in s or "E" in s:
        mant, exp = s.lower().split("e")
        exp = int(exp)
    else:
        mant, exp = s, 0
    if "." in mant:
        ip, fp = mant.split(".")
    else:
        ip, fp = mant, ""
    digits = (ip + fp).lstrip("0")
    lead_zeros = len(ip + fp) - len((ip + fp).lstrip("0"))
    dp = len(ip) + exp - lead_zeros
    digits = digits.rstrip("0") or "0"
    if digits == "0":
        dp = 1
    return digits, dp, neg


def _fmt_e(digits: str, dp: int, neg: bool, min_exp_digits: int = 2) -> str:
    exp = dp - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    e = str(abs(exp)).rjust(min_exp_digits, "0")
    return ("-" if neg else "") + mant + "e" + sign + e


def _fmt_f(digits: str, dp: int, neg: bool) -> str:
    if dp <= 0:
        s = "0." + "0" * (-dp) + digits
    elif dp >= len(digits):
        s = digits + "0" * (dp - len(digits))
    else:
        s = digits[:dp] + "." + digits[dp:]
    return ("-" if neg else "") + s


def _shortest(x: float) -> str:
    return _shortest_f32(x) if isinstance(x, F32) else repr(float(x))


def go_json_float(x: float) -> str:
    """encoding/json's float formatting ('f' unless |x| < 1e-6 or >= 1e21; e-07 → e-7)."""
    if math.isnan(x) or math.isinf(x):
        raise ValueError("json: unsupported value")
    if x == 0:
        return "0" if math.copysign(1, x) > 0 else "-0"
    digits, dp, neg = _digits_exp(_shortest(x))
    a = abs(float(x))
    if a < 1e-6 or a >= 1e21:
        s = _fmt_e(digits, dp, neg)
        m = re.search(r"e-0(\d)$", s)
        if m:
            s = s[: m.start()] + "e-" + m.group(1)
        return s
    return _fmt_f(digits, dp, neg)


def go_fmt_float(x: float) -> str:
    """fmt's %v / %#v for a float64: strconv 'g' with shortest digits (%e when exp < -4 or >= 6)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0" if math.copysign(1, x) > 0 else "-0"
    digits, dp, neg = _digits_exp(_shortest(x))
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return _fmt_e(digits, dp, neg)
    return _fmt_f(digits, dp, neg)


# Escapes Go's JSON encoder and strconv.Quote share; each adds its own below.
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JSON_ESCAPES = {**_ESCAPES, "\b": "\\b", "\f": "\\f"}


def _go_str(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[ch])
        elif o < 0x20 or ch in "<>&" or o in (0x2028, 0x2029):
            out.append("\\u%04x" % o)
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_json(obj, sort_keys: bool = False) -> str:
    """json.Marshal: compact, HTML-escaped. dict order is kept (Go structs) unless sort_keys (Go maps)."""
    parts: list[str] = []
    _enc(obj, parts, sort_keys)
    return "".join(parts)


def _enc(obj, out: list[str], sort_keys: bool) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, RawJSON):
        out.append(str(obj))
    elif isinstance(obj, str):
        out.append(_go_str(obj))
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, float):
        out.append(go_json_float(obj))
    elif isinstance(obj, GoMap):
        _enc_dict(obj, out, True)
    elif isinstance(obj, dict):
        _enc_dict(obj, out, sort_keys)
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, v in enumerate(obj):
            if i:
                out.append(",")
            _enc(v, out, sort_keys)
        out.append("]")
    elif isinstance(obj, (bytes, bytearray)):
        import base64

        out.append(_go_str(base64.b64encode(bytes(obj)).decode()))
    else:
        raise TypeError(f"cannot encode {type(obj).__name__}")


def _enc_dict(d: dict, out: list[str], sort_keys: bool) -> None:
    out.append("{")
    keys = sorted(d) if sort_keys else list(d)
    for i, k in enumerate(keys):
        if i:
            out.append(",")
        out.append(_go_str(str(k)))
        out.append(":")
        _enc(d[k], out, sort_keys if not isinstance(d[k], GoMap) else True)
    out.append("}")


class GoMap(dict):
    """A Go map: encoded with sorted keys, whatever the insertion order."""


def json_to_go(v):
    """Values decoded by Python's json → the shapes Go's json.Unmarshal into `any` gives.

    Numbers become float64 in Go: integral ones still print without a decimal point, so
    ints can stay ints for encoding, but %v formatting must treat them as floats.
    """
    if isinstance(v, dict):
        return GoMap({k: json_to_go(x) for k, x in v.items()})
    if isinstance(v, list):
        return [json_to_go(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v


def go_encoder(obj, sort_keys: bool = False) -> bytes:
    """json.NewEncoder(w).Encode(obj): Marshal + newline."""
    return (go_json(obj, sort_keys) + "\n").encode()


# --------------------------------------------------------------------------- fmt %v / %#v


def go_v(v) -> str:
    """fmt's %v for values decoded from JSON into `any`."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_fmt_float(v)
    if isinstance(v, int):
        return go_fmt_float(float(v))
    if isinstance(v, str):
        return v
    if v is None:
        return "<nil>"
    if isinstance(v, list):
        return "[" + " ".join(go_v(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_v(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def go_sharp_v(v) -> str:
    """fmt's %#v for values decoded from JSON into `any` (strings Go-quoted)."""
    if isinstance(v, str):
        return go_quote(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return go_fmt_float(float(v))
    if v is None:
        return "<nil>"
    if isinstance(v, list):
        return "[]interface {}{" + ", ".join(go_sharp_v(x) for x in v) + "}"
    if isinstance(v, dict):
        return "map[string]interface {}{" + ", ".join(f"{go_quote(k)}:{go_sharp_v(v[k])}" for k in sorted(v)) + "}"
    return str(v)


def go_quote(s: str) -> str:
    """strconv.Quote."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02x" % o)
        elif not ch.isprintable() and o > 0x7F:
            out.append("\\u%04x" % o if o <= 0xFFFF else "\\U%08x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# --------------------------------------------------------------------------- time


def go_time_json(ns: int | None = None, utc: bool = False) -> str:
    """time.Time's JSON form (RFC3339Nano, local zone unless utc)."""
    if ns is None:
        ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    tz = _dt.timezone.utc if utc else None
    try:
        dt = _dt.datetime.fromtimestamp(secs, tz=tz).astimezone(_dt.timezone.utc if utc else None)
    except (OverflowError, OSError, ValueError):
        dt = _dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=_dt.timezone.utc)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    f = ""
    if frac:
        f = ("." + str(frac).rjust(9, "0")).rstrip("0")
    off = dt.utcoffset() or _dt.timedelta(0)
    if off == _dt.timedelta(0):
        zone = "Z"
    else:
        total = int(off.total_seconds())
        sign = "+" if total >= 0 else "-"
        total = abs(total)
        zone = "%s%02d:%02d" % (sign, total // 3600, (total % 3600) // 60)
    return base + f + zone


def human_duration(seconds_f: float) -> str:
    seconds = int(seconds_f)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = int(seconds_f / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(_go_round(seconds_f / 3600))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds_f / 3600) // 24 // 365} years"


def _go_round(x: float) -> float:
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def human_time(ts: float | None, zero: str, now: float | None = None) -> str:
    """format.HumanTime."""
    if ts is None:
        return zero
    now = time.time() if now is None else now
    delta = now - ts
    if int(delta / 3600) // 24 // 365 < -20:
        return "Forever"
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


KB, MB, GB, TB = 1000, 1000**2, 1000**3, 1000**4


def human_bytes(b: int) -> str:
    """format.HumanBytes (decimal units)."""
    if b >= TB:
        value, unit = b / TB, "TB"
    elif b >= GB:
        value, unit = b / GB, "GB"
    elif b >= MB:
        value, unit = b / MB, "MB"
    elif b >= KB:
        value, unit = b / KB, "KB"
    else:
        return f"{b} B"
    if value >= 10:
        return f"{int(value)} {unit}"
    if value != math.trunc(value):
        return f"{value:.1f} {unit}"
    return f"{int(value)} {unit}"


def human_number(b: int) -> str:
    """format.HumanNumber (parameter sizes: 30.5B, 494.03M, 8K)."""
    if b >= 1_000_000_000:
        n = b / 1_000_000_000
        return f"{n:.0f}B" if n == math.floor(n) else f"{n:.1f}B"
    if b >= 1_000_000:
        n = b / 1_000_000
        return f"{n:.0f}M" if n == math.floor(n) else f"{n:.2f}M"
    if b >= 1000:
        return f"{b / 1000:.0f}K"
    return str(b)


# --------------------------------------------------------------------------- durations


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}
MAX_DURATION_NS = 2**63 - 1


def parse_go_duration(s: str) -> int:
    """time.ParseDuration → nanoseconds (ValueError with Go's message on bad input)."""
    orig = s
    if s == "":
        raise ValueError(f'time: invalid duration "{orig}"')
    neg = False
    if s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0.0
    while s:
        i = 0
        while i < len(s) and (s[i].isdigit() or s[i] == "."):
            i += 1
        num = s[:i]
        if not num or num == "." or num.count(".") > 1:
            raise ValueError(f'time: invalid duration "{orig}"')
        s = s[i:]
        j = 0
        while j < len(s) and not (s[j].isdigit() or s[j] == "."):
            j += 1
        unit = s[:j]
        s = s[j:]
        if unit == "":
            raise ValueError(f'time: missing unit in duration "{orig}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        total += float(num) * _UNITS[unit]
    if total > MAX_DURATION_NS:
        raise ValueError(f'time: invalid duration "{orig}"')
    return -int(total) if neg else int(total)
