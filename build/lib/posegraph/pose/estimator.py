"""Pose estimation on streams of frames, over any backend: what the `pose` kind runs.

model blazepose, max_people 1 (the default): MediaPipe's single-person pose graph rebuilt on
    LiteRT (posegraph/pose/backends/blazepose_litert.py: detector, then the ROI from the last
    frame's landmarks, MediaPipe's landmark smoothing), no mediapipe or TensorFlow import;
    the packet is the single-person landmarks packet of posegraph/pose/packets.py (id 0).
model blazepose-mediapipe (max_people 1 only): the reference, MediaPipe's own graph
    (posegraph/pose/backends/blazepose.py, mp.solutions.pose), where the mediapipe package
    can be imported (mediapipe 0.10.21, Python <= 3.12); the same packet.
model blazepose, max_people > 1: posegraph/pose/backends/blazepose_multi.py
    (`MultiBlazePose.track`; the detector runs every `detect_every` frames or when someone was lost).
model posenet / movenet-lightning / movenet-thunder / movenet-multipose:
    posegraph/pose/backends/posenet.py and movenet.py; COCO-17 keypoints.
model custom:PATH: a keypoint model trained with `runner.py train-keypoints`
    (posegraph/pose/backends/custom.py), on the BlazePose detector's person crops or the
    whole frame; its own keypoints: layout "coco17" when they are COCO-17's, else
    "custom:<names>" with "names" in the packet.

Packets (one person): BlazePose as posegraph/pose/packets.py (plus "score" and "box" on the
multi-person path); the other backends {"px": float32 k x 4 [x_px, y_px, 0, score], "norm":
float32 k x 4 [x / width, y / height, 0, score], "width", "height", "layout", "score": float,
"box": float32 [x0, y0, x1, y1]}, no "world" (`coco_packet`). "pts_ms" from the frame when
it has one.

max_people 1: the best person as that single-person packet (id 0, no "ids"). max_people > 1:
every person (at most max_people) gets an id >= 1 from a posegraph.pose.tracking.PeopleTracker
(BlazePose's own ROI track ids are hints to it), and the packet is posegraph.pose.people.merge
of them, lowest (oldest) id first.

State: tracking backends (LiteRTBlazePose, BlazePose, MultiBlazePose, MoveNet single pose's crop) and the
people tracker depend on the frames before, so each stream gets its own (`PoseStream`):
one tracker fed two cameras would carry one camera's people into the other's frames.
PoseNet, MoveNet MultiPose and custom models keep no state and one backend serves every
stream. `PoseEstimator` makes the first backend when it is created, so a missing model is
an error then rather than on the first frame.

The heavy imports (ai_edge_litert; mediapipe for blazepose-mediapipe only) happen when a
backend is made, so checking options (`check_model`) stays light.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from posegraph.pose.people import merge

MODELS = ("blazepose", "blazepose-mediapipe", "posenet", "movenet-lightning", "movenet-thunder", "movenet-multipose")
MEDIAPIPE = "blazepose-mediapipe"  # the reference: mp.solutions.pose, where mediapipe can be imported
CUSTOM = "custom:"
STATELESS = ("posenet", "movenet-multipose")  # and custom models: one frame at a time, nothing kept


def check_model(value: str) -> str | None:
    """A built-in model's name or custom:PATH (the file itself is checked when the backend is made)."""
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


@dataclass(frozen=True)
class PoseOptions:
    """Which model and how to run it; the `pose` kind's params have these names and defaults."""

    model: str = "blazepose"
    custom_precision: str = "float"
    custom_crop: str = "model"
    max_people: int = 1
    detect_every: int = 10
    max_missed: int = 15
    static_image_mode: bool = False
    model_complexity: int = 1
    smooth_landmarks: bool = True
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    posenet_input_size: int = 513
    posenet_output_stride: int = 16
    posenet_score_threshold: float = 0.5
    posenet_pose_threshold: float = 0.15
    posenet_nms_radius: float = 0.0
    posenet_flip: bool = False
    posenet_decoder: str = "multi"
    movenet_pose_threshold: float = 0.25
    threads: int = 1

    @property
    def single_person_graph(self) -> bool:
        """BlazePose's single-person tracked graph (LiteRT, or MediaPipe's own): its backend's
        detect() gives the packet itself."""
        return self.model == MEDIAPIPE or (self.model == "blazepose" and self.max_people == 1)

    @property
    def mediapipe_graph(self) -> bool:
        """model blazepose-mediapipe: MediaPipe's own single-person graph (mp.solutions.pose)."""
        return self.model == MEDIAPIPE

    @property
    def stateless(self) -> bool:
        """One backend can serve every stream (it keeps nothing between frames)."""
        return self.model in STATELESS or self.model.startswith(CUSTOM)


class EstimatorError(Exception):
    """A backend that cannot be made (missing model file, bad option); `option` names the
    PoseOptions field at fault. str() is one line."""

    def __init__(self, message: str, option: str):
        super().__init__(message)
        self.option = option


def make_backend(options: PoseOptions):
    """A new backend for `options` (the backends' own errors pass through)."""
    threads, static = int(options.threads), bool(options.static_image_mode)
    if options.model.startswith(CUSTOM):
        from posegraph.pose.backends.custom import CustomPose

        crop = options.custom_crop
        return CustomPose(options.model[len(CUSTOM):].strip(), precision=options.custom_precision,
                          crop=None if crop == "model" else crop, max_people=int(options.max_people),
                          min_detection_confidence=options.min_detection_confidence, threads=threads)
    if options.mediapipe_graph:
        if options.max_people != 1:
            raise ValueError(f"model {MEDIAPIPE} follows one person: max_people must be 1 "
                             f"(model blazepose follows several)")
        from posegraph.pose.backends.blazepose import BlazePose, mediapipe_dir

        mediapipe_dir()  # ModuleNotFoundError, saying what to install, before anything else
        return BlazePose(static_image_mode=static, model_complexity=options.model_complexity,
                         smooth_landmarks=options.smooth_landmarks,
                         min_detection_confidence=options.min_detection_confidence,
                         min_tracking_confidence=options.min_tracking_confidence)
    if options.single_person_graph:
        from posegraph.pose.backends.blazepose_litert import LiteRTBlazePose

        return LiteRTBlazePose(static_image_mode=static, model_complexity=options.model_complexity,
                               smooth_landmarks=options.smooth_landmarks,
                               min_detection_confidence=options.min_detection_confidence,
                               min_tracking_confidence=options.min_tracking_confidence, threads=threads)
    if options.model == "blazepose":
        from posegraph.pose.backends.blazepose_multi import MultiBlazePose

        return MultiBlazePose(max_people=int(options.max_people), min_detection_confidence=options.min_detection_confidence,
                              min_presence=options.min_tracking_confidence, model_complexity=options.model_complexity,
                              detect_every=options.detect_every, threads=threads)
    if options.model == "posenet":
        from posegraph.pose.backends.posenet import PoseNet

        radius = float(options.posenet_nms_radius)
        return PoseNet(input_size=options.posenet_input_size, output_stride=options.posenet_output_stride,
                       decoder=options.posenet_decoder, score_threshold=options.posenet_score_threshold,
                       pose_threshold=options.posenet_pose_threshold, nms_radius=radius if radius > 0 else None,
                       flip=options.posenet_flip, max_poses=int(options.max_people), num_threads=threads)
    from posegraph.pose.backends.movenet import MoveNet, MoveNetMultiPose

    if options.model == "movenet-multipose":
        return MoveNetMultiPose(pose_threshold=options.movenet_pose_threshold,
                                max_poses=min(6, int(options.max_people)), num_threads=threads)
    return MoveNet(options.model.split("-")[1], crop=True, track=not static,
                   min_pose_score=options.movenet_pose_threshold, num_threads=threads)


def open_backend(options: PoseOptions):
    """`make_backend`, its errors as EstimatorError naming the option at fault."""
    problem = check_model(options.model)
    if problem:
        raise EstimatorError(problem, "model")
    if options.model.startswith(CUSTOM):
        from posegraph.pose.backends.custom import CustomModelError

        try:
            return make_backend(options)
        except CustomModelError as exc:
            raise EstimatorError(str(exc), "model") from exc
    if options.model in ("blazepose", MEDIAPIPE):
        from posegraph.pose.backends.blazepose import ModelMissingError

        try:
            return make_backend(options)
        except ModelMissingError as exc:  # the person detector is no param's fault but the model's
            raise EstimatorError(str(exc), "model" if "pose_detection" in str(exc) else "model_complexity") from exc
        except ModuleNotFoundError as exc:
            if not options.mediapipe_graph:
                raise
            raise EstimatorError(f"model {MEDIAPIPE} needs the mediapipe package (mediapipe==0.10.21, Python 3.9-3.12), "
                                 f"which cannot be imported here ({exc}); model blazepose runs the same models "
                                 f"without it", "model") from exc
        except ValueError as exc:
            raise EstimatorError(str(exc), "max_people" if "max_people" in str(exc) else "model") from exc
    try:
        return make_backend(options)
    except FileNotFoundError as exc:
        raise EstimatorError(str(exc), "model") from exc
    except ValueError as exc:  # e.g. a posenet_input_size that is not 16k+1
        text = str(exc)
        option = ("posenet_input_size" if "input_size" in text else
                  "posenet_output_stride" if "output_stride" in text else "model")
        raise EstimatorError(text, option) from exc


class PoseStream:
    """One stream's pose estimation: its backend (its own, or the shared stateless one) and,
    with max_people > 1, its people tracker. `close()` closes the backend it owns."""

    def __init__(self, options: PoseOptions, backend, owns_backend: bool = True):
        self.options, self.backend, self.owns_backend = options, backend, owns_backend
        self.people = None
        if options.max_people > 1:
            from posegraph.pose.tracking import PeopleTracker

            self.people = PeopleTracker(max_missed=int(options.max_missed))

    def find_people(self, image: np.ndarray) -> list[tuple[dict, np.ndarray, object]]:
        """[(single-person packet, keypoints (n, 3) x, y, score, the backend's own track id or None)],
        best first (the backend's order), at most max_people."""
        backend, found = self.backend, []
        if self.options.model == "blazepose":
            people = backend.detect(image) if self.options.static_image_mode else backend.track(image)
            for p in people:
                packet = p.packet()
                packet["score"] = float(p.score)
                packet["box"] = np.asarray(p.box, np.float32)
                found.append((packet, p.px[:, (0, 1, 3)], p.track_id if p.track_id >= 0 else None))
        else:
            height, width = image.shape[:2]
            layout, names = getattr(backend, "layout", "coco17"), getattr(backend, "names", None)
            for p in backend.run(image):
                found.append((coco_packet(p, width, height, layout, names), np.asarray(p["keypoints"]), None))
        return found[: self.options.max_people]

    def landmarks(self, image: np.ndarray, pts_ms: float | None = None) -> dict | None:
        """The landmarks packet of one frame (see the module doc); None when nobody is found."""
        if self.options.single_person_graph:
            packet = self.backend.detect(image)
            if packet is not None and pts_ms is not None:
                packet["pts_ms"] = pts_ms  # the source's clock: temporal models need it
            return packet
        found = self.find_people(image)
        if self.people is not None:  # updated on empty frames too: misses count
            ids = self.people.update([p["box"] for p, _, _ in found], [k for _, k, _ in found], [h for _, _, h in found])
        else:
            ids = [0] * len(found)  # found holds at most max_people = 1
        if not found:
            return None
        if pts_ms is not None:
            for packet, _, _ in found:
                packet["pts_ms"] = pts_ms
        return merge(sorted(zip(ids, (packet for packet, _, _ in found)), key=lambda item: item[0]))

    def close(self) -> None:
        backend, self.backend = self.backend, None
        if self.owns_backend and backend is not None and hasattr(backend, "close"):
            backend.close()


class PoseEstimator:
    """The backends of one model for any number of streams: `new_stream()` gives each stream
    its `PoseStream`. The first backend is made here (EstimatorError when it cannot be) and
    goes to the first stream, or serves every stream when the model is stateless."""

    def __init__(self, options: PoseOptions):
        self.options = options
        first = open_backend(options)
        self.shared = first if options.stateless else None
        self.spare = None if options.stateless else first

    def new_stream(self) -> PoseStream:
        if self.shared is not None:
            return PoseStream(self.options, self.shared, owns_backend=False)
        backend, self.spare = self.spare, None
        return PoseStream(self.options, backend if backend is not None else make_backend(self.options))

    def close(self) -> None:
        """Close the backends not handed to a stream (each PoseStream closes its own)."""
        backends, self.shared, self.spare = (self.shared, self.spare), None, None
        for backend in backends:
            if backend is not None and hasattr(backend, "close"):
                backend.close()


_ESTIMATORS: dict[PoseOptions, PoseEstimator] = {}


def estimate(image, model: str = "blazepose", **options) -> dict | None:
    """The landmarks packet of the people in one image, with no graph: `px` (n x 4 pixels
    x, y, z, visibility), `norm`, `world` (BlazePose: metres), `layout`, ... as the `pose`
    node sends it (several people: `max_people=N`, posegraph.pose.people); None when
    nobody is found.

    `image` is a BGR array (as OpenCV reads it) or an image file's path; `options` are
    the `pose` kind's params (PoseOptions). Each image is taken on its own (no tracking
    across calls); the model is loaded on the first call and kept for the next ones."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        import cv2

        path = image
        image = cv2.imread(str(path))
        if image is None:
            raise FileNotFoundError(f"cannot read an image from {path!r}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 H x W x 3 BGR array, not {image.dtype} {image.shape}")
    settings = PoseOptions(model=model, **{"static_image_mode": True, **options})
    estimator = _ESTIMATORS.get(settings)
    if estimator is None:
        estimator = _ESTIMATORS[settings] = PoseEstimator(settings)
    stream = estimator.new_stream() if settings.stateless else getattr(estimator, "_stream", None)
    if stream is None:
        stream = estimator._stream = estimator.new_stream()
    return stream.landmarks(np.ascontiguousarray(image))
