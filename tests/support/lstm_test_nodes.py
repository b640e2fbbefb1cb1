"""User node kinds for the LSTM node's graph test: a landmarks source and a recording sink.

`SquatClip` replays Google's reference landmarks of pose_squats.mp4 (65 frames x 33 x
(x, y, z) in pixels, 720 x 1280, visibility 1, and its world landmarks) as landmarks packets
(posegraph/pose/packets.py), with
the frames listed in `gaps` sent empty (no person). `RecordVotes` writes one JSON line per
packet: {"seq": n, "votes": packet or null}.
"""
import json
from pathlib import Path

import numpy as np

from posegraph import EndOfStream, Node, Param

ROOT = Path(__file__).resolve().parents[2]
SQUATS = ROOT / "data" / "google_pose_reference" / "pose_squats.full.json"
SQUATS_3D = ROOT / "data" / "google_pose_reference" / "pose_squats_3d.full.json"
WIDTH, HEIGHT = 720, 1280


def _with_visibility(path: Path) -> np.ndarray:
    xyz = np.asarray(json.loads(path.read_text()), dtype=np.float32)
    return np.concatenate([xyz, np.ones(xyz.shape[:2] + (1,), np.float32)], axis=2)


def squat_points() -> np.ndarray:
    """(65, 33, 4) float32 [x_px, y_px, z_px, visibility = 1]."""
    return _with_visibility(SQUATS)


def squat_world() -> np.ndarray:
    """(65, 33, 4) float32 Google's world landmarks of the same frames [x, y, z metres, visibility = 1]."""
    return _with_visibility(SQUATS_3D)


class SquatClip(Node):
    OUTPUTS = {"landmarks": "landmarks packet or None"}
    PARAMS = {"gaps": Param([], type=list, help="frame numbers sent as 'no person'")}
    STATEFUL = True

    def open(self, ctx):
        self.points = squat_points()
        self.world = squat_world()
        self.gaps = set(self.params["gaps"])

    def process(self, inputs, ctx):
        if ctx.seq >= len(self.points):
            raise EndOfStream
        if ctx.seq in self.gaps:
            return {}
        px = self.points[ctx.seq]
        norm = px / np.array([WIDTH, HEIGHT, WIDTH, 1], np.float32)
        return {"landmarks": {"px": px, "norm": norm, "world": self.world[ctx.seq],
                              "width": WIDTH, "height": HEIGHT, "layout": "blazepose33"}}


class RecordVotes(Node):
    INPUTS = {"votes": "votes packet of the lstm node"}
    PARAMS = {"path": Param("")}
    STATEFUL = True

    def open(self, ctx):
        self.out = open(self.params["path"], "a", buffering=1)

    def process(self, inputs, ctx):
        self.out.write(json.dumps({"seq": ctx.seq, "votes": inputs["votes"]}) + "\n")
        return None

    def close(self):
        self.out.close()
