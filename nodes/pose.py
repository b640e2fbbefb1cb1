"""`pose`: BlazePose landmarks (33 points) for every frame, through nodes/blazepose.py.

mediapipe is imported in `open` only (TensorFlow blocked), so validating a graph and every
other node process stay light; only the pose process pays for the model.
"""
from __future__ import annotations

from posegraph import Node, NodeOpenError, Param

from .packets import image_of


class Pose(Node):
    """MediaPipe Pose on each frame; an empty packet when nobody is in view.

    STATEFUL because tracking (static_image_mode false, the default) uses the previous
    frame's landmarks for the next ROI and smooths over time, so one process must see the
    stream in order. With static_image_mode true each frame stands alone, but statefulness
    is declared per kind, so this kind still cannot be replicated.
    """

    INPUTS = {"frame": "frame packet {'image': uint8 H x W x 3 BGR, ...} or a bare BGR image"}
    OUTPUTS = {"landmarks": "landmarks packet (nodes/packets.py): px, norm, world 33 x 4, width, height, layout; "
                            "empty when no person"}
    PARAMS = {
        "static_image_mode": Param(False, help="detect on every frame instead of tracking (unrelated images)"),
        "model_complexity": Param(1, choices=(0, 1, 2), help="0 lite, 1 full, 2 heavy landmark model"),
        "smooth_landmarks": Param(True, help="filter landmarks across frames to reduce jitter (tracking only)"),
        "min_detection_confidence": Param(0.5, min=0.0, max=1.0, help="person detector score threshold"),
        "min_tracking_confidence": Param(0.5, min=0.0, max=1.0,
                                         help="landmark presence below which tracking falls back to detection"),
    }
    STATEFUL = True

    def open(self, ctx):
        from . import blazepose

        p = self.params
        self.pose = None
        try:
            self.pose = blazepose.BlazePose(
                static_image_mode=p["static_image_mode"], model_complexity=p["model_complexity"],
                smooth_landmarks=p["smooth_landmarks"], min_detection_confidence=p["min_detection_confidence"],
                min_tracking_confidence=p["min_tracking_confidence"])
        except blazepose.ModelMissingError as exc:
            raise NodeOpenError(str(exc), field="params.model_complexity") from exc

    def process(self, inputs, ctx):
        image = image_of(inputs["frame"])
        if image is None:
            ctx.count("no_frame")
            return {}
        landmarks = self.pose.detect(image)
        if landmarks is None:
            ctx.count("no_person")
            return {}
        frame = inputs["frame"]
        if isinstance(frame, dict) and frame.get("pts_ms") is not None:
            landmarks["pts_ms"] = float(frame["pts_ms"])  # the source's clock: temporal models need it
        return {"landmarks": landmarks}

    def close(self):
        if getattr(self, "pose", None) is not None:
            self.pose.close()
            self.pose = None
