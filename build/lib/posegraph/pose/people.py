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

`split` turns any packet into [(id, single-person dict)] and `merge` does the reverse.
`BY_PERSON`, a kind's `KEYS` (posegraph.node.Node.KEYS), has the engine do both around a
single-person `process`, keeping the kind's state per (stream, person id) (posegraph.keyed).
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

