"""Keyed state: the engine keeps a node's state per stream, or per key inside a stream.

State that follows a stream or a person is the framework's job, not each node's (as
Bytewax keeps a state per key and MediaPipe keeps a calculator per stream): a kind says
how to make a fresh state (`Node.new_state`) and, with `Node.KEYS`, how its packets split
into keys. This module calls `process` once per key with that key's state in `ctx.state`,
merges the outputs, and retires a state when its key has been missing for
`Node.KEY_TIMEOUT` frames, when its stream ends, or when the node closes.

Key 0 is the key of a packet that is not split (one person without an id): it is never
timed out, so a single-person stream keeps its state across frames with nobody in them,
and it is retired once the stream shows real keys.
"""
from __future__ import annotations

from typing import Any

from .node import Node

NO_KEY = 0


class KeyedState:
    """The engine's side of Node.new_state and Node.KEYS, for one node instance."""

    def __init__(self, node: Node):
        kind = type(node)
        self.node = node
        self.keys_by = kind.KEYS
        self.port = (self.keys_by.port or next(iter(kind.INPUTS), None)) if self.keys_by is not None else None
        self.timeout = int(kind.KEY_TIMEOUT)
        self.makes_state = kind.new_state is not Node.new_state
        self.active = kind.is_keyed()
        self.states: dict[tuple[int, int], Any] = {}      # (stream, key) -> that key's state
        self.last_seen: dict[tuple[int, int], int] = {}   # (stream, key) -> seq it was last present at
        self.split_streams: set[int] = set()              # streams that have shown keys other than 0

    def call(self, inputs: dict, ctx) -> dict:
        """`process` of the node for one packet: once, or once per key; outputs merged."""
        if not self.active:
            return self.node.process(inputs, ctx) or {}
        if self.keys_by is None:
            self._enter(ctx, (ctx.stream, NO_KEY))
            try:
                return self.node.process(inputs, ctx) or {}
            finally:
                ctx.state = ctx.key = None
        return self._call_per_key(inputs, ctx)

    def _call_per_key(self, inputs: dict, ctx) -> dict:
        parts = {port: dict(self.keys_by.split(value)) for port, value in inputs.items()}
        present = list(parts.get(self.port, {}))
        outputs: dict[str, list] = {}
        try:
            for key in self._keys_to_call(ctx.stream, ctx.seq, present):
                one = {port: _part(by_key, key) for port, by_key in parts.items()}
                self._enter(ctx, (ctx.stream, key))
                for port, value in (self.node.process(one, ctx) or {}).items():
                    outputs.setdefault(port, []).append((key, value))
        finally:
            ctx.state = ctx.key = None
        return {port: self.keys_by.merge(items) for port, items in outputs.items()}

    def _enter(self, ctx, key: tuple[int, int]) -> None:
        ctx.key = key
        if self.makes_state:
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = self.node.new_state()
            ctx.state = state

    def _keys_to_call(self, stream: int, seq: int, present: list[int]) -> list[int]:
        """The keys present in this packet, then those missing lately (called with None)."""
        for key in present:
            self.last_seen[stream, key] = seq
        if stream not in self.split_streams and any(key != NO_KEY for key in present):
            self.split_streams.add(stream)  # real keys from now on: the unsplit key goes
            self.retire((stream, NO_KEY))
        missing = []
        for (s, key), last in list(self.last_seen.items()):
            if s != stream or key in present:
                continue
            if key != NO_KEY and seq - last > self.timeout:
                self.retire((s, key))
            else:
                missing.append(key)
        keys = present + sorted(missing)
        if not keys and stream not in self.split_streams:
            keys = [NO_KEY]  # nobody yet: called with None, as a frame without a person is
        return keys

    def retire(self, key: tuple[int, int]) -> None:
        """Drop the state of `key` (its `close()`, if it has one, is called)."""
        self.last_seen.pop(key, None)
        state = self.states.pop(key, None)
        close = getattr(state, "close", None)
        if callable(close):
            close()

    def export(self, stream: int) -> dict:
        """Everything kept for `stream` (its keys' states and when each was last seen), for
        posegraph.runtime.checkpoints to keep across a restart."""
        return {"states": {key: state for (s, key), state in self.states.items() if s == stream},
                "last_seen": {key: seq for (s, key), seq in self.last_seen.items() if s == stream},
                "split": stream in self.split_streams}

    def restore(self, stream: int, kept: dict) -> None:
        """The inverse of `export`: `stream`'s keys take the states kept for them."""
        for key, state in kept["states"].items():
            self.states[stream, key] = state
        for key, seq in kept["last_seen"].items():
            self.last_seen[stream, key] = seq
        if kept["split"]:
            self.split_streams.add(stream)

    def end_stream(self, stream: int) -> None:
        """The stream is over: retire every state it holds."""
        for key in [k for k in set(self.states) | set(self.last_seen) if k[0] == stream]:
            self.retire(key)
        self.split_streams.discard(stream)

    def close(self) -> None:
        for key in list(set(self.states) | set(self.last_seen)):
            self.retire(key)


def _part(by_key: dict[int, Any], key: int) -> Any:
    """One key's part of a port: its own, or the port's only part when that one is unsplit
    (a packet without keys on another input goes to every key)."""
    if key in by_key:
        return by_key[key]
    if len(by_key) == 1 and NO_KEY in by_key:
        return by_key[NO_KEY]
    return None
