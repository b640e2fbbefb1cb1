"""What travels on a socket: a msgpack header, then raw array buffers. Never pickle.

A data message is multipart: [header, buffer, buffer, ...]. The header names the link,
stream, sequence number, capture time, flags and, per array, its dtype and shape and
either "the next buffer" (inline bytes) or a shared-memory slot reference. Everything a
peer sends is checked here before the engine trusts it: a malformed or lying message
raises WireError and is counted and dropped by the caller, never crashes a node.
"""
from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

KIND_DATA = "d"       # a packet for (stream, seq)
KIND_EOS = "e"        # end of a stream from one producer instance
KIND_ANNOUNCE = "a"   # a producer instance (re)started: consumers answer with hello

FLAG_EMPTY = 1        # the producer had nothing for this seq (e.g. no person found)
FLAG_DROPPED = 2      # the seq was dropped upstream (a `latest` queue overflowed)

BACK_HELLO = "h"      # consumer -> producer: I am ready (again); resend what I have not released
BACK_ACK = "b"        # consumer -> producer: consumed and/or released (stream, seq) on a link
ACK_CONSUMED = 1      # processed: frees a queue credit
ACK_RELEASED = 2      # its results were released downstream: frees the slots

ALLOWED_DTYPES = {np.dtype(t).str for t in ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8", "?")}
MAX_ARRAYS = 32
MAX_NDIM = 8
MAX_ARRAY_BYTES = 1 << 31
MAX_HEADER_BYTES = 1 << 20


class WireError(ValueError):
    """A message that does not follow the protocol."""


def _default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot send a {type(obj).__name__} in a packet; use arrays, numbers, strings, lists or dicts")


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def split_value(value: Any) -> tuple[bool, list[tuple[str, np.ndarray]], Any]:
    """A port value -> (bare, [(name, array)], meta). A bare value is one array."""
    if value is None:
        return False, [], None
    if isinstance(value, np.ndarray):
        return True, [("", value)], None
    if isinstance(value, dict):
        arrays, meta = [], {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"packet keys must be strings, got {key!r}")
            if isinstance(item, np.ndarray):
                arrays.append((key, item))
            else:
                meta[key] = item
        return False, arrays, meta or None
    raise TypeError(f"a port value must be a numpy array, a dict or None, not {type(value).__name__}")


def join_value(bare: bool, arrays: list[tuple[str, np.ndarray]], meta: Any, empty: bool) -> Any:
    if empty:
        return None
    if bare:
        return arrays[0][1]
    value = dict(meta) if meta else {}
    for name, array in arrays:
        value[name] = array
    return value


def _check_int(value, name, low, high):
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise WireError(f"header field {name!r} must be an integer in {low}..{high}")
    return value


def decode_header(raw: bytes | memoryview) -> dict:
    """Parse and check a data-socket header; raise WireError when it is not one of ours."""
    if len(raw) > MAX_HEADER_BYTES:
        raise WireError("header too large")
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0)
    except Exception as exc:
        raise WireError(f"header is not msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise WireError("header is not a map")
    kind = header.get("k")
    if kind == KIND_ANNOUNCE:
        _check_int(header.get("f"), "f", 0, 1 << 16)
        _check_int(header.get("i"), "i", 0, 1 << 30)
        _check_int(header.get("e"), "e", 0, 1 << 30)
        return header
    if kind not in (KIND_DATA, KIND_EOS):
        raise WireError(f"unknown message kind {kind!r}")
    for name, high in (("e", 1 << 30), ("f", 1 << 16), ("i", 1 << 30), ("s", 1 << 16), ("q", 1 << 62)):
        _check_int(header.get(name), name, 0, high)
    if kind == KIND_EOS:
        return header
    _check_int(header.get("t"), "t", 0, 1 << 63)
    _check_int(header.get("x"), "x", 0, FLAG_EMPTY | FLAG_DROPPED)
    if not isinstance(header.get("b"), bool):
        raise WireError("header field 'b' must be a boolean")
    meta = header.get("m")
    if meta is not None and not isinstance(meta, dict):
        raise WireError("header field 'm' must be a map")
    arrays = header.get("a")
    if not isinstance(arrays, list) or len(arrays) > MAX_ARRAYS:
        raise WireError("header field 'a' must be a list of at most 32 arrays")
    for spec in arrays:
        if not (isinstance(spec, list) and len(spec) == 4 and isinstance(spec[0], str) and len(spec[0]) <= 64):
            raise WireError("array entry must be [name, dtype, shape, ref]")
        if spec[1] not in ALLOWED_DTYPES:
            raise WireError(f"array dtype {spec[1]!r} not allowed")
        shape = spec[2]
        if not (isinstance(shape, list) and len(shape) <= MAX_NDIM and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < (1 << 31) for d in shape)):
            raise WireError("array shape must be a list of at most 8 non-negative integers")
        if int(np.prod(shape, dtype=np.int64)) * np.dtype(spec[1]).itemsize > MAX_ARRAY_BYTES:
            raise WireError("array larger than 2 GiB")
        ref = spec[3]
        if ref is not None and not (isinstance(ref, list) and len(ref) == 4 and isinstance(ref[0], str)
                                    and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ref[1:])):
            raise WireError("array ref must be null or [pool, slot, generation, offset]")
    if header["b"] and len(arrays) != 1:
        raise WireError("a bare packet carries exactly one array")
    return header


def inline_array(spec: list, buffer) -> np.ndarray:
    """View an inline buffer as the array its header entry promises (checked, read-only)."""
    dtype = np.dtype(spec[1])
    nbytes = int(np.prod(spec[2], dtype=np.int64)) * dtype.itemsize
    if len(buffer) != nbytes:
        raise WireError(f"array {spec[0]!r}: header promises {nbytes} bytes, buffer has {len(buffer)}")
    array = np.frombuffer(buffer, dtype=dtype).reshape(spec[2])
    array.flags.writeable = False
    return array


def decode_back(raw: bytes | memoryview) -> list:
    """Parse and check a back-channel message (hello or ack)."""
    if len(raw) > 4096:
        raise WireError("back message too large")
    try:
        msg = msgpack.unpackb(raw, raw=False, max_bin_len=0, max_ext_len=0)
    except Exception as exc:
        raise WireError(f"back message is not msgpack ({type(exc).__name__})") from None
    if not isinstance(msg, list) or not msg:
        raise WireError("back message is not a list")
    if msg[0] == BACK_HELLO and len(msg) == 4 and isinstance(msg[1], str):
        _check_int(msg[2], "consumer incarnation", 0, 1 << 30)
        _check_int(msg[3], "consumer replica", 0, 1 << 16)
        return msg
    if msg[0] == BACK_ACK and len(msg) == 6:
        for value, high in zip(msg[1:], (1 << 30, 1 << 16, 1 << 62, 3, 1 << 30)):
            _check_int(value, "ack field", 0, high)
        return msg
    raise WireError("unknown back message")
