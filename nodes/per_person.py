"""What the per-person node kinds share on top of nodes/people.py's `PerPerson` mixin.

- `PersonNode`: `PerPerson` that also runs outside an engine, with `ctx` None or a test
  double that lacks `stream` or `seq` (stream 0, seq 0 then), as the single-person kinds
  always did.
- `PersonStates`: a dict of state per key = (stream, person id) in which a bare stream id
  finds that stream's single person (id 0), the key of the single-person path.
- `skip_person`: counts and reports (once per reason) a person a node cannot use, e.g.
  COCO-17 landmarks into a feature that needs BlazePose-33 points.
"""
from __future__ import annotations

from posegraph.pose.people import PerPerson


class _Standalone:
    """A context seen with defaults for what the per-person machinery reads."""

    def __init__(self, ctx):
        self._ctx = ctx

    def __getattr__(self, name):
        if self._ctx is not None and hasattr(self._ctx, name):
            return getattr(self._ctx, name)
        if name in ("stream", "seq", "capture_ns"):
            return 0
        if name in ("count", "log"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def as_context(ctx):
    """`ctx` itself when it has a stream and a seq, else a view of it with stream 0, seq 0
    (and no-op count and log when it has none)."""
    if ctx is not None and hasattr(ctx, "stream") and hasattr(ctx, "seq"):
        return ctx
    return _Standalone(ctx)


class PersonNode(PerPerson):
    """PerPerson, also callable with a context None (direct calls outside a graph)."""

    def process(self, inputs, ctx):
        return PerPerson.process(self, inputs, as_context(ctx))


class PersonStates(dict):
    """State per (stream, person id); `states[stream]` is `states[stream, 0]`."""

    def __missing__(self, key):
        if isinstance(key, int) and (key, 0) in self:
            return self[key, 0]
        raise KeyError(key)


def skip_person(node, ctx, counter: str, message: str) -> None:
    """Count `counter` and log `message` the first time it happens in this process."""
    ctx.count(counter)
    said = node.__dict__.setdefault("_skip_said", set())
    if message not in said:
        said.add(message)
        ctx.log(f"warning: {message} (reported once; counted as {counter!r})")
