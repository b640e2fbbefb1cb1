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

    One BlazePose tracker per stream (ctx.stream), made on the stream's first frame: with
    several sources feeding this node, one tracker would carry one camera's ROI and
    smoothing into another's frames. The first tracker is made in open() (so a missing
    model stops the graph at start) and goes to whichever stream comes first.
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

        self.trackers = {}  # stream id -> BlazePose
        self.spare = None   # made here so model errors surface at open; the first stream takes it
        try:
            self.spare = self._new_tracker()
        except blazepose.ModelMissingError as exc:
            raise NodeOpenError(str(exc), field="params.model_complexity") from exc

    def _new_tracker(self):
        from . import blazepose

        p = self.params
        return blazepose.BlazePose(
            static_image_mode=p["static_image_mode"], model_complexity=p["model_complexity"],
            smooth_landmarks=p["smooth_landmarks"], min_detection_confidence=p["min_detection_confidence"],
            min_tracking_confidence=p["min_tracking_confidence"])

    def _tracker(self, stream):
        tracker = self.trackers.get(stream)
        if tracker is None:
            if self.spare is not None:
                tracker, self.spare = self.spare, None
            else:
                tracker = self._new_tracker()
            self.trackers[stream] = tracker
        return tracker

    def process(self, inputs, ctx):
        image = image_of(inputs["frame"])
        if image is None:
            ctx.count("no_frame")
            return {}
        landmarks = self._tracker(ctx.stream).detect(image)
        if landmarks is None:
            ctx.count("no_person")
            return {}
        frame = inputs["frame"]
        if isinstance(frame, dict) and frame.get("pts_ms") is not None:
            landmarks["pts_ms"] = float(frame["pts_ms"])  # the source's clock: temporal models need it
        return {"landmarks": landmarks}

    def close(self):
        trackers = list(getattr(self, "trackers", {}).values()) + [getattr(self, "spare", None)]
        self.trackers, self.spare = {}, None
        for tracker in trackers:
            if tracker is not None:
                tracker.close()
