"""`pose`: body landmarks for every frame, one or several people, from one of five backends.

model blazepose (default), max_people 1: MediaPipe's own single-person graph
    (nodes/blazepose.py, mp.solutions.pose), one tracker per stream; the packet is the
    single-person landmarks packet of nodes/packets.py (id 0), exactly as before.
model blazepose, max_people > 1: nodes/blazepose_multi.py (`MultiBlazePose.track`, one per
    stream; the detector runs every `detect_every` frames or when someone was lost).
model posenet / movenet-lightning / movenet-thunder / movenet-multipose: nodes/posenet.py,
    nodes/movenet.py; COCO-17 keypoints.
model custom:PATH: a keypoint model trained with `runner.py train-keypoints` (nodes/custom_pose.py),
    on the BlazePose detector's person crops or the whole frame; its own keypoints: layout
    "coco17" when they are COCO-17's, else "custom:<names>" with "names" in the packet.

Packets (one person): BlazePose as nodes/packets.py (plus "score" and "box" on the multi
path); COCO-17 backends {"px": float32 17 x 4 [x_px, y_px, 0, score], "norm": float32 17 x 4
[x / width, y / height, 0, score], "width", "height", "layout": "coco17", "score": float,
"box": float32 [x0, y0, x1, y1]}, no "world". "pts_ms" from the frame when it has one.

max_people 1: the best person as that single-person packet (id 0, no "ids"). max_people > 1:
every person (at most max_people) gets an id >= 1 from nodes/tracking.PeopleTracker (one per
stream; BlazePose's own ROI track ids are hints to it), and the packet is
nodes/people.merge of them, lowest (oldest) id first: the first person's packet plus "ids",
"people_px", "people_norm", ["people_world"], "people_box", "people_meta" [{"score"}].

The heavy imports (mediapipe, ai_edge_litert) happen in `open` only, so validating a graph
and every other node process stay light; only the pose process pays for the model.
"""
from __future__ import annotations

import numpy as np
from posegraph.pose.packets import image_of
from posegraph.pose.people import merge

from posegraph import Node, NodeOpenError, Param

MODELS = ("blazepose", "posenet", "movenet-lightning", "movenet-thunder", "movenet-multipose")
CUSTOM = "custom:"


def check_model(value: str) -> str | None:
    """A built-in model's name or custom:PATH (the file itself is checked at open)."""
    if value in MODELS:
        return None
    if value.startswith(CUSTOM):
        return None if value[len(CUSTOM):].strip() else "custom: needs a path, e.g. custom:models/my_keypoints"
    return f"{value!r} is not one of {', '.join(MODELS)} or custom:PATH"


def coco_packet(person: dict, width: int, height: int, layout: str = "coco17", names=None) -> dict:
    """A single-frame backend's person {"keypoints": (k, 3) x_px, y_px, score, "score", "box"} as a
    landmarks packet (see the module doc); a custom layout also carries its "names"."""
    kps = np.asarray(person["keypoints"], np.float32)
    px = np.zeros((len(kps), 4), np.float32)
    px[:, 0], px[:, 1], px[:, 3] = kps[:, 0], kps[:, 1], kps[:, 2]
    norm = px / np.float32([width, height, 1, 1])
    packet = {"px": px, "norm": norm, "width": int(width), "height": int(height), "layout": layout,
              "score": float(person["score"]), "box": np.asarray(person["box"], np.float32).reshape(4)}
    if names is not None and layout not in ("coco17", "blazepose33"):
        packet["names"] = tuple(names)
    return packet


class Pose(Node):
    """Pose estimation on each frame; an empty packet when nobody is in view.

    STATEFUL because tracking (static_image_mode false, the default) uses the previous
    frame's landmarks for the next ROI or crop and smooths over time, and person ids follow
    people from frame to frame, so one process must see the stream in order.

    Everything that carries state lives per stream (ctx.stream): the BlazePose tracker
    (single or multi), MoveNet single pose's crop, and the id tracker; with several sources
    feeding this node, one tracker would carry one camera's people into another's frames.
    The first per-stream backend is made in open() (so a missing model stops the graph at
    start) and goes to whichever stream comes first. PoseNet, MoveNet MultiPose and custom models keep no
    state and are shared by all streams.
    """

    INPUTS = {"frame": "frame packet {'image': uint8 H x W x 3 BGR, ...} or a bare BGR image"}
    OUTPUTS = {"landmarks": "landmarks packet (nodes/packets.py; layout blazepose33 or coco17, see nodes/pose.py), "
                            "multi-person (nodes/people.py) when max_people > 1; empty when no person"}
    PARAMS = {
        "model": Param("blazepose", check=check_model,
                       help="blazepose (33 landmarks), or a COCO-17 backend: posenet, movenet-lightning, "
                            "movenet-thunder (single person), movenet-multipose (up to 6), or custom:PATH "
                            "(a model folder from runner.py train-keypoints)"),
        "custom_precision": Param("float", choices=("float", "int8"),
                                  help="custom: run model.float.tflite or model.int8.tflite of the model folder"),
        "custom_crop": Param("model", choices=("model", "detector", "frame"),
                             help="custom: the crop the model was trained on (model.json), or force the BlazePose "
                                  "detector's person crops / the whole frame"),
        "max_people": Param(1, min=1, max=20,
                            help="1: the best person, single-person packet (id 0); more: tracked ids >= 1"),
        "detect_every": Param(10, min=0, help="blazepose, max_people > 1: run the person detector every N frames "
                                              "(also whenever someone is lost or fewer than max_people are tracked)"),
        "max_missed": Param(15, min=0, help="max_people > 1: frames a person's id is kept while they are not found"),
        "static_image_mode": Param(False, help="detect on every frame instead of tracking (unrelated images)"),
        "model_complexity": Param(1, choices=(0, 1, 2), help="blazepose: 0 lite, 1 full, 2 heavy landmark model"),
        "smooth_landmarks": Param(True, help="blazepose, max_people 1: filter landmarks across frames (tracking only)"),
        "min_detection_confidence": Param(0.5, min=0.0, max=1.0,
                                          help="blazepose, custom: person detector score threshold"),
        "min_tracking_confidence": Param(0.5, min=0.0, max=1.0,
                                         help="blazepose: landmark presence below which a person is lost"),
        "posenet_input_size": Param(513, min=17, help="posenet: square model input, 16k+1 (257, 385, 513...)"),
        "posenet_output_stride": Param(16, choices=(8, 16, 32),
                                       help="posenet: the model's output stride (the shipped model's is 16; checked at open)"),
        "posenet_score_threshold": Param(0.5, min=0.0, max=1.0, help="posenet: minimum part score of a pose's root"),
        "posenet_pose_threshold": Param(0.15, min=0.0, max=1.0, help="posenet: people scoring below are dropped"),
        "posenet_nms_radius": Param(0.0, min=0.0,
                                    help="posenet: part NMS radius in input pixels (0: 20 px scaled from a 257 input)"),
        "posenet_flip": Param(False, help="posenet: run on the mirrored frame (and mirror the result back)"),
        "posenet_decoder": Param("multi", choices=("multi", "single"),
                                 help="posenet: multi (along the skeleton, also for one person) or single (argmax)"),
        "movenet_pose_threshold": Param(0.25, min=0.0, max=1.0,
                                        help="movenet: people scoring below are dropped (multipose: the pose score; "
                                             "lightning/thunder: the mean keypoint score)"),
        "threads": Param(1, min=1, max=64, help="TFLite threads per model (all backends but blazepose max_people 1)"),
    }
    STATEFUL = True

    def param(self, name):
        """A param's value; its default when the params dict predates it."""
        return self.params.get(name, self.PARAMS[name].default)

    # ----- lifecycle -----------------------------------------------------------------------------
    def open(self, ctx):
        self.model = self.param("model")
        self.max_people = int(self.param("max_people"))
        self.legacy = self.model == "blazepose" and self.max_people == 1
        self.trackers = {}  # stream id -> per-stream backend (BlazePose, MultiBlazePose or MoveNet)
        self.people = {}    # stream id -> PeopleTracker (max_people > 1)
        self.spare = None   # made here so model errors surface at open; the first stream takes it
        self.shared = None  # PoseNet / MoveNetMultiPose: stateless, one for all streams
        problem = check_model(self.model)
        if problem:
            raise NodeOpenError(problem, field="params.model")
        if self.model.startswith(CUSTOM):
            from posegraph.pose.backends.custom import CustomModelError

            try:
                self.spare = self._new_tracker()
            except CustomModelError as exc:
                raise NodeOpenError(str(exc), field="params.model") from exc
            self.shared, self.spare = self.spare, None  # one frame at a time, no state: shared by all streams
            return
        if self.model == "blazepose":
            from posegraph.pose.backends import blazepose

            try:
                self.spare = self._new_tracker()
            except blazepose.ModelMissingError as exc:
                raise NodeOpenError(str(exc), field="params.model_complexity") from exc
            return
        try:
            if self.model in ("posenet", "movenet-multipose"):
                self.shared = self._new_tracker()
            else:
                self.spare = self._new_tracker()
        except FileNotFoundError as exc:
            raise NodeOpenError(str(exc), field="params.model") from exc
        except ValueError as exc:  # e.g. a posenet_input_size that is not 16k+1
            field = ("params.posenet_input_size" if "input_size" in str(exc) else
                     "params.posenet_output_stride" if "output_stride" in str(exc) else "params.model")
            raise NodeOpenError(str(exc), field=field) from exc

    def _new_tracker(self):
        """A new backend instance for this node's model and params."""
        threads = int(self.param("threads"))
        static = bool(self.param("static_image_mode"))
        if self.model.startswith(CUSTOM):
            from posegraph.pose.backends.custom import CustomPose

            crop = self.param("custom_crop")
            return CustomPose(self.model[len(CUSTOM):].strip(), precision=self.param("custom_precision"),
                              crop=None if crop == "model" else crop, max_people=self.max_people,
                              min_detection_confidence=self.param("min_detection_confidence"), threads=threads)
        if self.model == "blazepose":
            if self.legacy:
                from posegraph.pose.backends import blazepose

                return blazepose.BlazePose(
                    static_image_mode=static, model_complexity=self.param("model_complexity"),
                    smooth_landmarks=self.param("smooth_landmarks"),
                    min_detection_confidence=self.param("min_detection_confidence"),
                    min_tracking_confidence=self.param("min_tracking_confidence"))
            from posegraph.pose.backends.blazepose_multi import MultiBlazePose

            return MultiBlazePose(max_people=self.max_people,
                                  min_detection_confidence=self.param("min_detection_confidence"),
                                  min_presence=self.param("min_tracking_confidence"),
                                  model_complexity=self.param("model_complexity"),
                                  detect_every=self.param("detect_every"), threads=threads)
        if self.model == "posenet":
            from posegraph.pose.backends.posenet import PoseNet

            radius = float(self.param("posenet_nms_radius"))
            return PoseNet(input_size=self.param("posenet_input_size"), output_stride=self.param("posenet_output_stride"),
                           decoder=self.param("posenet_decoder"),
                           score_threshold=self.param("posenet_score_threshold"),
                           pose_threshold=self.param("posenet_pose_threshold"),
                           nms_radius=radius if radius > 0 else None, flip=self.param("posenet_flip"),
                           max_poses=self.max_people, num_threads=threads)
        from posegraph.pose.backends.movenet import MoveNet, MoveNetMultiPose

        if self.model == "movenet-multipose":
            return MoveNetMultiPose(pose_threshold=self.param("movenet_pose_threshold"),
                                    max_poses=min(6, self.max_people), num_threads=threads)
        return MoveNet(self.model.split("-")[1], crop=True, track=not static,
                       min_pose_score=self.param("movenet_pose_threshold"), num_threads=threads)

    def _tracker(self, stream):
        if self.shared is not None:
            return self.shared
        tracker = self.trackers.get(stream)
        if tracker is None:
            if self.spare is not None:
                tracker, self.spare = self.spare, None
            else:
                tracker = self._new_tracker()
            self.trackers[stream] = tracker
        return tracker

    def _people_tracker(self, stream):
        tracker = self.people.get(stream)
        if tracker is None:
            from posegraph.pose.tracking import PeopleTracker

            tracker = self.people[stream] = PeopleTracker(max_missed=int(self.param("max_missed")))
        return tracker

    # ----- per frame -----------------------------------------------------------------------------
    def find_people(self, image, stream) -> list[tuple[dict, np.ndarray, object]]:
        """[(single-person packet, keypoints (n, 3) x, y, score, the backend's own track id or None)],
        best first (the backend's order), at most max_people."""
        backend = self._tracker(stream)
        height, width = image.shape[:2]
        found = []
        if self.model == "blazepose":
            people = backend.detect(image) if self.param("static_image_mode") else backend.track(image)
            for p in people:
                packet = p.packet()
                packet["score"] = float(p.score)
                packet["box"] = np.asarray(p.box, np.float32)
                hint = p.track_id if p.track_id >= 0 else None
                found.append((packet, p.px[:, (0, 1, 3)], hint))
        else:
            layout, names = getattr(backend, "layout", "coco17"), getattr(backend, "names", None)
            for p in backend.run(image):
                found.append((coco_packet(p, width, height, layout, names), np.asarray(p["keypoints"]), None))
        return found[: self.max_people]

    def process(self, inputs, ctx):
        image = image_of(inputs["frame"])
        if image is None:
            ctx.count("no_frame")
            return {}
        frame = inputs["frame"]
        pts_ms = float(frame["pts_ms"]) if isinstance(frame, dict) and frame.get("pts_ms") is not None else None
        if self.legacy:  # the single-person path, exactly as before
            landmarks = self._tracker(ctx.stream).detect(image)
            if landmarks is None:
                ctx.count("no_person")
                return {}
            if pts_ms is not None:
                landmarks["pts_ms"] = pts_ms  # the source's clock: temporal models need it
            return {"landmarks": landmarks}
        found = self.find_people(image, ctx.stream)
        if self.max_people > 1:
            tracker = self._people_tracker(ctx.stream)  # updated on empty frames too: misses count
            ids = tracker.update([p["box"] for p, _, _ in found], [k for _, k, _ in found], [h for _, _, h in found])
        else:
            ids = [0] * len(found)  # found holds at most max_people = 1
        if not found:
            ctx.count("no_person")
            return {}
        if pts_ms is not None:
            for packet, _, _ in found:
                packet["pts_ms"] = pts_ms
        people = sorted(zip(ids, (packet for packet, _, _ in found)), key=lambda item: item[0])
        return {"landmarks": merge(people)}

    def close(self):
        backends = list(getattr(self, "trackers", {}).values()) + [getattr(self, "spare", None),
                                                                    getattr(self, "shared", None)]
        self.trackers, self.spare, self.shared, self.people = {}, None, None, {}
        for backend in backends:
            if backend is not None and hasattr(backend, "close"):
                backend.close()
