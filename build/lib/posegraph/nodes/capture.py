"""`capture`: frames from a webcam, a video file, a folder of images or a stream URL.

Reading is posegraph.pose.media.Frames. Frames are decoded straight into the node's
shared-memory output slots (OpenCV writes into the array it is given), so a 720p frame
costs one decode and no copy on its way to the pose node. A source that cannot be opened
stops the graph at start with a one-line error naming it; a file that ends early
(truncated or corrupt) ends the stream cleanly with a warning instead of hanging.
"""
from __future__ import annotations

import time

import numpy as np
from posegraph.pose.media import Frames, SourceError
from posegraph.pose.paths import resolve_path

from posegraph import EndOfStream, Node, NodeOpenError, Param


class Capture(Node):
    OUTPUTS = {"frame": "{'image': uint8 HxWx3 BGR, 'pts_ms': source timestamp, 'index': frame number}"}
    PORT_TYPES = {"out:frame": "frame"}
    PARAMS = {
        "source": Param(0, type=(int, str), help="webcam index, video file, folder of images, or rtsp/http URL"),
        "fps": Param(0.0, min=0.0, max=1000.0, help="target frames per second; 0: as fast as the graph takes them (files) or the device's rate. "
                                                     "A file paced at fps > 0 is live: a `latest` queue may drop its stale frames"),
        "width": Param(0, min=0, max=7680, help="resize to this width (0 keeps; with height 0 the aspect is kept)"),
        "height": Param(0, min=0, max=4320, help="resize to this height (0 keeps; with width 0 the aspect is kept)"),
        "flip": Param(False, help="mirror horizontally (selfie view)"),
        "skip": Param(0, min=0, max=1000, help="after each frame emitted, skip this many"),
        "loop": Param(False, help="start a file or folder again at its end"),
        "timeout_ms": Param(10000, min=100, max=600000, help="open/read timeout for stream URLs"),
    }
    STATEFUL = True

    def open(self, ctx):
        p = self.params
        source = p["source"]
        if isinstance(source, str) and not source.isdigit() and "://" not in source:
            found = resolve_path(source, ctx.graph_file)  # here, beside the graph, or the bundled clip
            source = str(found) if found.exists() else source
        try:
            self.frames = Frames(source, p["fps"], p["width"], p["height"], p["flip"], p["skip"], p["loop"],
                                 p["timeout_ms"])
        except SourceError as exc:
            hint = (f"; to run this graph on a file (every frame kept): --set {ctx.node_id}.source=path/to/video.mp4, "
                    "or: posegraph run path/to/video.mp4") if exc.kind == "camera" else ""
            raise NodeOpenError(f"{exc}{hint}" if exc.param == "source" else str(exc), field=f"params.{exc.param}") from None
        ctx.live = self.frames.live  # a file's frames are all kept; a camera's stale ones may be dropped
        self.started = False

    def process(self, inputs, ctx):
        if not self.started:
            self.started = True
            if ctx.seq:  # restarted mid-stream (alone or with its machine): continue where the stream stands
                ctx.log(f"resuming at frame {self.frames.resume(ctx.seq)}")
        out = ctx.alloc("frame", self.frames.shape, np.uint8, name="image")
        got = self.frames.read(out)
        if got is None:
            for counter, message in self.frames.end_report():
                ctx.log(f"warning: {message}")
                if counter:
                    ctx.count(counter)
            raise EndOfStream
        pts_ms, index = got
        ctx.capture_ns = time.time_ns()
        progress = self.frames.progress()
        if progress:
            ctx.progress(*progress)
        return {"frame": {"image": out, "pts_ms": pts_ms, "index": index}}

    def close(self):
        if hasattr(self, "frames"):
            self.frames.close()
