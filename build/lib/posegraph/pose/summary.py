"""The answer of a run, from its records and metrics: which exercise over which seconds,
how many repetitions, and what the run missed (frames dropped, frames without a person).

`summarize` gives the `.summary.json` document; `summary_text` the lines printed at the
end of `posegraph run`.
"""
from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Iterable

GAP_S = 1.0  # a class seen again within this many seconds continues its segment
DEFAULT_FPS = 30.0


def read_records(path: str | Path) -> list[dict]:
    """The complete lines of a JSON-lines file (a half-written last line is left out)."""
    records = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.endswith("\n"):
                records.append(json.loads(line))
    return records


def _times(records: list[dict]) -> list[float]:
    """Seconds from the start of the source: its pts_ms where every record has one, else
    the frame index at the spacing of the known pts_ms (or 30 fps)."""
    pts = [r.get("pts_ms") for r in records]
    if records and all(isinstance(p, (int, float)) for p in pts):
        return [p / 1000.0 for p in pts]
    known = [(r.get("index", r.get("seq")), p) for r, p in zip(records, pts) if isinstance(p, (int, float))]
    fps = DEFAULT_FPS
    if len(known) >= 2 and known[-1][1] > known[0][1] and known[-1][0] != known[0][0]:
        fps = 1000.0 * (known[-1][0] - known[0][0]) / (known[-1][1] - known[0][1])
    return [float(r.get("index") if r.get("index") is not None else r.get("seq", i)) / fps for i, r in enumerate(records)]


def _frame_seconds(times: list[float]) -> float:
    steps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    return steps[len(steps) // 2] if steps else 1.0 / DEFAULT_FPS


def segments(classes: list[str | None], times: list[float]) -> list[dict]:
    """Consecutive frames of one class as [{"class", "start_s", "end_s"}]: frames with no
    class (no person, a classifier still warming up) shorter than GAP_S do not break a
    segment; another class does."""
    step = _frame_seconds(times)
    found: list[dict] = []
    for name, t in zip(classes, times):
        if name is None:
            continue
        last = found[-1] if found else None
        if last is not None and last["class"] == name and t - last["end_s"] <= GAP_S:
            last["end_s"] = round(t + step, 3)
        else:
            found.append({"class": name, "start_s": round(t, 3), "end_s": round(t + step, 3)})
    return found


def _answer(classes: list[str | None]) -> str | None:
    """The class of the most frames (an "unknown" answer included); None when none had one."""
    counted = collections.Counter(c for c in classes if c is not None)
    return counted.most_common(1)[0][0] if counted else None


def _person_summary(rows: list[dict], times: list[float]) -> dict:
    """Segments, answer and reps of one person. The learned counters count every class with
    motion on every frame (the classifier settles late); a clip's repetitions are those of
    the classes it was recognised as, so only those are reported."""
    classes = [r.get("class") for r in rows]
    found = segments(classes, times)
    recognised = {s["class"] for s in found}
    reps = next((r["reps"] for r in reversed(rows) if isinstance(r.get("reps"), dict)), None) or {}
    return {"classes": found, "answer": _answer(classes), "reps": {k: v for k, v in reps.items() if k in recognised}}


def summarize(records: Iterable[dict], metrics: dict | None = None, source: str = "") -> dict:
    """{"source", "frames", "classes": [{"class", "start_s", "end_s"}], "answer",
    "reps": {class: n}, "dropped", "no_person", "warming_up", "lost", "fps": {node: fps}}
    and, when the records hold several people, "people": [{"id", "classes", "answer", "reps"}]."""
    records = sorted(records, key=lambda r: r.get("seq", 0))
    times = _times(records)
    nodes = (metrics or {}).get("nodes") or {}
    doc = {"source": source, "frames": len(records)}
    doc.update(_person_summary(records, times))
    doc["no_person"] = sum(1 for r in records if not r.get("landmarks"))
    doc["warming_up"] = sum(1 for r in records if r.get("landmarks") and r.get("class") is None)
    doc["dropped"] = sum(int(m.get("drops", 0)) for m in nodes.values())
    doc["lost"] = sum(int(m.get("lost", 0)) for m in nodes.values())
    doc["fps"] = {node: m.get("fps", 0.0) for node, m in nodes.items()}
    by_person: dict[int, list[tuple[dict, float]]] = {}
    for record, t in zip(records, times):
        for person in record.get("people") or ():
            by_person.setdefault(person["id"], []).append((person, t))
    if by_person:
        doc["people"] = [{"id": pid, **_person_summary([p for p, _ in rows], [t for _, t in rows])}
                         for pid, rows in sorted(by_person.items())]
    return doc


def _classes_text(summary: dict, limit: int = 8) -> str:
    shown = [f"{s['class']} {s['start_s']:.1f}-{s['end_s']:.1f} s" for s in summary["classes"][:limit]]
    more = len(summary["classes"]) - limit
    return ", ".join(shown) + (f" (+{more} more in the summary file)" if more > 0 else "") if shown else "none"


def _reps_text(reps: dict) -> str:
    counted = {name: n for name, n in reps.items() if n}
    return ", ".join(f"{name} {n}" for name, n in counted.items()) if counted else "none"


def summary_text(summary: dict, outputs: list[str] = ()) -> list[str]:
    """The lines `posegraph run` prints at its end."""
    lines = [f"{summary['source']}: {summary['answer'] or 'no answer (no person, or too short to classify)'}"
             f"  | reps: {_reps_text(summary['reps'])}"]
    lines.append(f"  over time: {_classes_text(summary)}")
    for person in summary.get("people", ()):
        lines.append(f"  person {person['id']}: {person['answer'] or 'no answer'} | reps: {_reps_text(person['reps'])}"
                     f" | {_classes_text(person, 4)}")
    missing = [f"{summary['frames']} frames", f"{summary['no_person']} without a person",
               f"{summary['warming_up']} warming up", f"{summary['dropped']} dropped"]
    if summary.get("lost"):
        missing.append(f"{summary['lost']} lost")
    lines.append("  " + ", ".join(missing))
    if summary["fps"]:
        lines.append("  fps: " + ", ".join(f"{node} {fps:.1f}" for node, fps in summary["fps"].items()))
    if outputs:
        lines.append("  wrote " + ", ".join(outputs))
    return lines
