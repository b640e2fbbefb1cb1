"""A node for the sink tests: it marks each frame of a real clip with its seq.

Why: to prove a restarted sink's file holds every frame once and in order, each frame must
say which it is even after mp4v or JPEG compression. A band across the top of the image
carries the seq in binary: BITS blocks side by side, white for a 1, black for a 0.
"""
import numpy as np

from posegraph import Node

BAND = 64   # rows
BITS = 8    # seqs 0..255


def stamp_of(image: np.ndarray) -> int:
    """The seq a stamped image carries (read back from a decoded frame)."""
    width = image.shape[1] // BITS
    blocks = [image[8:BAND - 8, i * width + 8:(i + 1) * width - 8].mean() for i in range(BITS)]
    return sum(1 << i for i, level in enumerate(blocks) if level > 127)


class Stamp(Node):
    INPUTS = {"frame": "frame packet"}
    OUTPUTS = {"frame": "the frame packet, its image's top band carrying the seq in binary"}
    STATEFUL = False

    def process(self, inputs, ctx):
        frame = inputs["frame"]
        if frame is None:
            return {}
        image = frame["image"]
        out = ctx.alloc("frame", image.shape, np.uint8, name="image")
        np.copyto(out, image)
        width = image.shape[1] // BITS
        for i in range(BITS):
            out[:BAND, i * width:(i + 1) * width] = 255 if ctx.seq >> i & 1 else 0
        return {"frame": dict(frame, image=out)}
