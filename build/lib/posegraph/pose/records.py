"""The JSON-lines record of a frame (what the `jsonl` sink writes), and its file.

A record is one JSON object per frame:

  {"stream" (id), "source" (the stream's name: its source node's id), "seq", "pts_ms"
   and "index" (from the frame packet, null when there is none), "landmarks": n x
   [x_px, y_px, z, visibility] (2 decimals) or null when no person, "votes": {class: n}
   or null, "smoothed": {class: score} (4 decimals) or null, "class": argmax of
   smoothed (else votes) or null, "label": the classifier's own answer when its votes
   packet has one (e.g. "unknown"), "reps": {class: count} or null when there is no
   reps input, and "layout" only for landmarks of a custom layout: "custom:name,name,..."
   naming the landmark rows in order (posegraph.pose.landmarks)}

and, when the landmarks packet holds several people (posegraph.pose.people: it has
"ids"), "people": [{"id", "landmarks", "votes", "smoothed", "class", "label", "reps" (as
above, for that person: the other packets are matched by person id), "score" (the pose
model's score for them, or null), "box" ([x0, y0, x1, y1] pixels: the packet's box, else
the extent of their landmarks)}, ...] in the landmarks packet's order; the top-level
fields are then those of its first person. NaN and infinities are written as null, so
every line is strict JSON.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from posegraph.pose.drawing import finite, frame_parts, packet_dict, top_class, usable_pts
from posegraph.pose.people import split


def landmark_rows(value):
    """n x [x_px, y_px, z, visibility] rounded to 2 decimals (None for non-finite numbers)."""
    px = value.get("px") if isinstance(value, dict) else value
    if not isinstance(px, np.ndarray) or px.ndim != 2 or px.shape[1] < 3:
        return None
    array = np.round(px[:, :4].astype(np.float64), 2)
    rows = array.tolist()
    if not np.isfinite(array).all():
        rows = [[v if math.isfinite(v) else None for v in row] for row in rows]
    if array.shape[1] == 3:  # no visibility column
        rows = [row + [None] for row in rows]
    return rows


def _table(value, key: str, digits: int | None):
    """{class: number} of a votes/scores/reps packet: whole numbers as ints (digits None),
    else rounded; None when the packet has none."""
    table = packet_dict(value, key)
    if table is None:
        return None
    if digits is None:
        return {str(k): int(finite(v)) if float(finite(v)).is_integer() else finite(v) for k, v in table.items()}
    return {str(k): round(finite(v), digits) for k, v in table.items()}


def _box(person) -> list | None:
    """A person's box [x0, y0, x1, y1] in pixels (2 decimals): the packet's own `box` when it
    has one, else the extent of their finite landmarks; None when neither exists."""
    if not isinstance(person, dict):
        return None
    box = person.get("box")
    if box is not None:
        values = np.asarray(box, dtype=np.float64).reshape(-1)
        if values.shape == (4,) and np.isfinite(values).all():
            return [round(float(v), 2) for v in values]
    px = person.get("px")
    if isinstance(px, np.ndarray) and px.ndim == 2 and px.shape[1] >= 2:
        xy = px[:, :2].astype(np.float64)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy):
            return [round(float(v), 2) for v in (*xy.min(axis=0), *xy.max(axis=0))]
    return None


def _number(value):
    """A finite plain number (rounded to 4 decimals), else None."""
    try:
        number = float(np.asarray(value).reshape(-1)[0]) if isinstance(value, np.ndarray) else float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return round(number, 4) if math.isfinite(number) else None


def person_fields(landmarks, votes, scores, reps, with_reps: bool) -> dict:
    """The per-person fields of a record from one person's packets (any may be None)."""
    smoothed = _table(scores, "scores", 4)
    table = _table(votes, "votes", None)
    fields = {
        "landmarks": None if landmarks is None else landmark_rows(landmarks),
        "votes": table,
        "smoothed": smoothed,
        "class": top_class(smoothed, table)[0],
        # a classifier's own answer, when it gives one ("unknown" included: DTW, LSTM)
        "label": votes.get("label") if isinstance(votes, dict) else None,
        "reps": _table(reps, "reps", None) if with_reps else None,
    }
    layout = landmarks.get("layout") if isinstance(landmarks, dict) else None
    if isinstance(layout, str) and layout.startswith("custom:"):
        # the rows' count cannot tell which points they are (it can for 33 and 17), so the
        # layout, which lists their names, goes along; known layouts' records leave it out
        fields["layout"] = layout
    return fields


def people_fields(packets: dict) -> list[dict] | None:
    """The `people` list of a record, when the landmarks packet holds several people: one
    entry per person of the landmarks packet, in its order, with what the other packets
    say about that person id; None otherwise."""
    landmarks = packets.get("landmarks")
    if not isinstance(landmarks, dict) or "ids" not in landmarks:
        return None
    by_id = {port: dict(split(packets.get(port))) for port in ("votes", "scores", "reps")}
    people = []
    for person_id, person in split(landmarks):
        entry = {"id": int(person_id)}
        entry.update(person_fields(person, by_id["votes"].get(person_id), by_id["scores"].get(person_id),
                                   by_id["reps"].get(person_id), "reps" in packets))
        entry["score"] = _number(person.get("score")) if isinstance(person, dict) else None
        entry["box"] = _box(person)
        people.append(entry)
    return people


def frame_record(stream: int, source: str, seq: int, packets: dict) -> dict:
    """The record of one frame of stream `stream` (named `source`) from its packets
    {"landmarks", "votes", "scores", "reps", "frame"} (any left out or None); "reps" is
    null unless `packets` has a "reps" entry."""
    _, pts_ms, index = frame_parts(packets.get("frame"))
    record = {
        "stream": stream,
        "source": source,
        "seq": seq,
        "pts_ms": round(float(pts_ms), 3) if usable_pts(pts_ms) else None,
        "index": int(index) if isinstance(index, (int, np.integer)) else None,
    }
    people = people_fields(packets)
    if people:  # the first person's fields at the top, as the single-person record has them
        record.update({k: v for k, v in people[0].items() if k not in ("id", "score", "box")})
        record["people"] = people
    else:
        record.update(person_fields(packets.get("landmarks"), packets.get("votes"), packets.get("scores"),
                                    packets.get("reps"), "reps" in packets))
    return record


def last_whole_record(path: str) -> int:
    """The seq of the last complete line of a records file (-1 when none); a half-written
    last line, left by a process killed mid-write, is cut off."""
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            f.truncate(end)
        for line in reversed(data[:end].splitlines()):
            try:
                return int(json.loads(line)["seq"])
            except (ValueError, KeyError, TypeError):
                continue
    return -1


class RecordsFile:
    """A records file, written line-buffered (a reader sees whole lines as they come).

    Opened for a stream's first record: truncated when that is seq 0 (a run's records
    never mix with an older run's); when it is later (the writer was restarted mid-stream)
    appended to, after the last whole record the earlier writer wrote, and records that
    one already covers are skipped, so the file keeps every seq exactly once, in order.
    `share()` adds a user (another stream writing into the same file); the file closes
    when every user has called `close()`.
    """

    def __init__(self, path: str, stream: int, first_seq: int):
        self.path = path
        self.stream = stream
        self.written = -1  # the last seq of `stream` already in the file when it was joined mid-stream
        self.users = 1
        try:
            if first_seq > 0 and os.path.exists(path):
                self.written = last_whole_record(path)
                self.out = open(path, "a", buffering=1, encoding="utf-8")
            else:
                self.out = open(path, "w", buffering=1, encoding="utf-8")
        except OSError as exc:
            raise OSError(f"cannot write {path!r}: {exc.strerror or exc}") from None

    def write(self, record: dict) -> bool:
        """Append one record (strict JSON, one line); False when the file already had it."""
        if record["stream"] == self.stream and record["seq"] <= self.written:
            return False
        self.out.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        return True

    def share(self) -> "RecordsFile":
        """One more user of this file (reopened for appending if every earlier user closed it)."""
        if self.out.closed:
            self.out = open(self.path, "a", buffering=1, encoding="utf-8")
            self.users = 0
        self.users += 1
        return self

    def close(self) -> None:
        self.users -= 1
        if self.users <= 0 and not self.out.closed:
            self.out.flush()
            self.out.close()


STDOUT = "-"  # the path that means standard output


class StdoutRecords:
    """Records written to standard output instead of a file (`jsonl` with `path: -`): one
    line per record, flushed at once, so a program reading the runner's stdout through a
    pipe gets each frame as it is made. The runner's own lines go to stderr.

    The same interface as RecordsFile. Nothing can be read back from a pipe: a writer
    restarted mid-stream goes on at its first record (one its predecessor wrote just
    before it died may repeat), and `close` leaves stdout open. When the reader has gone
    (a closed pipe) `broken` is set and every later record is refused (write -> False).
    """

    def __init__(self, stream: int, first_seq: int = 0, out=None):
        import sys

        self.path = "<stdout>"
        self.stream = stream
        self.written = first_seq - 1  # nothing before the first record is this writer's to account for
        self.users = 1
        self.out = out or sys.stdout
        self.broken = False

    def write(self, record: dict) -> bool:
        if self.broken:
            return False
        try:
            self.out.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):  # the reader closed the pipe, or stdout was closed
            self._gone()
            return False
        return True

    def _gone(self) -> None:
        """The reader went: later records are refused, and what is still buffered goes to
        /dev/null (a flush at exit would only complain on stderr)."""
        import os

        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def share(self) -> "StdoutRecords":
        self.users += 1
        return self

    def close(self) -> None:
        self.users -= 1
        if not self.broken:
            try:
                self.out.flush()
            except (BrokenPipeError, ValueError):
                self._gone()
