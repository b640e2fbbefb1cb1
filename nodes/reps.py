"""`reps`: repetitions of one class over smoothed scores (posegraph.pose.reps), per person."""
from __future__ import annotations

from posegraph.nodes.per_person import PersonNode, PersonStates
from posegraph.pose.reps import RepetitionCounter

from posegraph import Node, NodeOpenError, Param


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
