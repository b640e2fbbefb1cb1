"""What travels on a socket: a msgpack header, then raw array buffers. Never pickle.

A data message is multipart: [header, buffer, buffer, ...]. The header names the link,
stream, sequence number, capture time, flags and, per array, its dtype and shape and
either "the next buffer" (inline bytes) or a shared-memory slot reference. Everything a
peer sends is checked here before the engine trusts it: a malformed or lying message
raises WireError and is counted and dropped by the caller, never crashes a node.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import msgpack
import numpy as np

KIND_DATA = "d"       # a packet for (stream, seq)
KIND_EOS = "e"        # end of a stream from one producer instance
KIND_ANNOUNCE = "a"   # a producer instance (re)started: consumers answer with hello
KIND_SYNC = "y"       # producer -> a consumer that said hello: the first seq of a stream not yet released

FLAG_EMPTY = 1        # the producer had nothing for this seq (e.g. no person found)
FLAG_DROPPED = 2      # the seq was dropped upstream (a `latest` queue overflowed)
FLAG_LIVE = 4         # from a live source (a camera): a `latest` queue may drop it when it falls behind

BACK_HELLO = "h"      # consumer -> producer: I am ready (again); resend what I have not released
BACK_ACK = "b"        # consumer -> producer: consumed and/or released (stream, seq) on a link
ACK_CONSUMED = 1      # processed: frees a queue credit
ACK_RELEASED = 2      # its results were released downstream: frees the slots

ITEMSIZE = {np.dtype(t).str: np.dtype(t).itemsize for t in ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8", "?")}
ALLOWED_DTYPES = set(ITEMSIZE)
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
    if type(value) is not int or not low <= value <= high:
        raise WireError(f"header field {name!r} must be an integer in {low}..{high}")
    return value


_LIMITS = (("e", 1 << 30), ("f", 1 << 16), ("i", 1 << 30), ("s", 1 << 16), ("q", 1 << 62))


class Header:
    """A checked data-socket message. Every kind has link, producer, incarnation; data,
    EOS and SYNC also stream and seq (EOS: the end seq; SYNC: the first seq not released);
    data also t (capture ns), flags, bare, meta and arrays ([name, dtype, shape, ref]).

    The receiver keeps a data packet as this object: `views` [(name, array)] are its
    arrays (inline buffers or a producer's slots), `frames` the zmq frames they live in,
    `refs` [(array, slot ref)] the arrays that are slot references."""

    __slots__ = ("kind", "link", "producer", "incarnation", "stream", "seq", "t", "flags", "bare", "meta", "arrays",
                 "views", "frames", "refs")

    def __init__(self, raw: dict):
        self.kind = raw["k"]
        self.link = raw["e"]
        self.producer = raw["f"]
        self.incarnation = raw["i"]
        self.stream = raw.get("s", 0)
        self.seq = raw.get("q", 0)
        self.t = raw.get("t", 0)
        self.flags = raw.get("x", 0)
        self.bare = raw.get("b", False)
        self.meta = raw.get("m")
        self.arrays = raw.get("a", [])
        self.views = self.frames = self.refs = None

    def drop_views(self) -> None:
        """The node is done with this packet's arrays; the slots stay held upstream."""
        self.views = self.frames = self.refs = None


def decode_header(raw: bytes | memoryview) -> Header:
    """Parse and check a data-socket header; raise WireError when it is not one of ours."""
    if len(raw) > MAX_HEADER_BYTES:
        raise WireError("header too large")
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0)
    except Exception as exc:
        raise WireError(f"header is not msgpack ({type(exc).__name__})") from None
    if type(header) is not dict:
        raise WireError("header is not a map")
    kind = header.get("k")
    if kind == KIND_ANNOUNCE:
        for name, high in _LIMITS[:3]:
            _check_int(header.get(name), name, 0, high)
        return Header(header)
    if kind != KIND_DATA and kind != KIND_EOS and kind != KIND_SYNC:
        raise WireError(f"unknown message kind {kind!r}")
    for name, high in _LIMITS:
        _check_int(header.get(name), name, 0, high)
    if kind == KIND_DATA:
        _check_data(header)
    return Header(header)


def _check_data(header: dict) -> None:
    _check_int(header.get("t"), "t", 0, 1 << 63)
    _check_int(header.get("x"), "x", 0, FLAG_EMPTY | FLAG_DROPPED | FLAG_LIVE)
    if type(header.get("b")) is not bool:
        raise WireError("header field 'b' must be a boolean")
    meta = header.get("m")
    if meta is not None and type(meta) is not dict:
        raise WireError("header field 'm' must be a map")
    arrays = header.get("a")
    if type(arrays) is not list or len(arrays) > MAX_ARRAYS:
        raise WireError("header field 'a' must be a list of at most 32 arrays")
    for spec in arrays:
        _check_array_spec(spec)
    if header["b"] and len(arrays) != 1:
        raise WireError("a bare packet carries exactly one array")


def _check_array_spec(spec) -> None:
    if not (type(spec) is list and len(spec) == 4 and type(spec[0]) is str and len(spec[0]) <= 64):
        raise WireError("array entry must be [name, dtype, shape, ref]")
    if spec[1] not in ALLOWED_DTYPES:
        raise WireError(f"array dtype {spec[1]!r} not allowed")
    shape = spec[2]
    if not (type(shape) is list and len(shape) <= MAX_NDIM and all(type(d) is int and 0 <= d < (1 << 31) for d in shape)):
        raise WireError("array shape must be a list of at most 8 non-negative integers")
    if math.prod(shape) * ITEMSIZE[spec[1]] > MAX_ARRAY_BYTES:
        raise WireError("array larger than 2 GiB")
    ref = spec[3]
    if ref is not None and not (type(ref) is list and len(ref) == 4 and type(ref[0]) is str
                                and all(type(v) is int and v >= 0 for v in ref[1:])):
        raise WireError("array ref must be null or [pool, slot, generation, slot bytes]")


def encode_data(link: int, producer: int, incarnation: int, stream: int, seq: int, t: int, flags: int, bare: bool,
                meta: Any, arrays: list) -> bytes:
    """The header of a data packet; `arrays` lists [name, dtype, shape, slot ref or None]."""
    return pack({"k": KIND_DATA, "e": link, "f": producer, "i": incarnation, "s": stream, "q": seq, "t": t,
                 "x": flags, "b": bare, "m": meta, "a": arrays})


def encode_eos(link: int, producer: int, incarnation: int, stream: int, end_seq: int) -> bytes:
    return pack({"k": KIND_EOS, "e": link, "f": producer, "i": incarnation, "s": stream, "q": end_seq})


def encode_sync(link: int, producer: int, incarnation: int, stream: int, first_unreleased: int) -> bytes:
    return pack({"k": KIND_SYNC, "e": link, "f": producer, "i": incarnation, "s": stream, "q": first_unreleased})


def encode_announce(link: int, producer: int, incarnation: int) -> bytes:
    return pack({"k": KIND_ANNOUNCE, "e": link, "f": producer, "i": incarnation})


def encode_hello(consumer: str, incarnation: int, replica: int, hints: list | None = None) -> bytes:
    """Consumer -> producer: ready (again); `hints` [[stream, next seq expected], ...]."""
    return pack([BACK_HELLO, consumer, incarnation, replica] + ([hints] if hints is not None else []))


def encode_acks(acks: list) -> bytes:
    """Consumer -> producer: [[link, stream, seq, flags, producer incarnation], ...]."""
    return pack([BACK_ACK, *acks])


def inline_array(spec: list, buffer) -> np.ndarray:
    """View an inline buffer as the array its header entry promises (checked, read-only)."""
    dtype = np.dtype(spec[1])
    nbytes = math.prod(spec[2]) * dtype.itemsize
    if len(buffer) != nbytes:
        raise WireError(f"array {spec[0]!r}: header promises {nbytes} bytes, buffer has {len(buffer)}")
    array = np.frombuffer(buffer, dtype=dtype).reshape(spec[2])
    array.flags.writeable = False
    return array


class Hello(NamedTuple):
    """Consumer -> producer: the consumer instance `consumer` (incarnation, replica) is ready;
    `hints` [[stream, next seq expected], ...] say where it stands (empty: a fresh start)."""

    consumer: str
    incarnation: int
    replica: int
    hints: list


class Acks(NamedTuple):
    """Consumer -> producer: [[link, stream, seq, flags, producer incarnation], ...]."""

    acks: list


def decode_back(raw: bytes | memoryview) -> Hello | Acks:
    """Parse and check a back-channel message: a hello, or a batch of acks."""
    if len(raw) > 64 * 1024:
        raise WireError("back message too large")
    try:
        msg = msgpack.unpackb(raw, raw=False, max_bin_len=0, max_ext_len=0)
    except Exception as exc:
        raise WireError(f"back message is not msgpack ({type(exc).__name__})") from None
    if not isinstance(msg, list) or not msg:
        raise WireError("back message is not a list")
    if msg[0] == BACK_HELLO and len(msg) in (4, 5) and isinstance(msg[1], str):
        _check_int(msg[2], "consumer incarnation", 0, 1 << 30)
        _check_int(msg[3], "consumer replica", 0, 1 << 16)
        hints = msg[4] if len(msg) == 5 else []
        if not (isinstance(hints, list) and len(hints) <= 1 << 16 and all(
                isinstance(h, list) and len(h) == 2 and all(type(v) is int and 0 <= v < 1 << 62 for v in h) for h in hints)):
            raise WireError("hello hints must be [[stream, next seq], ...]")
        return Hello(msg[1], msg[2], msg[3], hints)
    if msg[0] == BACK_ACK and len(msg) >= 2:
        for ack in msg[1:]:
            if not (isinstance(ack, list) and len(ack) == 5 and all(type(v) is int and v >= 0 for v in ack) and ack[3] <= 3):
                raise WireError("ack must be [link, stream, seq, flags, incarnation]")
        return Acks(msg[1:])
    raise WireError("unknown back message")
