"""`pose`: body landmarks for every frame, one or several people, from one of the backends
(posegraph.pose.estimator: the models, the packets, person ids). The default, BlazePose for
one person, runs on LiteRT and imports neither mediapipe nor TensorFlow."""
from __future__ import annotations

from dataclasses import fields

from posegraph.pose.estimator import EstimatorError, PoseEstimator, PoseOptions, check_model
from posegraph.pose.packets import image_of

from posegraph import Node, NodeOpenError, Param

_OPTIONS = {f.name for f in fields(PoseOptions)}
_D = PoseOptions()  # the params' defaults


class Pose(Node):
    """Pose estimation on each frame; an empty packet when nobody is in view.

    Each stream has its own state (posegraph.pose.estimator.PoseStream: its tracker and
    person ids), since tracking uses the previous frame's landmarks and one tracker fed
    several cameras would carry one camera's people into another's frames. The first
    backend is made in open, so a missing model stops the graph at start.
    """

    INPUTS = {"frame": "frame packet {'image': uint8 H x W x 3 BGR, ...} or a bare BGR image"}
    PORT_TYPES = {"in:frame": ("frame", "image"), "out:landmarks": "landmarks"}
    OUTPUTS = {"landmarks": "landmarks packet (posegraph/pose/packets.py; layout blazepose33, coco17 or custom, see "
                            "posegraph/pose/estimator.py), multi-person (posegraph/pose/people.py) when max_people > 1; "
                            "empty when no person"}
    PARAMS = {
        "model": Param(_D.model, check=check_model,
                       help="blazepose (33 landmarks, LiteRT), blazepose-mediapipe (the same through MediaPipe's "
                            "own graph, one person, where mediapipe 0.10.21 is installed: a reference), or a "
                            "COCO-17 backend: posenet, movenet-lightning, movenet-thunder (single person), "
                            "movenet-multipose (up to 6), or custom:PATH (a model folder from runner.py "
                            "train-keypoints)"),
        "custom_precision": Param(_D.custom_precision, choices=("float", "int8"),
                                  help="custom: run model.float.tflite or model.int8.tflite of the model folder"),
        "custom_crop": Param(_D.custom_crop, choices=("model", "detector", "frame"),
                             help="custom: the crop the model was trained on (model.json), or force the BlazePose "
                                  "detector's person crops / the whole frame"),
        "max_people": Param(_D.max_people, min=1, max=20,
                            help="1: the best person, single-person packet (id 0); more: tracked ids >= 1"),
        "detect_every": Param(_D.detect_every, min=0, help="blazepose, max_people > 1: run the person detector every N "
                                                           "frames (also whenever someone is lost or fewer than "
                                                           "max_people are tracked)"),
        "max_missed": Param(_D.max_missed, min=0, help="max_people > 1: frames a person's id is kept while they are not found"),
        "static_image_mode": Param(_D.static_image_mode, help="detect on every frame instead of tracking (unrelated images)"),
        "model_complexity": Param(_D.model_complexity, choices=(0, 1, 2), help="blazepose: 0 lite, 1 full, 2 heavy landmark model"),
        "smooth_landmarks": Param(_D.smooth_landmarks, help="blazepose, max_people 1: filter landmarks across frames as "
                                                             "MediaPipe does (tracking only)"),
        "min_detection_confidence": Param(_D.min_detection_confidence, min=0.0, max=1.0,
                                          help="blazepose, custom: person detector score threshold"),
        "min_tracking_confidence": Param(_D.min_tracking_confidence, min=0.0, max=1.0,
                                         help="blazepose: landmark presence below which a person is lost"),
        "posenet_input_size": Param(_D.posenet_input_size, min=17, help="posenet: square model input, 16k+1 (257, 385, 513...)"),
        "posenet_output_stride": Param(_D.posenet_output_stride, choices=(8, 16, 32),
                                       help="posenet: the model's output stride (the shipped model's is 16; checked at open)"),
        "posenet_score_threshold": Param(_D.posenet_score_threshold, min=0.0, max=1.0,
                                         help="posenet: minimum part score of a pose's root"),
        "posenet_pose_threshold": Param(_D.posenet_pose_threshold, min=0.0, max=1.0, help="posenet: people scoring below are dropped"),
        "posenet_nms_radius": Param(_D.posenet_nms_radius, min=0.0,
                                    help="posenet: part NMS radius in input pixels (0: 20 px scaled from a 257 input)"),
        "posenet_flip": Param(_D.posenet_flip, help="posenet: run on the mirrored frame (and mirror the result back)"),
        "posenet_decoder": Param(_D.posenet_decoder, choices=("multi", "single"),
                                 help="posenet: multi (along the skeleton, also for one person) or single (argmax)"),
        "movenet_pose_threshold": Param(_D.movenet_pose_threshold, min=0.0, max=1.0,
                                        help="movenet: people scoring below are dropped (multipose: the pose score; "
                                             "lightning/thunder: the mean keypoint score)"),
        "threads": Param(_D.threads, min=1, max=64, help="TFLite threads per model (all backends but blazepose-mediapipe)"),
    }

    def open(self, ctx):
        options = PoseOptions(**{name: value for name, value in self.params.items() if name in _OPTIONS})
        try:
            self.estimator = PoseEstimator(options)
        except EstimatorError as exc:
            raise NodeOpenError(str(exc), field=f"params.{exc.option}") from exc

    def new_state(self):
        return self.estimator.new_stream()

    def process(self, inputs, ctx):
        frame = inputs["frame"]
        image = image_of(frame)
        if image is None:
            ctx.count("no_frame")
            return {}
        pts_ms = frame.get("pts_ms") if isinstance(frame, dict) else None
        landmarks = ctx.state.landmarks(image, None if pts_ms is None else float(pts_ms))
        if landmarks is None:
            ctx.count("no_person")
            return {}
        return {"landmarks": landmarks}

    def close(self):
        estimator, self.estimator = getattr(self, "estimator", None), None
        if estimator is not None:
            estimator.close()
