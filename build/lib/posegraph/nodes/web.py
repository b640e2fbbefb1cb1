"""`web`: the live view of any running graph, in a browser (posegraph.webapp.live).

While the graph runs, http://HOST:PORT/ shows the annotated stream(s) as MJPEG, the
runner's per-node metrics table and the graph drawn as a picture; the URLs are listed in
posegraph.webapp.live. The server runs in this node's own process, from a daemon thread,
so a slow browser never holds up the graph: `process` only hands the frame over.
"""
from __future__ import annotations

from posegraph.pose.drawing import frame_parts, image_problem
from posegraph.webapp.live import ListenError, LiveView

from posegraph import Node, NodeOpenError, Param


class Web(Node):
    """Live view in a browser: MJPEG of every stream, the per-node metrics, the graph.

    Open http://HOST:PORT/ while the graph runs. One <img> per stream when several streams
    reach the node. JPEGs are made at most `max_fps` times a second per stream (0: every
    frame); frames between are skipped for the view only (counted as `view_skipped`). A
    port already in use stops the graph at open with a one-line error. No authentication:
    keep `host` on 127.0.0.1 unless the network is yours.
    """

    INPUTS = {"frame": "frame packet {'image', 'pts_ms', 'index'} (or a bare uint8 image), e.g. render/frame"}
    PORT_TYPES = {"in:frame": ("frame", "image")}
    PARAMS = {
        "port": Param(8090, min=0, max=65535, help="TCP port of the page (0: any free port, logged at open)"),
        "host": Param("127.0.0.1", help="address to listen on; 0.0.0.0 shows the page to the network (no authentication)"),
        "quality": Param(80, min=1, max=100, help="JPEG quality"),
        "max_fps": Param(15.0, min=0.0, max=1000.0, help="JPEGs per second per stream at most; 0: every frame"),
    }
    STATEFUL = True  # one process serves the page

    def open(self, ctx):
        self.view = None
        if ctx.replicas > 1:
            raise NodeOpenError(f"one process serves the page, so `web` cannot have replicas ({ctx.replicas} given); "
                                "remove `replicas`", field="replicas")
        names = [ctx.stream_names[s] for s in sorted(ctx.stream_names)] or [ctx.stream_name]
        port = self.params["port"]
        try:
            self.view = LiveView(self.params["host"], port, names, ctx.graph_file, self.params["max_fps"],
                                 self.params["quality"], metrics=ctx.graph_metrics, log=ctx.log)
        except ListenError as exc:
            hint = f", e.g. --set {ctx.node_id}.port={port + 1 if port < 65535 else 8091}" if exc.in_use else ""
            raise NodeOpenError(f"{exc}{hint}", field=f"params.{exc.param}") from None
        ctx.log(f"live view at {self.view.url}")

    def process(self, inputs, ctx):
        image, _, _ = frame_parts(inputs["frame"])
        if image is None:
            ctx.count("empty_frames")
            return None
        if image_problem(image):
            ctx.count("bad_frames")
            return None
        not_shown = self.view.offer(ctx.stream_name, ctx.seq, image)
        if not_shown:
            ctx.count(not_shown)
        return None

    def close(self):
        if getattr(self, "view", None) is not None:
            self.view.close()
