"""`lstm`: landmarks -> class probabilities of an LSTM over a sliding window of pose features, per person.

Every frame, the node turns each person's landmarks into the model's features (the kind stored in
the model's labels.json: coco_xy, blazepose_xyzv or embed; see posegraph/pose/lstm.py), appends
them to that person's sliding window (posegraph.pose.lstm.StreamWindow) of the model's length
(32 by default) and classifies the window: {"votes": {class: probability}, "label": most probable class}.

- A frame without the person puts their previous frame's features into the window again
  (carried forward, as in training) and is counted (`no_person`); it still gets an answer
  once the node answers.
- Before the person has been seen the packet is empty.
- Early answers: once `min_frames` frames (default 8, counted from the first person) have
  been seen, the node answers before the window is full, with the window padded as training
  pads a short clip. From then on it answers on every frame.

Layouts: `coco_xy` models work on every layout; `blazepose_xyzv` and `embed` models need
BlazePose-33 points. The upstream layout is only known per frame, so a person the model
cannot take is skipped on that frame (window left as it is, no answer), counted as
`wrong_layout` and reported once in the log.

Backends: `tflite` (default) runs model.tflite through ai_edge_litert, without importing
TensorFlow (the process stays around 100 MB); `keras` loads model.keras with TensorFlow
(slower to start, ~1 GB more). Both are imported in `open` only.
"""
from __future__ import annotations

from posegraph.pose.lstm import LstmClassifier, ModelDirError, packet_points
from posegraph.pose.paths import resolve_path
from posegraph.pose.people import BY_PERSON

from posegraph import Node, NodeOpenError, Param

DEFAULT_MODEL = "models/lstm_exercises"


class Lstm(Node):
    """Landmarks -> LSTM class probabilities over a sliding window (one per person of each stream)."""

    INPUTS = {"landmarks": "landmarks packet (posegraph/pose/packets.py), one or several people; None when no person"}
    OUTPUTS = {"votes": "{'votes': {class: probability}, 'label': str}, per person; None until it answers (see the module doc)"}
    PARAMS = {
        "model": Param(DEFAULT_MODEL, help="model directory written by `runner.py train-lstm` (relative: from the "
                                           "current directory, else the project root)"),
        "backend": Param("tflite", choices=("tflite", "keras"), help="tflite: ai_edge_litert, no TensorFlow; keras: model.keras"),
        "min_frames": Param(8, min=1, help="answer once this many frames were seen, padding the window until it is full"),
    }
    KEYS = BY_PERSON

    def open(self, ctx):
        try:
            self.model = LstmClassifier(resolve_path(self.params["model"]), self.params["backend"])
        except ModelDirError as exc:
            raise NodeOpenError(str(exc), field="params.model") from None

    def new_state(self):
        return self.model.new_window(self.params["min_frames"])

    def process(self, inputs, ctx):
        px, layout, width, height = packet_points(inputs["landmarks"])
        problem = self.model.unusable(px, layout)
        if problem is not None:
            ctx.warn_once("wrong_layout", f"model {self.params['model']!r}: {problem}")
            return {}
        if px is None:
            ctx.count("no_person")
        try:
            window = ctx.state.push(px, layout, width, height)
        except ValueError as exc:  # e.g. landmarks of no known layout, or no width for blazepose_xyzv
            raise ValueError(f"model {self.params['model']!r}: {exc}") from None
        return {} if window is None else {"votes": self.model.answer(window)}

    def close(self):
        model = getattr(self, "model", None)
        if model is not None:
            model.close()
