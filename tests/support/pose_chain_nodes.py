"""User node kinds for the pose-chain graph test: a landmarks source and a recording sink.

`SquatLandmarks` replays Google's reference landmarks of pose_squats.mp4 (65 frames x 33 x
(x, y, z) in pixels, 720 x 1280) as landmarks packets (posegraph/pose/packets.py), with chosen frames
sent empty (no person), so embed -> knn -> smooth -> reps can run in a real graph without
the pose model. `Record` writes one JSON line per packet of what reached it.
"""
import json
from pathlib import Path

import numpy as np

from posegraph import EndOfStream, Node, Param

ROOT = Path(__file__).resolve().parents[2]
SQUATS = ROOT / "data" / "google_pose_reference" / "pose_squats.full.json"
WIDTH, HEIGHT = 720, 1280


def squat_packets(gaps=()):
    """The landmarks packets the source emits, in order (None for the frames in `gaps`)."""
    frames = np.asarray(json.loads(SQUATS.read_text()), dtype=np.float32)
    packets = []
    for i, xyz in enumerate(frames):
        if i in gaps:
            packets.append(None)
            continue
        px = np.concatenate([xyz, np.ones((33, 1), np.float32)], axis=1)
        norm = px / np.array([WIDTH, HEIGHT, WIDTH, 1], np.float32)
        packets.append({"px": px, "norm": norm, "world": np.zeros((33, 4), np.float32),
                        "width": WIDTH, "height": HEIGHT, "layout": "blazepose33"})
    return packets


class SquatLandmarks(Node):
    OUTPUTS = {"landmarks": "landmarks packet or None"}
    PARAMS = {"gaps": Param([], type=list, help="frame numbers sent as 'no person'"),
              "fps": Param(5.0, min=0.1, help="capture times are index / fps")}
    STATEFUL = True

    def open(self, ctx):
        self.packets = squat_packets(set(self.params["gaps"]))

    def process(self, inputs, ctx):
        if ctx.seq >= len(self.packets):
            raise EndOfStream
        ctx.capture_ns = 1_000_000_000 + int(ctx.seq * 1e9 / self.params["fps"])
        return {"landmarks": self.packets[ctx.seq]}


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Record(Node):
    INPUTS = {"votes": "votes", "scores": "scores", "reps": "reps"}
    PARAMS = {"path": Param("")}
    STATEFUL = True

    def open(self, ctx):
        self.out = open(self.params["path"], "a", buffering=1)

    def process(self, inputs, ctx):
        self.out.write(json.dumps({"seq": ctx.seq, **{k: _plain(v) for k, v in inputs.items()}}) + "\n")
        return None

    def close(self):
        self.out.close()
