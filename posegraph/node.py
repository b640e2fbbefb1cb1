"""The node contract: what a node kind declares and the three calls the engine makes.

A node kind is a plain Python class. It declares its ports and typed parameters up front
(so a graph can be validated before any process starts, in the spirit of MediaPipe's
calculator contract) and implements `open`, `process` and `close`. It never sees a socket.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
                    value = float(value)
            else:
                ok = isinstance(value, k)
            if ok:
                break
        if not ok:
            raise ValueError(f"expected {self.type_name()}, got {type(value).__name__} {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, self.choices))}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ValueError(problem)
        if self.min is not None and isinstance(value, (int, float)) and value < self.min:
            raise ValueError(f"{value!r} is below the minimum {self.min}")
        if self.max is not None and isinstance(value, (int, float)) and value > self.max:
            raise ValueError(f"{value!r} is above the maximum {self.max}")
        return value


class Node:
    """Base class of every node kind.

    Class attributes a kind sets:
      INPUTS   {port: description}   ports it reads; empty for a source
      OUTPUTS  {port: description}   ports it writes
      PARAMS   {name: Param}         typed parameters with defaults
      STATEFUL bool                  True when results depend on earlier frames; such a
                                     node cannot be replicated
      OPTIONAL_INPUTS set            input ports that may be left unwired

    `process(inputs, ctx)` gets {port: value} where a value is a numpy array, a dict of
    arrays and plain values, or None for an empty packet, and returns {port: value}
    (ports left out are sent empty). Arrays it receives are read-only views valid during
    the call; copy what you keep. A source's `process` gets {} and raises EndOfStream at
    the end.
    """

    INPUTS: dict[str, str] = {}
    OUTPUTS: dict[str, str] = {}
    PARAMS: dict[str, Param] = {}
    STATEFUL: bool = False
    OPTIONAL_INPUTS: frozenset = frozenset()

    def __init__(self, params: dict[str, Any]):
        self.params = params

    def open(self, ctx) -> None:
        """Acquire resources (models, devices); raise NodeOpenError on failure."""

    def process(self, inputs: dict[str, Any], ctx) -> dict[str, Any] | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources; called once, also after errors."""

    @classmethod
    def is_source(cls) -> bool:
        return not cls.INPUTS

