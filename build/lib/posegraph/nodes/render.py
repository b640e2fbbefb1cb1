"""`render`: draws the pose and what the classifiers concluded onto a copy of each frame.

What it draws is posegraph.pose.drawing.Overlay: the skeleton of the landmarks (one or
several people, any known or custom layout), a panel with the current class, a bar per
class and the repetition counts, a box and tag per person, and (`show_fps`) the frames
per second of every node of the graph (ctx.graph_fps(), the runner's table: a node's rate
shows once it is measured, nothing before it; counter `fps_shown` counts the frames that
showed rates).

Why a node of its own: drawing costs a few ms, and kept apart it runs in parallel with
the pose model instead of adding to its latency. It writes into a shared-memory buffer
from ctx.alloc (one copy of the input frame, no other per-frame image allocation) and
never touches its inputs, which are read-only views of other nodes' memory. An empty
frame packet gives an empty output packet (the sinks decide what an empty frame means).
"""
from __future__ import annotations

import numpy as np
from posegraph.pose.drawing import Overlay, copy_bgr, frame_parts, image_problem

from posegraph import Node, Param


class Render(Node):
    INPUTS = {
        "frame": "frame packet {'image', 'pts_ms', 'index'} (or a bare uint8 image)",
        "landmarks": "landmarks packet {'px': 33 x 4 [x_px, y_px, z, visibility], ...} or None",
        "votes": "{'votes': {class: count of the top 10}} or None",
        "scores": "{'scores': {class: smoothed votes}} or None",
        "reps": "{'reps': {class: count}, 'class': name, 'entered': bool}",
    }
    OPTIONAL_INPUTS = frozenset({"landmarks", "votes", "scores", "reps"})
    OUTPUTS = {"frame": "annotated frame packet {'image': uint8 H x W x 3 BGR, 'pts_ms', 'index'}"}
    PORT_TYPES = {"in:frame": ("frame", "image"), "in:landmarks": "landmarks", "in:votes": "votes", "in:scores": "scores",
                  "in:reps": "reps", "out:frame": "frame"}
    PARAMS = {
        "visibility_threshold": Param(0.5, min=0.0, max=1.0, help="landmarks less visible than this are not drawn"),
        "max_score": Param(10.0, min=0.001, help="what a full bar means: scores are counts out of the KNN's top 10"),
        "show_fps": Param(True, help="draw every node's frames per second in the bottom-left corner"),
        "scale": Param(1.0, min=0.25, max=4.0, help="size of text and lines relative to the automatic size"),
    }
    # the overlay remembers only the class names seen per stream (for stable bars): not
    # worth forbidding replicas for
    STATEFUL = False

    def open(self, ctx):
        self.overlay = Overlay(self.params["visibility_threshold"], self.params["max_score"], self.params["scale"])

    def process(self, inputs, ctx):
        image, pts_ms, index = frame_parts(inputs.get("frame"))
        if image is None:
            return {}
        problem = image_problem(image)
        if problem:
            ctx.warn_once("bad_frames", problem)
            return {}
        out = ctx.alloc("frame", image.shape[:2] + (3,), np.uint8, name="image")
        copy_bgr(image, out)
        fps = ctx.graph_fps() if self.params["show_fps"] else None
        for counter, message in self.overlay.draw(out, inputs, ctx.stream, fps):
            ctx.warn_once(counter, message)
        if self.overlay.fps_drawn:
            ctx.count("fps_shown")  # frames whose overlay showed measured rates (none before they are known)
        return {"frame": {"image": out, "pts_ms": pts_ms, "index": ctx.seq if index is None else index}}
