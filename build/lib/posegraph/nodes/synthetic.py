"""`synthetic`: a source of uint8 frames that carry their own sequence numbers.

For tests and benchmarks: the first 8 bytes of every frame hold its sequence number
(little-endian uint64), so a sink can prove each frame arrived intact and in order.
"""
import time

import numpy as np

from posegraph import EndOfStream, Node, Param


def write_stamp(frame: np.ndarray, seq: int) -> None:
    frame.reshape(-1)[:8].view(np.uint64)[0] = seq


def read_stamp(frame: np.ndarray) -> int | None:
    """The sequence number a synthetic frame carries, or None for other packets."""
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.size >= 8 and frame.flags.c_contiguous):
        return None
    return int(frame.reshape(-1)[:8].view(np.uint64)[0])


class Synthetic(Node):
    OUTPUTS = {"frame": "uint8 image, height x width x 3, sequence number in its first 8 bytes"}
    PORT_TYPES = {"out:frame": "image"}
    PARAMS = {
        "width": Param(640, min=8, max=7680, help="frame width in pixels"),
        "height": Param(480, min=1, max=4320, help="frame height in pixels"),
        "count": Param(100, min=0, help="frames to emit; 0 means no end"),
        "fps": Param(0.0, min=0.0, max=10000.0, help="frames per second; 0 means as fast as possible"),
        "live": Param(True, help="stand in for a camera: a `latest` queue downstream may drop stale frames "
                                 "(false: a file, every frame kept)"),
    }
    STATEFUL = True

    def open(self, ctx):
        self.shape = (self.params["height"], self.params["width"], 3)
        self.period = 1.0 / self.params["fps"] if self.params["fps"] > 0 else 0.0
        self.next_time = time.monotonic()
        ctx.live = self.params["live"]

    def process(self, inputs, ctx):
        count = self.params["count"]
        if count and ctx.seq >= count:
            raise EndOfStream
        if self.period:
            delay = self.next_time - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.next_time = max(self.next_time + self.period, time.monotonic() - self.period)
        frame = ctx.alloc("frame", self.shape, np.uint8)
        write_stamp(frame, ctx.seq)
        ctx.capture_ns = time.time_ns()
        return {"frame": frame}
