"""`lstm`: landmarks -> class probabilities of an LSTM over a sliding window of pose features.

Every frame, the node turns the landmarks into the model's features (the kind stored in the
model's labels.json: coco_xy, blazepose_xyzv or embed; see nodes/lstm_model.py), appends
them to a sliding window per stream (ctx.stream) of the model's length (32 by default) and
classifies the window: {"votes": {class: probability}, "label": most probable class}.

- A frame with no person (empty landmarks packet) puts the previous frame's features into
  the window again (carried forward, as in training) and is counted (`no_person`); it still
  gets an answer once the node answers.
- Before any person has been seen in a stream the packet is empty.
- Early answers: once `min_frames` frames (default 8, counted from the first person) have
  been seen, the node answers before the window is full, with the frames so far followed
  by the newest frame repeated up to the window's length: the rule by which training pads a
  short clip, so a 29-frame clip gets answers from its 8th frame and at its last frame
  sees exactly the window it was trained on. From then on it answers on every frame
  (stride 1 at inference, whatever stride training used).

Per person (nodes/people.py): with several people in a frame each has their own window,
kept per (stream, person id); a person missing from a frame is a no-person frame of their
window (carried forward) until the PerPerson timeout drops them. One person (no "ids") is
person 0, one window per stream, exactly as before.

Layouts: `coco_xy` models work on every layout (BlazePose-33, COCO-17, OpenPose-18).
`blazepose_xyzv` and `embed` models need BlazePose-33 points; the upstream layout is only
known per frame, so a person of another layout is skipped on that frame (their window is
left as it is, no answer), counted as `wrong_layout` and reported once in the log. So is
a person of a custom layout (nodes/landmarks.py) whose features are not as many as the
model takes (coco_xy: one without all 17 COCO points).

Backends: `tflite` (default) runs model.tflite through ai_edge_litert, without importing
TensorFlow (the process stays around 100 MB); `keras` loads model.keras with TensorFlow
(slower to start, ~1 GB more). Both are imported in `open` only.
"""
from __future__ import annotations

from posegraph.nodes.per_person import PersonNode, PersonStates, skip_person
from posegraph.pose import landmarks as lm
from posegraph.pose import (
    lstm as lstm_model,  # absolute, so the file also works as `uses: path/to/nodes/lstm.py:Lstm`
)
from posegraph.pose.paths import resolve_path

from posegraph import Node, NodeOpenError, Param

DEFAULT_MODEL = "models/lstm_exercises"


class Lstm(PersonNode, Node):
    """Landmarks -> LSTM class probabilities over a sliding window (one per person of each stream)."""

    INPUTS = {"landmarks": "landmarks packet (nodes/packets.py), one or several people; None when no person"}
    OUTPUTS = {"votes": "{'votes': {class: probability}, 'label': str}, per person; None until it answers (see the module doc)"}
    PARAMS = {
        "model": Param(DEFAULT_MODEL, help="model directory written by `runner.py train-lstm` (relative: from the "
                                           "current directory, else the project root)"),
        "backend": Param("tflite", choices=("tflite", "keras"), help="tflite: ai_edge_litert, no TensorFlow; keras: model.keras"),
        "min_frames": Param(8, min=1, help="answer once this many frames were seen, padding the window until it is full"),
    }
    STATEFUL = True

    def open(self, ctx):
        path = resolve_path(self.params["model"])
        try:
            self.info, self.predictor = lstm_model.load_predictor(path, self.params["backend"])
        except lstm_model.ModelDirError as exc:
            raise NodeOpenError(str(exc), field="params.model") from None
        self.classes = list(self.info["classes"])
        self.streams: dict = PersonStates()  # (stream id, person id) -> their window

    def retire_person(self, key):
        self.streams.pop(key, None)

    def process_person(self, inputs, ctx, key):
        packet = inputs["landmarks"]
        px = None if packet is None else (packet if not isinstance(packet, dict) else packet.get("px"))
        layout = packet.get("layout") if isinstance(packet, dict) else None
        kind = self.info["features"]
        if px is not None and kind != "coco_xy":
            found = layout or lm.layout_of(px)
            if found != lm.BLAZEPOSE33:
                skip_person(self, ctx, "wrong_layout", f"model {self.params['model']!r}: features {kind!r} need "
                                                       f"blazepose33 landmarks, got {found!r}: such people get no answer "
                                                       "(coco_xy models work on any layout)")
                return {}
        if px is not None and lm.is_custom(layout):
            size = lstm_model.feature_size(kind, layout)
            if size != int(self.info["n_features"]):
                skip_person(self, ctx, "wrong_layout", f"model {self.params['model']!r} takes {self.info['n_features']} "
                                                       f"{kind} features per frame, a person of layout {layout!r} gives "
                                                       f"{size}: such people get no answer")
                return {}
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = lstm_model.StreamWindow(
                self.info["features"], int(self.info["window"]), self.params["min_frames"])
        if px is None:
            ctx.count("no_person")
            window = stream.push(None)
        else:
            width = packet.get("width") if isinstance(packet, dict) else None
            height = packet.get("height") if isinstance(packet, dict) else None
            try:
                window = stream.push(px, layout, width, height)
            except ValueError as exc:  # e.g. landmarks of no known layout, or no width for blazepose_xyzv
                raise ValueError(f"model {self.params['model']!r}: {exc}") from None
        if window is None:
            return {}
        probs = self.predictor(window)
        votes = {c: float(p) for c, p in zip(self.classes, probs)}
        return {"votes": {"votes": votes, "label": self.classes[int(probs.argmax())]}}

    def close(self):
        self.predictor = None
        self.streams = PersonStates()
