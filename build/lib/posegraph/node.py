"""The node contract: what a node kind declares and the three calls the engine makes.

A node kind is a plain Python class. It declares its ports and typed parameters up front
(so a graph can be validated before any process starts, in the spirit of MediaPipe's
calculator contract) and implements `open`, `process` and `close`. It never sees a socket.
"""
from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass
from typing import Any

from .hints import did_you_mean

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 70
_REPR.maxlong = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdict = 6
_REPR.maxlevel = 3


def brief(value: Any, limit: int = 80) -> str:
    """repr() of a value for an error message, at most `limit` characters: a value echoed
    back to the user may be a megabyte of text or a deep structure, and the message must
    stay one short line (and never expand the value in full to print it)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a repr that raises, or an int too long to convert to text
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


class EndOfStream(Exception):
    """Raised by a source's `process` when it has nothing more to emit."""


class NodeOpenError(Exception):
    """Raised by `open` when a node cannot start (missing camera, missing file...).

    `field` names the parameter at fault so the runner can print a precise one-line error.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


@dataclass(frozen=True)
class Param:
    """A typed parameter with a default and optional bounds or choices."""

    default: Any
    type: type | tuple = None  # inferred from the default when left out
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    help: str = ""
    check: Any = None  # value -> None, or the reason it is wrong (for values `choices` cannot list)
    finite: bool = True  # refuse nan and inf (they pass every min/max comparison); False lets them through

    def kind(self):
        if self.type is not None:
            return self.type
        if isinstance(self.default, bool):
            return bool
        if isinstance(self.default, int):
            return int
        if isinstance(self.default, float):
            return float
        return type(self.default)

    def type_name(self) -> str:
        kind = self.kind()
        if isinstance(kind, tuple):
            return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kind)
        return _TYPE_NAMES.get(kind, kind.__name__)

    def coerce(self, value: Any) -> Any:
        """Return the value as this parameter's type, or raise ValueError saying why."""
        kind = self.kind()
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if value is None and self.default is None:
            return None
        ok = False
        for k in kinds:
            if k is bool:
                ok = isinstance(value, bool)
            elif k is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif k is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                if ok:
                    try:
                        value = float(value)
                    except OverflowError:
                        raise ValueError(f"{brief(value)} is too large for a float") from None
            else:
                ok = isinstance(value, k)
            if ok:
                break
        if not ok:
            raise ValueError(f"expected {self.type_name()}, got {type(value).__name__} {brief(value)}")
        if self.finite and isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{brief(value)} is not one of {', '.join(map(brief, self.choices))}")
        if self.check is not None:
            try:
                problem = self.check(value)
            except Exception as exc:  # noqa: BLE001 - the kind's check itself failed on this value
                raise ValueError(f"{brief(value)} was refused: {type(exc).__name__}: {str(exc)[:120]}") from None
            if problem:
                raise ValueError(problem)
        if self.min is not None and isinstance(value, (int, float)) and value < self.min:
            raise ValueError(f"{brief(value)} is below the minimum {self.min}")
        if self.max is not None and isinstance(value, (int, float)) and value > self.max:
            raise ValueError(f"{brief(value)} is above the maximum {self.max}")
        return value


class Keys:
    """How a kind's packets split into keyed parts inside one stream (one part per person, say),
    so that the engine keeps a state per (stream, key) and calls `process` once per part.

    `split(value)` -> [(key, part)] for one input value ([] when it is empty); a value that
    is not split is key 0. `merge([(key, output)])` -> the port value carrying every key's
    output (None when nobody has one). `port` names the input whose parts say who is
    present in a frame (None: the kind's first input).
    """

    port: str | None = None

    def split(self, value: Any) -> list[tuple[int, Any]]:
        raise NotImplementedError

    def merge(self, parts: list[tuple[int, Any]]) -> Any:
        raise NotImplementedError


# The shared vocabulary of port types (Node.PORT_TYPES), so that kinds written apart agree
# on what travels, and `check` can warn when a node reads a port whose producer gives
# something else. A kind may use a name of its own too: two names match when they are equal.
PACKET_TYPES = {
    "frame": "a frame packet {'image', 'pts_ms', 'index'}",
    "image": "an image (uint8 array)",
    "landmarks": "a landmarks packet {'px', 'norm', 'world', 'layout', ...}",
    "features": "a features packet {'vector', 'kind', ...}",
    "votes": "a votes packet {'votes', 'label', ...}",
    "scores": "a scores packet {'scores'}",
    "reps": "a reps packet {'reps', 'class', 'entered'}",
    "any": "any packet",
}


def packet_type_text(name: str) -> str:
    """How a message names a port type: its description, or its quoted name when it is not
    one of PACKET_TYPES."""
    return PACKET_TYPES.get(name, f"'{name}'")


class Node:
    """Base class of every node kind.

    Class attributes a kind sets:
      INPUTS      {port: description}   ports it reads; empty for a source
      OUTPUTS     {port: description}   ports it writes
      PARAMS      {name: Param}         typed parameters with defaults
      STATEFUL    bool                  True when results depend on earlier frames of a
                                        stream: its replicas are then sharded by stream
                                        (a kind with `new_state` is stateful anyway)
      OPTIONAL_INPUTS set               input ports that may be left unwired
      KEYS        Keys or None          split packets into keys inside a stream (e.g.
                                        posegraph.pose.people.BY_PERSON); None: the
                                        stream is the key
      KEY_TIMEOUT int                   frames a key may be missing from its stream before
                                        the engine retires its state (30)
      PORT_TYPES  {"in:PORT": type or (type, ...), "out:PORT": type}   optional: what
                                        travels on a port, by a name of PACKET_TYPES
                                        ("frame", "image", "landmarks"...); an input takes
                                        any of the types listed ("any": everything), an
                                        output gives one, or "in:PORT": whatever that input
                                        gets. `check` warns when an input is wired to an
                                        output of a type it does not take; ports left out
                                        are not compared

    `process(inputs, ctx)` gets {port: value} where a value is a numpy array, a dict of
    arrays and plain values, or None for an empty packet, and returns {port: value}
    (ports left out are sent empty). Arrays it receives are read-only views valid during
    the call; copy what you keep. A source's `process` gets {} and raises EndOfStream at
    the end.

    Keyed state: a kind that keeps state defines `new_state()`. The engine makes one state
    per key (the stream, or (stream, key) with KEYS), hands the current one to `process`
    as `ctx.state` (and its key as `ctx.key`), and retires it when its stream ends, when
    the key has been missing for KEY_TIMEOUT frames, or when the node closes; a retired
    state with a `close()` method gets it called. With KEYS, `process` sees one key's
    part on each input (None where a port has nothing for that key), a key missing from
    a frame is still called with None until it times out (so windows age and counters
    hold), and the outputs of all keys are merged back into one packet per port.
    """

    INPUTS: dict[str, str] = {}
    OUTPUTS: dict[str, str] = {}
    PARAMS: dict[str, Param] = {}
    STATEFUL: bool = False
    OPTIONAL_INPUTS: frozenset = frozenset()
    KEYS: Keys | None = None
    KEY_TIMEOUT: int = 30
    PORT_TYPES: dict[str, Any] = {}

    def __init__(self, params: dict[str, Any]):
        self.params = params

    def open(self, ctx) -> None:
        """Acquire resources (models, devices); raise NodeOpenError on failure."""

    def new_state(self) -> Any:
        """A fresh state for a new key; None (the default) when the kind keeps none."""
        return None

    def process(self, inputs: dict[str, Any], ctx) -> dict[str, Any] | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources; called once, also after errors."""

    @classmethod
    def is_source(cls) -> bool:
        return not cls.INPUTS

    @classmethod
    def is_stateful(cls) -> bool:
        """Whether its output depends on earlier packets of a stream (replicas shard by stream)."""
        return bool(cls.STATEFUL) or cls.new_state is not Node.new_state

    @classmethod
    def takes(cls, port: str) -> tuple[str, ...] | None:
        """The types input `port` takes (PORT_TYPES), or None when it does not say."""
        declared = cls.PORT_TYPES.get(f"in:{port}")
        return None if declared is None else (declared,) if isinstance(declared, str) else tuple(declared)

    @classmethod
    def gives(cls, port: str) -> str | None:
        """The type output `port` gives (PORT_TYPES: a type, or "in:PORT"), or None."""
        return cls.PORT_TYPES.get(f"out:{port}")

    @classmethod
    def is_keyed(cls) -> bool:
        """Whether the engine keeps state or splits packets by key for this kind."""
        return cls.KEYS is not None or cls.new_state is not Node.new_state


def resolve_params(kind: type[Node], given: dict[str, Any]) -> dict[str, Any]:
    """`given` checked against the kind's PARAMS, with defaults for the rest; raises
    ParamError naming the param at fault."""
    values = {}
    for name, value in given.items():
        values[name] = check_param(kind, name, value)
    for name, decl in kind.PARAMS.items():
        values.setdefault(name, decl.default)
    return values


class ParamError(ValueError):
    """A param a kind does not take, or a value it cannot take; `name` says which."""

    def __init__(self, message: str, name: str):
        super().__init__(message)
        self.name = name


def check_param(kind: type[Node], name: Any, value: Any) -> Any:
    """One param's value as its declared type, or ParamError saying why not."""
    decls = kind.PARAMS
    if name not in decls:
        known = ", ".join(sorted(decls)) or "none"
        raise ParamError(f"unknown param{did_you_mean(str(name), decls)}; this kind takes: {known}", str(name))
    try:
        return decls[name].coerce(value)
    except ValueError as exc:
        raise ParamError(str(exc), str(name)) from None
