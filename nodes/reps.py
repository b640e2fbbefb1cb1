"""`reps`: repetitions of one class over smoothed scores (posegraph.pose.reps), per person."""
from __future__ import annotations

from posegraph.pose.people import BY_PERSON
from posegraph.pose.reps import RepetitionCounter

from posegraph import Node, NodeOpenError, Param


class Reps(Node):
    """Scores -> repetitions so far of `class_name`; never empty (no person: count unchanged).

    One counter per person of each stream: each person has their own count, and one
    person's "entered" state must not be completed by another's exit. A person missing
    from a frame keeps their count (and is still reported) until the engine drops them
    (KEY_TIMEOUT frames, posegraph.keyed).
    """

    INPUTS = {"scores": "scores packet of smooth, one or several people; None when no person"}
    OUTPUTS = {"count": "{'reps': {class: repetitions}, 'class': name, 'entered': bool}, per person"}
    PARAMS = {
        "class_name": Param("squats_down", help="the class whose enter -> exit is one repetition"),
        "enter_threshold": Param(6.0, min=0.0, help="the pose is entered when its score rises above this"),
        "exit_threshold": Param(4.0, min=0.0, help="a repetition is counted when the score then falls below this"),
    }
    KEYS = BY_PERSON

    def open(self, ctx):
        try:
            self.new_state()  # bad thresholds fail here, not on the first packet
        except ValueError as exc:
            raise NodeOpenError(str(exc), field="params.exit_threshold") from None

    def new_state(self):
        p = self.params
        return RepetitionCounter(p["class_name"], p["enter_threshold"], p["exit_threshold"])

    def process(self, inputs, ctx):
        scores = inputs["scores"]
        if scores is not None:  # no person: the person is taken as frozen, state unchanged
            ctx.state(scores.get("scores") or {})
        return {"count": ctx.state.packet()}
