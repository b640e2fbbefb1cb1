"""Keyed state that survives a restart of its node process.

A stream's mark (posegraph.runtime.marks) says where a restarted instance resumes: the
first seq not finished downstream. Its keyed state (Node.new_state: a repetition count,
a smoothing average, a classifier's window) must then be what it was after the seq just
before, or a killed counter would count again from zero. So after each seq the node
processes, the state of that stream is pickled and kept in memory; when the stream's mark
is about to move to m, the copy taken after the last seq below m is written to the run
folder (with m, atomically), and only then does the mark move. A restarted instance
loads it and resumes at m with the state it had there.

What the node itself holds (its attributes: a model, templates, a classifier) is not
copied into each state that refers to it: the copy names the attribute, and loading it
refers to the restarted node's own.

The files are this node's own, in the run folder (mode 0600), written and read by the
same user's processes of one run: never data from the network. A state that cannot be
pickled (it holds a model, a file or a socket: the pose estimator's tracker, a sink's
open file) is not kept; that node starts its streams afresh after a restart, and says so
once in the log.
"""
from __future__ import annotations

import io
import logging
import os
import pickle

from ..keyed import KeyedState


class Checkpoints:
    def __init__(self, prefix: str, keyed: KeyedState, log=lambda message, level=logging.INFO: None):
        self.prefix = prefix        # files are f"{prefix}.{stream}.ckpt"
        self.keyed = keyed
        self.log = log
        self.enabled = keyed.makes_state
        self.taken: dict[int, dict[int, bytes]] = {}  # stream -> seq -> the state after that seq

    def path(self, stream: int) -> str:
        return f"{self.prefix}.{stream}.ckpt"

    def take(self, stream: int, seq: int) -> None:
        """The node processed `seq` of `stream`: keep a copy of the stream's state."""
        if not self.enabled:
            return
        try:
            blob = self._dumps(self.keyed.export(stream))
        except Exception as exc:  # a model, a file, a socket: not kept (module doc)
            self.enabled = False
            self.taken.clear()
            self.log(f"its state is not kept across a restart ({type(exc).__name__}: {str(exc)[:80]})", logging.DEBUG)
            return
        self.taken.setdefault(stream, {})[seq] = blob

    def commit(self, stream: int, done_below: int) -> None:
        """Every seq of `stream` below `done_below` is finished downstream: write the state
        after the last of them that was processed (before the mark moves)."""
        by_seq = self.taken.get(stream)
        if not by_seq:
            return
        below = [seq for seq in by_seq if seq < done_below]
        if not below:
            return
        blob = by_seq[max(below)]
        for seq in below:
            del by_seq[seq]
        path = self.path(stream)
        temporary = f"{path}.tmp"
        fd = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(done_below.to_bytes(8, "little", signed=True))
            out.write(blob)
        os.replace(temporary, path)

    def restore(self, stream: int) -> int | None:
        """Load the state an earlier incarnation kept for `stream`; the seq it resumes at
        (None: nothing was kept)."""
        if not self.enabled:
            return None
        try:
            with open(self.path(stream), "rb") as file:
                raw = file.read()
        except FileNotFoundError:
            return None
        done_below = int.from_bytes(raw[:8], "little", signed=True)
        self.keyed.restore(stream, self._loads(raw[8:]))
        return done_below

    def _node_attributes(self) -> dict[int, str]:
        """id -> name of what the node holds (set in open: models, templates, classifiers)."""
        return {id(value): name for name, value in vars(self.keyed.node).items()
                if not isinstance(value, (str, bytes, int, float, bool, type(None)))}

    def _dumps(self, kept: dict) -> bytes:
        buffer = io.BytesIO()
        _Pickler(buffer, self._node_attributes()).dump(kept)
        return buffer.getvalue()

    def _loads(self, blob: bytes) -> dict:
        return _Unpickler(io.BytesIO(blob), self.keyed.node).load()


class _Pickler(pickle.Pickler):
    """Pickles a state with what the node holds (`held`: id -> attribute name) referred to by name."""

    def __init__(self, file, held: dict[int, str]):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.held = held

    def persistent_id(self, obj):
        return self.held.get(id(obj))


class _Unpickler(pickle.Unpickler):
    """Loads a state, the node's own attributes taken back from the node (a local file only)."""

    def __init__(self, file, node):
        super().__init__(file)
        self.node = node

    def persistent_load(self, name):
        return getattr(self.node, name)
