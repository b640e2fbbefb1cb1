"""A source for the render and sink tests: the bundled squats clip with its reference pose.

Why: the capture, pose and classifier nodes are written in parallel, so the tests of
`render` and the sinks feed them from one self-contained source whose every packet is
known: frames of pose_squats.mp4, landmarks from pose_squats.full.json (visibility 1.0)
and made-up votes, scores and repetitions that cycle every 16 frames.
"""
import json
import math
from pathlib import Path

import numpy as np

from posegraph import EndOfStream, Node, Param

DATA = Path(__file__).resolve().parents[2] / "data" / "google_pose_reference"
CLASSES = ("squats_down", "squats_up")


def votes_at(seq: int) -> int:
    """Votes for squats_down out of 10 at frame `seq` (a cosine cycle of 16 frames)."""
    return int(round(10 * (0.5 - 0.5 * math.cos(2 * math.pi * seq / 16))))


class ClipSource(Node):
    """Emits frame, landmarks, votes, scores and reps packets for every frame of the clip.

    Frames listed in `no_person` have empty landmarks, votes and scores; frames listed in
    `empty_frames` have an empty frame packet (the other packets are still sent).
    """

    OUTPUTS = {"frame": "frame packet", "landmarks": "landmarks packet", "votes": "votes packet",
               "scores": "scores packet", "reps": "reps packet"}
    PARAMS = {
        "video": Param(str(DATA / "pose_squats.mp4")),
        "landmarks": Param(str(DATA / "pose_squats.full.json")),
        "no_person": Param([], type=list, help="frames without a person"),
        "empty_frames": Param([], type=list, help="frames whose frame packet is empty"),
    }
    STATEFUL = True

    def open(self, ctx):
        import cv2

        self.capture = cv2.VideoCapture(self.params["video"])
        self.cv2 = cv2
        self.points = np.array(json.loads(Path(self.params["landmarks"]).read_text()), dtype=np.float32)
        self.no_person = set(self.params["no_person"])
        self.empty = set(self.params["empty_frames"])
        self.scores = dict.fromkeys(CLASSES, 0.0)
        self.reps, self.down = 0, False

    def process(self, inputs, ctx):
        ok, image = self.capture.read()
        if not ok:
            raise EndOfStream
        seq = ctx.seq
        pts = self.capture.get(self.cv2.CAP_PROP_POS_MSEC)
        height, width = image.shape[:2]
        out = {}
        if seq not in self.empty:
            frame = ctx.alloc("frame", image.shape, np.uint8, name="image")
            np.copyto(frame, image)
            out["frame"] = {"image": frame, "pts_ms": float(pts), "index": seq}
        down = votes_at(seq)
        if not self.down and down >= 8:
            self.reps += 1
        self.down = down >= 8 if not self.down else down > 2
        if seq not in self.no_person:
            px = np.concatenate([self.points[seq], np.ones((33, 1), np.float32)], axis=1)
            norm = px / np.array([width, height, width, 1.0], np.float32)
            out["landmarks"] = {"px": px, "norm": norm, "world": np.zeros((33, 4), np.float32),
                                "width": width, "height": height, "layout": "blazepose33"}
            votes = {"squats_down": down, "squats_up": 10 - down}
            for name in CLASSES:
                self.scores[name] = 0.5 * self.scores[name] + 0.5 * votes[name]
            out["votes"] = {"votes": votes}
            out["scores"] = {"scores": dict(self.scores)}
        out["reps"] = {"reps": {"squats_down": self.reps}, "class": "squats_down", "entered": self.down}
        return out

    def close(self):
        if getattr(self, "capture", None) is not None:
            self.capture.release()
