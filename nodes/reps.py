"""`reps`: the write-up's repetition counter over smoothed class scores.

A repetition of, say, a squat is counted when the pose has been "entered" (the class's
smoothed votes rose above enter_threshold) and is then left (they fell below
exit_threshold). Two thresholds (hysteresis) keep a score wobbling around one value from
counting many times.
"""
from __future__ import annotations

from posegraph import Node, NodeOpenError, Param

from .per_person import PersonNode, PersonStates


class RepetitionCounter:
    """Counts enter -> exit transitions of one class's confidence (0..10 votes)."""

    def __init__(self, class_name: str, enter_threshold: float = 6.0, exit_threshold: float = 4.0):
        if exit_threshold > enter_threshold:
            raise ValueError("exit_threshold must not be above enter_threshold")
        self.class_name = class_name
        self.enter_threshold = float(enter_threshold)
        self.exit_threshold = float(exit_threshold)
        self.entered = False
        self.count = 0

    def __call__(self, scores: dict) -> int:
        confidence = float((scores or {}).get(self.class_name, 0.0))
        if not self.entered:
            self.entered = confidence > self.enter_threshold
        elif confidence < self.exit_threshold:
            self.count += 1
            self.entered = False
        return self.count


class Reps(PersonNode, Node):
    """Scores -> repetitions so far of `class_name`; never empty (no person: count unchanged).

    One counter per person of each stream (key (ctx.stream, person id), nodes/people.py):
    each person has their own count, and one person's "entered" state must not be
    completed by another's exit. A person missing from a frame keeps their count (and is
    still reported) until the PerPerson timeout drops them; one person (no "ids") is
    person 0 with one counter per stream, as before.
    """

    INPUTS = {"scores": "scores packet of smooth, one or several people; None when no person"}
    OUTPUTS = {"count": "{'reps': {class: repetitions}, 'class': name, 'entered': bool}, per person"}
    PARAMS = {
        "class_name": Param("squats_down", help="the class whose enter -> exit is one repetition"),
        "enter_threshold": Param(6.0, min=0.0, help="the pose is entered when its score rises above this"),
        "exit_threshold": Param(4.0, min=0.0, help="a repetition is counted when the score then falls below this"),
    }
    STATEFUL = True

    def open(self, ctx):
        p = self.params
        try:
            RepetitionCounter(p["class_name"], p["enter_threshold"], p["exit_threshold"])  # bad thresholds fail here
        except ValueError as exc:
            raise NodeOpenError(str(exc), field="params.exit_threshold") from None
        self.counters: dict = PersonStates()  # (stream id, person id) -> their counter

    def retire_person(self, key):
        self.counters.pop(key, None)

    def process_person(self, inputs, ctx, key):
        c = self.counters.get(key)
        if c is None:
            p = self.params
            c = self.counters[key] = RepetitionCounter(p["class_name"], p["enter_threshold"], p["exit_threshold"])
        scores = inputs["scores"]
        if scores is not None:  # no person: the person is taken as frozen, state unchanged
            c(scores.get("scores") or {})
        packet = {"reps": {c.class_name: c.count}, "class": c.class_name, "entered": c.entered}
        return {"count": packet}
