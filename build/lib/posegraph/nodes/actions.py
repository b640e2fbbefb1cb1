"""`tcn` and `lstm`: landmarks -> class probabilities of a model over a sliding window of pose
features, per person (posegraph.pose.actions: features, windows, "unknown").

Every frame, the node turns each person's landmarks into the model's features (the kind in
the model's labels.json: body3d from BlazePose's world landmarks, coco_xy, ...), adds them
to that person's window and classifies it: {"votes": {class: probability}, "label": the
answer, "distance": to the nearest class prototype}. A window unlike every class the model
knows is answered "unknown" (all its votes on "unknown"), with the threshold the training
command stored in labels.json.

- A frame without the person carries their previous features forward (as in training) and
  is counted (`no_person`); it still gets an answer once the node answers.
- Before the person has been seen the packet is empty; the first answer comes after
  `min_frames` frames, the window filled as training fills a short one.
- A person the model cannot take (body3d models need world landmarks, i.e. a BlazePose
  backend; some models need BlazePose-33 points) is skipped on that frame, counted as
  `wrong_layout` and reported once.

Backends: `tflite` (default) runs model.tflite through ai_edge_litert, without TensorFlow in
the process; `keras` loads model.keras with TensorFlow (slower to start, ~1 GB more).
"""
from __future__ import annotations

from posegraph.pose.actions import ActionClassifier, ModelDirError, packet_points
from posegraph.pose.paths import find_path
from posegraph.pose.people import BY_PERSON

from posegraph import Node, NodeOpenError, Param


class _ActionKind(Node):
    """What the `tcn` and `lstm` kinds share: everything but the default model."""

    INPUTS = {"landmarks": "landmarks packet (posegraph/pose/packets.py), one or several people; None when no person"}
    OUTPUTS = {"votes": "{'votes': {class: probability}, 'label': str (or 'unknown'), 'distance': float}, per person; "
                        "None until it answers (see the module doc)"}
    PORT_TYPES = {"in:landmarks": "landmarks", "out:votes": "votes"}
    KEYS = BY_PERSON

    def open(self, ctx):
        try:
            self.model = ActionClassifier(find_path(self.params["model"], ctx.graph_file), self.params["backend"])
        except (ModelDirError, FileNotFoundError) as exc:
            raise NodeOpenError(str(exc), field="params.model") from None

    def new_state(self):
        return self.model.new_window(self.params["min_frames"])

    def process(self, inputs, ctx):
        px, layout, width, height, world, t = packet_points(inputs["landmarks"])
        problem = self.model.unusable(px, layout, world)
        if problem is not None:
            ctx.warn_once("wrong_layout", f"model {self.params['model']!r}: {problem}")
            return {}
        if px is None:
            ctx.count("no_person")
        try:
            feats = self.model.frame(px, layout, width, height, world)
        except ValueError as exc:  # e.g. landmarks of no known layout, or no width for blazepose_xyzv
            raise ValueError(f"model {self.params['model']!r}: {exc}") from None
        window = ctx.state.push(feats, t)
        return {} if window is None else {"votes": self.model.answer(window)}

    def close(self):
        model = getattr(self, "model", None)
        if model is not None:
            model.close()


def _params(default_model: str, command: str) -> dict:
    return {
        "model": Param(default_model, help=f"model directory written by `posegraph {command}` (relative: from the "
                                           "current directory, the graph file's folder, else the package)"),
        "backend": Param("tflite", choices=("tflite", "keras"), help="tflite: ai_edge_litert, no TensorFlow; keras: model.keras"),
        "min_frames": Param(8, min=1, help="answer once this many frames were seen, filling the window until it is full"),
    }


class Tcn(_ActionKind):
    """Landmarks -> a temporal convolutional network's class probabilities over a sliding
    window (one per person of each stream); "unknown" for motions unlike its classes."""

    PARAMS = _params("models/tcn_exercises", "train-tcn")


class Lstm(_ActionKind):
    """Landmarks -> an LSTM's class probabilities over a sliding window (one per person of
    each stream); "unknown" for motions unlike its classes (models that have a threshold)."""

    PARAMS = _params("models/lstm_exercises", "train-lstm")
