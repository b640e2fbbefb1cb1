"""Several people in one packet, and the per-person view node code works with.

A multi-person packet is the single-person packet of its first person (so every
single-person consumer keeps working unchanged) plus, for all P people in the frame:

    "ids":          int32 [P]  stable person ids (from the tracker), first person first
    "people_<f>":   [P, ...]   field <f> of every person, stacked, for every array field
                               whose shape is the same for all people (px, norm, world,
                               box, vector, ...)
    "people_meta":  [P dicts]  every other (non-array) per-person field: votes, scores,
                               reps, label, score, ...

Fields that are the same for everyone (width, height, layout, pts_ms, kind) stay at the
top level once. A packet without "ids" is one person with id 0.

`split` turns any packet into [(id, single-person dict)], `merge` does the reverse, and
`PerPerson` makes a single-person node kind work per person: its state is kept per
(stream, person id), as it is kept per stream today.
"""
from __future__ import annotations

from typing import Any

import numpy as np

COMMON = ("width", "height", "layout", "pts_ms", "kind", "class_names")


def split(packet: Any) -> list[tuple[int, Any]]:
    """[(person id, that person's single-person packet)]; [] for an empty packet."""
    if packet is None:
        return []
    if not isinstance(packet, dict) or "ids" not in packet:
        return [(0, packet)]
    ids = [int(i) for i in np.asarray(packet["ids"]).reshape(-1)]
    common = {k: packet[k] for k in COMMON if k in packet}
    stacked = {k[len("people_"):]: v for k, v in packet.items() if k.startswith("people_") and k != "people_meta"}
    metas = packet.get("people_meta") or [{} for _ in ids]
    people = []
    for index, person_id in enumerate(ids):
        one = dict(common)
        for name, values in stacked.items():
            one[name] = values[index]
        one.update(metas[index] if index < len(metas) else {})
        people.append((person_id, one))
    return people


def merge(people: list[tuple[int, Any]]) -> dict | None:
    """The multi-person packet of [(id, single-person packet or None)]; None when nobody."""
    present = [(pid, p) for pid, p in people if p is not None]
    if not present:
        return None
    if len(present) == 1 and present[0][0] == 0:
        return present[0][1]  # the single-person path, exactly as before
    first = dict(present[0][1])
    packet = dict(first)
    packet["ids"] = np.array([pid for pid, _ in present], dtype=np.int32)
    names = [k for k, v in first.items() if isinstance(v, np.ndarray) and k not in COMMON]
    for name in names:
        values = [p.get(name) for _, p in present]
        if all(isinstance(v, np.ndarray) and v.shape == values[0].shape for v in values):
            packet["people_" + name] = np.stack(values)
    metas = []
    for _, p in present:
        metas.append({k: v for k, v in p.items() if not isinstance(v, np.ndarray) and k not in COMMON})
    packet["people_meta"] = metas
    return packet


class ByPerson:
    """A kind's `KEYS` (posegraph.node.Node.KEYS) for working per person: the engine splits
    a multi-person packet by its "ids" into one packet per person (`split`), keeps each
    person's state, and merges the outputs back (`merge`). A packet without ids is person 0."""

    port = None  # the kind's first input says who is in the frame

    def split(self, value):
        return split(value)

    def merge(self, parts):
        return merge(parts)


BY_PERSON = ByPerson()


class PerPerson:
    """Mixin: write `process_person(inputs, ctx, key)` for one person (inputs hold that
    person's packet on every port, None where a port has nothing for them; `key` is
    (stream, person id) for keyed state) and get `process` for every person in a frame.
    A person missing from a frame is still called, with None, for PERSON_TIMEOUT frames
    (then `retire_person`), as single-person nodes are called on frames with nobody.

    The person ids come from the `PERSON_PORT` input (the first declared input by
    default). Outputs are merged per port with `merge`.
    """

    PERSON_PORT: str | None = None
    PERSON_TIMEOUT = 30  # frames a person may be missing before their state is dropped

    def process(self, inputs, ctx):
        port = self.PERSON_PORT or next(iter(self.INPUTS))
        per_port = {name: dict(split(value)) for name, value in inputs.items()}
        present = list(per_port.get(port, {}))
        # people seen lately but not in this frame still get a call (with None), as a
        # single-person node is called on frames without a person: smoothing decays,
        # windows note the gap, counters hold
        seen = self.__dict__.setdefault("_people_seen", {})
        for person_id in present:
            seen[ctx.stream, person_id] = ctx.seq
        # (id 0, the single-person path's one person, is never retired: as before)
        missing = [pid for (stream, pid), last in list(seen.items())
                   if stream == ctx.stream and pid not in present and (pid == 0 or ctx.seq - last <= self.PERSON_TIMEOUT)]
        for (stream, pid), last in list(seen.items()):
            if stream == ctx.stream and pid != 0 and ctx.seq - last > self.PERSON_TIMEOUT:
                del seen[stream, pid]
                self.retire_person((stream, pid))
        multi = self.__dict__.setdefault("_people_multi", set())
        if any(pid != 0 for pid in present) and ctx.stream not in multi:
            multi.add(ctx.stream)  # tracked people from now on: the single-person slot goes
            if seen.pop((ctx.stream, 0), None) is not None:
                self.retire_person((ctx.stream, 0))
            missing = [pid for pid in missing if pid != 0]
        ids = present + sorted(missing)
        if not ids and ctx.stream not in multi:
            ids = [0]  # nobody yet: called with None, exactly as a single-person node always was
        results: dict[str, list] = {}
        for person_id in ids:
            one = {name: people.get(person_id, people.get(0) if len(people) == 1 else None) for name, people in per_port.items()}
            out = self.process_person(one, ctx, (ctx.stream, person_id)) or {}
            for name, value in out.items():
                results.setdefault(name, []).append((person_id, value))
        return {name: merge(items) for name, items in results.items()}

    def retire_person(self, key) -> None:
        """Drop the state kept for `key` = (stream, person id): they have been gone a while."""
