"""Two people side by side, made from the bundled squats clip, for tests/nodes/test_per_person.py.

The clip (pose_squats.mp4, 65 frames, 720 x 1280) with Google's reference landmarks
(pose_squats.full.json) becomes a two-person scene: frame i of the scene is frame i of the
clip on the left (person 1) next to frame max(0, i - SHIFT) on the right (person 2, the
same woman 20 frames behind), 1440 x 1280. `stacked_frames` makes the images,
`person_packet` / `two_people` the landmarks packets (people.merge of the two
single-person packets, ids 1 and 2), and `TwoPeople` replays them in a graph, optionally
with the frames of a video written by the test.
"""
import json
from pathlib import Path

import numpy as np

from posegraph import EndOfStream, Node, Param

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "google_pose_reference"
CLIP = DATA / "pose_squats.mp4"
SQUATS = DATA / "pose_squats.full.json"
WIDTH, HEIGHT, FRAMES, SHIFT = 720, 1280, 65, 20
SCENE_WIDTH = 2 * WIDTH
IDS = (1, 2)


def clip_points() -> np.ndarray:
    """(65, 33, 4) float32 [x_px, y_px, z_px, visibility 1] of the clip."""
    xyz = np.asarray(json.loads(SQUATS.read_text()), dtype=np.float32)
    return np.concatenate([xyz, np.ones(xyz.shape[:2] + (1,), np.float32)], axis=2)


def source_frame(person: int, i: int) -> int:
    """The clip's frame person 1 or 2 shows at scene frame i."""
    return i if person == 1 else max(0, i - SHIFT)


def person_packet(person: int, i: int, layout: str = "blazepose33", width: int = SCENE_WIDTH) -> dict:
    """Person 1 or 2's single-person landmarks packet at scene frame i, in scene pixels
    (person 2 moved right by the clip's width). layout "coco17": the 17 COCO points of the
    same landmarks (posegraph/pose/landmarks.py), no world, as a COCO-17 pose model gives them."""
    px = clip_points()[source_frame(person, i)].copy()
    if person == 2:
        px[:, 0] += WIDTH
    packet = {"px": px, "norm": px / np.array([width, HEIGHT, width, 1], np.float32),
              "world": np.zeros((33, 4), np.float32), "width": width, "height": HEIGHT,
              "layout": "blazepose33", "pts_ms": i * 200.0}
    if layout == "coco17":
        from posegraph.pose.landmarks import BLAZEPOSE_TO_COCO

        packet = {"px": px[BLAZEPOSE_TO_COCO], "norm": packet["norm"][BLAZEPOSE_TO_COCO], "width": width,
                  "height": HEIGHT, "layout": "coco17", "pts_ms": packet["pts_ms"]}
    xy = packet["px"][:, :2]
    packet["box"] = np.concatenate([xy.min(axis=0), xy.max(axis=0)]).astype(np.float32)
    packet["score"] = 0.9 if person == 1 else 0.8
    return packet


def two_people(people=IDS, layout: str = "blazepose33", gaps: dict | None = None) -> list:
    """The scene's landmarks packets, frame by frame: people.merge of the chosen people's
    packets (a person is left out on the frames gaps[person] lists); None when nobody."""
    from posegraph.pose.people import merge

    gaps = gaps or {}
    return [merge([(p, person_packet(p, i, layout)) for p in people if i not in gaps.get(p, ())])
            for i in range(FRAMES)]


def stacked_frames():
    """The scene's images, one at a time: clip frame i beside clip frame max(0, i - SHIFT)."""
    import cv2

    capture = cv2.VideoCapture(str(CLIP))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    assert len(frames) == FRAMES, len(frames)
    for i in range(FRAMES):
        yield np.hstack([frames[source_frame(1, i)], frames[source_frame(2, i)]])


def write_scene(path) -> Path:
    """The two-person clip as an mp4 (mp4v, 5 frames/s like the original's timestamps)."""
    import cv2

    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (SCENE_WIDTH, HEIGHT))
    assert writer.isOpened()
    for image in stacked_frames():
        writer.write(image)
    writer.release()
    return path


class TwoPeople(Node):
    """Replays two_people(people, layout, gaps) as landmarks, and with `video` the frames
    of that file (else no frame packets)."""

    OUTPUTS = {"landmarks": "landmarks packet, one or several people", "frame": "frame packet"}
    PARAMS = {"people": Param([1, 2], type=list, help="person ids to emit (1 and/or 2)"),
              "layout": Param("blazepose33", choices=("blazepose33", "coco17")),
              "gaps": Param({}, type=dict, help="{person id: [frames where they are not found]}"),
              "video": Param("", help="video whose frames go out on `frame`; empty: none")}
    STATEFUL = True

    def open(self, ctx):
        gaps = {int(k): set(v) for k, v in self.params["gaps"].items()}
        self.packets = two_people(tuple(self.params["people"]), self.params["layout"], gaps)
        self.capture = None
        if self.params["video"]:
            import cv2

            self.capture = cv2.VideoCapture(self.params["video"])

    def process(self, inputs, ctx):
        if ctx.seq >= len(self.packets):
            raise EndOfStream
        ctx.capture_ns = 1_000_000_000 + ctx.seq * 200_000_000
        out = {"landmarks": self.packets[ctx.seq]}
        if self.capture is not None:
            ok, image = self.capture.read()
            if ok:
                frame = ctx.alloc("frame", image.shape, np.uint8, name="image")
                np.copyto(frame, image)
                out["frame"] = {"image": frame, "pts_ms": ctx.seq * 200.0, "index": ctx.seq}
        return out

    def close(self):
        if getattr(self, "capture", None) is not None:
            self.capture.release()
