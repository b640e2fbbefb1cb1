"""A sink for the capture tests: records what each frame packet carries."""
import json

import numpy as np

from posegraph import Node, Param


class FrameProbe(Node):
    """Writes shape, timestamps and a few pixel sums per frame, to compare with OpenCV's own reading."""

    INPUTS = {"frame": "frame packet"}
    PARAMS = {"record": Param("")}
    STATEFUL = True

    def open(self, ctx):
        self.out = open(self.params["record"], "w", buffering=1)

    def process(self, inputs, ctx):
        frame = inputs["frame"]
        image = frame["image"]
        self.out.write(json.dumps({
            "seq": ctx.seq, "shape": list(image.shape), "pts_ms": frame["pts_ms"], "index": frame["index"],
            "left": int(image[:, : image.shape[1] // 2].astype(np.int64).sum()),
            "right": int(image[:, image.shape[1] // 2:].astype(np.int64).sum()),
        }) + "\n")

    def close(self):
        self.out.close()
