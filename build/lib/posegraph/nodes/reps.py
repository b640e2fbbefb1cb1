"""`reps`: repetitions per person, classic (one class's smoothed score) or learned (posegraph.pose.reps)."""
from __future__ import annotations

import numpy as np

from posegraph.pose.paths import find_path
from posegraph.pose.people import BY_PERSON
from posegraph.pose.reps import RepetitionCounter, RepModel, RepModelError

from posegraph import Node, NodeOpenError, Param

UNKNOWN = "unknown"


class _Learned:
    """One person's learned counters, the class they were last recognised as, and their clock."""

    def __init__(self, model: RepModel, fps: float):
        self.counter = model.counter(fps or None)
        self.current = UNKNOWN
        self.recognised: list[str] = []  # classes they have been recognised as, in order

    def packet(self) -> dict:
        """Every class's count (each counts from the start: the classifier settles late) and
        `recognised`, the classes whose counts mean something for this person (the drawing
        shows those)."""
        if self.current != UNKNOWN and self.current not in self.recognised and self.current in self.counter.counts():
            self.recognised.append(self.current)
        return {"reps": self.counter.counts(), "class": self.current, "entered": self.counter.entered(self.current),
                "recognised": list(self.recognised)}


class Reps(Node):
    """Scores (and landmarks) -> repetitions so far; never empty (no person: count unchanged).

    Classic mode (`model` ""): `class_name`'s smoothed score entered above enter_threshold
    and left below exit_threshold is one repetition (ML Kit's counter, on the KNN's
    squats_down for instance).

    Learned mode (`model`: a file of `posegraph train-reps`): every class with motion is
    counted on every frame from the person's world landmarks, each class its own counter,
    and the current class is the argmax of the smoothed scores ("unknown" is a class too),
    so a clip's count is that of the class it is recognised as; why count them all: the
    classifier settles on a class only after a while, and the count must not start then.
    People without world landmarks (COCO-17 backends) are not counted (said once).

    One counter per person of each stream: each person has their own count, and one
    person's "entered" state must not be completed by another's exit. A person missing
    from a frame keeps their count (and is still reported) until the engine drops them
    (KEY_TIMEOUT frames, posegraph.keyed).
    """

    INPUTS = {"scores": "scores packet of smooth, one or several people; None when no person",
              "landmarks": "landmarks packet of pose (learned mode: their world landmarks are counted)"}
    OPTIONAL_INPUTS = frozenset({"landmarks"})
    OUTPUTS = {"count": "{'reps': {class: repetitions}, 'class': name, 'entered': bool, 'recognised': [class] "
                        "(learned mode)}, per person"}
    PORT_TYPES = {"in:scores": "scores", "in:landmarks": "landmarks", "out:count": "reps"}
    PARAMS = {
        "class_name": Param("squats_down", help="classic mode: the class whose enter -> exit is one repetition"),
        "enter_threshold": Param(6.0, min=0.0, help="classic mode: the pose is entered when its score rises above this"),
        "exit_threshold": Param(4.0, min=0.0, help="classic mode: a repetition is counted when the score then falls below this"),
        "model": Param("", help="learned mode: a repetition model (posegraph train-reps, e.g. models/reps_exercises.json); "
                                "'' = classic mode"),
        "fps": Param(0.0, min=0.0, help="learned mode: frame rate assumed when frames carry no time (0: the model's)"),
    }
    KEYS = BY_PERSON

    def open(self, ctx):
        self.model = None
        if not self.params["model"]:
            try:
                self.new_state()  # bad thresholds fail here, not on the first packet
            except ValueError as exc:
                raise NodeOpenError(str(exc), field="params.exit_threshold") from None
            return
        if "landmarks" not in ctx.wired_inputs:
            raise NodeOpenError("the learned counter (params.model) counts world landmarks: wire inputs.landmarks "
                                "(e.g. pose/landmarks)", field="inputs.landmarks")
        try:
            self.model = RepModel.load(find_path(self.params["model"], ctx.graph_file))
        except (RepModelError, FileNotFoundError) as exc:
            raise NodeOpenError(str(exc), field="params.model") from None

    def new_state(self):
        if self.model is not None:
            return _Learned(self.model, self.params["fps"])
        p = self.params
        return RepetitionCounter(p["class_name"], p["enter_threshold"], p["exit_threshold"])

    def process(self, inputs, ctx):
        scores = inputs["scores"]
        if self.model is None:
            if scores is not None:  # no person: the person is taken as frozen, state unchanged
                ctx.state(scores.get("scores") or {})
            packet = ctx.state.packet()
            ctx.status(", ".join(f"{name}: {n} reps" for name, n in packet["reps"].items()))
            return {"count": packet}
        state = ctx.state
        values = (scores or {}).get("scores") or {}
        if values:
            state.current = max(values, key=lambda name: values[name])
        landmarks = inputs.get("landmarks")
        if landmarks is not None:
            world = landmarks.get("world")
            if world is None or not np.isfinite(np.asarray(world)[:, :3]).all():
                ctx.warn_once("no_world", f"a person without world landmarks (layout {landmarks.get('layout')}): "
                                          "the learned counter needs BlazePose's; their repetitions are not counted")
                world = None
            state.counter.update(world, self._time(landmarks, ctx))
        packet = state.packet()
        ctx.status(f"{packet['class']}: {packet['reps'].get(packet['class'], 0)} reps")  # the answer as it forms
        return {"count": packet}

    @staticmethod
    def _time(landmarks: dict, ctx) -> float | None:
        """The frame's time in seconds: the source's clock, else the capture time, else None."""
        pts = landmarks.get("pts_ms")
        if pts is not None:
            return float(pts) / 1000.0
        return ctx.capture_ns / 1e9 if ctx.capture_ns else None
