"""A job's records.jsonl as an inline SVG timeline: the recognised class of each frame as
coloured bands along the time axis (and the classifier's own answer when it gives one), the
repetition counts as a step line, and a legend naming every class.

A frame with no class is "no pose" when no person was found in it (its record has no
landmarks), and "warming up" when one was but the classifier has no answer yet: a
windowed classifier (LSTM, TCN, DTW) gives none until its window of frames has filled."""
from __future__ import annotations

import bisect
import json
from html import escape
from pathlib import Path

NO_POSE = "no pose"
WARMING_UP = "warming up"
UNCLASSIFIED = {NO_POSE: "#dddddd", WARMING_UP: "#f3e3b5"}   # the bands of frames without a class
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
REPS_COLOURS = ["#111111", "#b30000", "#004d99"]
WIDTH, LEFT, RIGHT, ROW, GAP = 960, 120, 20, 34, 10


def load_records(path: Path) -> list[dict]:
    """The fields the timeline needs from each JSON line (malformed lines are skipped)."""
    records = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return records
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append({"pts_ms": rec.get("pts_ms"), "class": rec.get("class"), "label": rec.get("label"),
                            "reps": rec.get("reps") if isinstance(rec.get("reps"), dict) else None,
                            "pose": bool(rec.get("landmarks")) or bool(rec.get("people"))})
    return records


def shown(rec: dict, key: str = "class") -> str:
    """What the timeline calls a frame's class (key "class") or the classifier's answer ("label")."""
    return rec[key] or (WARMING_UP if rec.get("pose") else NO_POSE)


def summary(records: list[dict]) -> dict:
    """Frames, frames per class, and the repetition counts of the last record that has them."""
    classes: dict[str, int] = {}
    for rec in records:
        name = shown(rec)
        classes[name] = classes.get(name, 0) + 1
    reps = next((rec["reps"] for rec in reversed(records) if rec["reps"] is not None), None)
    return {"frames": len(records), "classes": classes, "reps": reps}


def _runs(values: list) -> list[tuple[int, int, object]]:
    """(first, end, value) of each run of equal consecutive values."""
    runs, start = [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            runs.append((start, i, values[start]))
            start = i
    return runs


def _tick_step(seconds: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if seconds / step <= 10:
            return step
    return 7200


def timeline_svg(records: list[dict]) -> str:
    n = len(records)
    if n == 0:
        return '<svg id="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 960 40" width="100%"><text x="10" y="25">no frames recorded</text></svg>'
    plot_w = WIDTH - LEFT - RIGHT

    def x(i: float) -> float:
        return round(LEFT + i * plot_w / n, 2)

    classes = [shown(rec) for rec in records]
    has_labels = any(rec["label"] is not None for rec in records)
    labels = [shown(rec, "label") for rec in records] if has_labels else []
    order = list(dict.fromkeys(classes + labels))
    named = [c for c in order if c not in UNCLASSIFIED]
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(named)}
    colour.update(UNCLASSIFIED)

    parts, y = [], 8
    rows = [("class", classes)] + ([("classifier says", labels)] if has_labels else [])
    for title, values in rows:
        parts.append(f'<text x="{LEFT - 8}" y="{y + ROW / 2 + 4}" text-anchor="end" class="row">{escape(title)}</text>')
        for first, end, value in _runs(values):
            parts.append(f'<rect x="{x(first)}" y="{y}" width="{round(x(end) - x(first), 2)}" height="{ROW}" fill="{colour[value]}" '
                         f'data-class="{escape(str(value))}"><title>frames {first}-{end - 1}: {escape(str(value))}</title></rect>')
        y += ROW + GAP

    # repetition counts: one step line per counted class
    reps_names = list(dict.fromkeys(name for rec in records if rec["reps"] for name in rec["reps"]))
    if reps_names:
        height = 90
        top = y + 16
        peak = max([1] + [int(rec["reps"].get(name) or 0) for rec in records if rec["reps"] for name in reps_names])

        def ry(value: int) -> float:
            return round(top + height - value * height / peak, 2)

        parts.append(f'<text x="{LEFT - 24}" y="{top + height / 2 + 4}" text-anchor="end" class="row">repetitions</text>')
        parts.append(f'<line x1="{LEFT}" y1="{top + height}" x2="{LEFT + plot_w}" y2="{top + height}" stroke="#999"/>')
        for value in range(peak + 1):
            parts.append(f'<text x="{LEFT - 4}" y="{ry(value) + 4}" text-anchor="end" class="tick">{value}</text>')
            parts.append(f'<line x1="{LEFT}" y1="{ry(value)}" x2="{LEFT + plot_w}" y2="{ry(value)}" stroke="#eee"/>')
        for k, name in enumerate(reps_names):
            points, current = [], 0
            for i, rec in enumerate(records):
                value = int((rec["reps"] or {}).get(name) or 0) if rec["reps"] is not None else current
                if i == 0:
                    points.append((x(0), ry(value)))
                elif value != current:
                    points += [(x(i), ry(current)), (x(i), ry(value))]
                current = value
            points.append((x(n), ry(current)))
            stroke = REPS_COLOURS[k % len(REPS_COLOURS)]
            path = " ".join(f"{px},{py}" for px, py in points)
            parts.append(f'<polyline class="reps-line" data-class="{escape(name)}" points="{path}" fill="none" stroke="{stroke}" stroke-width="2.5"/>')
            parts.append(f'<text x="{LEFT + plot_w - 2}" y="{ry(current) - 5}" text-anchor="end" class="reps-label" style="fill:{stroke}">'
                         f'{escape(name)}: {current}</text>')
        y = top + height + GAP

    # time axis: seconds from the frames' timestamps when they have them, else frame numbers
    pts = [rec["pts_ms"] for rec in records]
    timed = all(isinstance(p, (int, float)) for p in pts) and all(b >= a for a, b in zip(pts, pts[1:])) and pts[-1] > pts[0]
    parts.append(f'<line x1="{LEFT}" y1="{y}" x2="{LEFT + plot_w}" y2="{y}" stroke="#333"/>')
    if timed:
        t0, t1 = pts[0] / 1000, pts[-1] / 1000
        step = _tick_step(t1 - t0)
        tick = 0.0
        while tick <= t1 + 1e-9:
            if tick >= t0 - 1e-9:
                i = bisect.bisect_left(pts, tick * 1000 - 1e-6)
                parts.append(f'<line x1="{x(i)}" y1="{y}" x2="{x(i)}" y2="{y + 5}" stroke="#333"/>')
                parts.append(f'<text x="{x(i)}" y="{y + 18}" text-anchor="middle" class="tick">{tick:g} s</text>')
            tick = round(tick + step, 6)
        axis = "time"
    else:
        step = max(1, int(_tick_step(n)))
        for i in range(0, n + 1, step):
            parts.append(f'<line x1="{x(i)}" y1="{y}" x2="{x(i)}" y2="{y + 5}" stroke="#333"/>')
            parts.append(f'<text x="{x(i)}" y="{y + 18}" text-anchor="middle" class="tick">{i}</text>')
        axis = "frame"
    parts.append(f'<text x="{LEFT - 24}" y="{y + 18}" text-anchor="end" class="row">{axis}</text>')
    y += 34

    # legend: every class drawn, by name
    lx = LEFT
    for name in order:
        width = 26 + 8 * len(name)
        if lx + width > WIDTH - RIGHT:
            lx, y = LEFT, y + 22
        parts.append(f'<g class="legend-item"><rect x="{lx}" y="{y - 11}" width="14" height="14" fill="{colour[name]}"/>'
                     f'<text x="{lx + 19}" y="{y + 1}" class="legend">{escape(name)}</text></g>')
        lx += width + 14
    y += 14
    style = ("<style>#timeline text{font:12px sans-serif;fill:#222}#timeline .tick{font-size:11px;fill:#555}"
             "#timeline .reps-label{font-weight:bold}</style>")
    return (f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {y}" width="100%" '
            f'role="img" aria-label="recognised class per frame">{style}{"".join(parts)}</svg>')
