"""Helpers for tests/pose/test_dtw.py: real squat landmarks, made-up arm motions, a landmarks
source node and a recording sink.

`squat_points()` is Google's reference landmarks of pose_squats.mp4 (65 frames x 33 x
(x, y, z) pixels, 720 x 1280; three squats: frames ~0-20, 22-44, 50-64) with visibility 1.
`arm_motion(...)` keeps the standing pose of frame 22 and moves both arms (shoulder and
elbow angles over time): motions that look nothing like a squat. `Landmarks` replays
either as landmarks packets (posegraph/pose/packets.py), with chosen frames sent empty (no person);
`Record` writes one JSON line per packet it gets (null for an empty one).
"""
import json
from pathlib import Path

import numpy as np

from posegraph import EndOfStream, Node, Param

ROOT = Path(__file__).resolve().parents[2]
SQUATS = ROOT / "data" / "google_pose_reference" / "pose_squats.full.json"
WIDTH, HEIGHT = 720, 1280
L_SH, R_SH, L_EL, R_EL, L_WR, R_WR = 11, 12, 13, 14, 15, 16


def squat_points() -> np.ndarray:
    xyz = np.asarray(json.loads(SQUATS.read_text()), dtype=np.float32)
    return np.concatenate([xyz, np.ones((*xyz.shape[:2], 1), np.float32)], axis=2)


def arm_motion(shoulder_deg, elbow_deg, base_frame: int = 22) -> np.ndarray:
    """(T, 33, 4): the standing pose of `base_frame` with both arms set, frame by frame,
    to the given shoulder angles (0 arm down, 90 sideways, 180 up) and elbow angles
    (180 straight), in the image plane."""
    base = squat_points()[base_frame]
    frames = []
    for sh, el in zip(np.radians(shoulder_deg), np.radians(elbow_deg)):
        p = base.copy()
        for shoulder, elbow, wrist, side in ((L_SH, L_EL, L_WR, 1.0), (R_SH, R_EL, R_WR, -1.0)):
            upper = np.array([side * np.sin(sh), np.cos(sh)])
            turn = side * (np.pi - el)  # forearm: the upper arm's direction turned inwards
            fore = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]) @ upper
            p[elbow, :2] = p[shoulder, :2] + 120 * upper
            p[wrist, :2] = p[elbow, :2] + 110 * fore
        frames.append(p)
    return np.stack(frames).astype(np.float32)


def waving(frames: int = 30, phase: float = 0.0) -> np.ndarray:
    t = np.arange(frames)
    return arm_motion(np.full(frames, 170.0), 140 + 40 * np.sin(2 * np.pi * t / 10 + phase))


def arm_swing(frames: int = 30, phase: float = 0.0) -> np.ndarray:
    t = np.arange(frames)
    return arm_motion(90 + 30 * np.sin(2 * np.pi * t / 15 + phase), np.full(frames, 175.0))


def packet(px: np.ndarray) -> dict:
    px = np.asarray(px, np.float32)
    return {"px": px, "norm": px / np.array([WIDTH, HEIGHT, WIDTH, 1], np.float32),
            "world": np.zeros((33, 4), np.float32), "width": WIDTH, "height": HEIGHT, "layout": "blazepose33"}


class Landmarks(Node):
    """Replays squat_points() (clip "squat") or waving() (clip "waving", 65 frames)."""

    OUTPUTS = {"landmarks": "landmarks packet or None"}
    PARAMS = {"clip": Param("squat", choices=("squat", "waving")),
              "gaps": Param([], type=list, help="frame numbers sent as 'no person'")}
    STATEFUL = True

    def open(self, ctx):
        self.points = squat_points() if self.params["clip"] == "squat" else waving(65)
        self.gaps = set(self.params["gaps"])

    def process(self, inputs, ctx):
        if ctx.seq >= len(self.points):
            raise EndOfStream
        ctx.capture_ns = 1_000_000_000 + ctx.seq * 33_000_000
        return {"landmarks": None if ctx.seq in self.gaps else packet(self.points[ctx.seq])}


class Record(Node):
    INPUTS = {"votes": "votes packet of dtw"}
    PARAMS = {"path": Param("")}
    STATEFUL = True

    def open(self, ctx):
        self.out = open(self.params["path"], "w", buffering=1)

    def process(self, inputs, ctx):
        self.out.write(json.dumps({"seq": ctx.seq, "votes": inputs["votes"]}) + "\n")
        return None

    def close(self):
        if hasattr(self, "out"):
            self.out.close()
