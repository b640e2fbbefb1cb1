"""`smooth` (EMA over class votes) and `one_euro` (landmark filter): posegraph.pose.smoothing per person."""
from __future__ import annotations

from posegraph.pose.people import BY_PERSON
from posegraph.pose.smoothing import EmaDictSmoothing, LandmarksFilter

from posegraph import Node, Param


class Smooth(Node):
    """Votes -> EMA-smoothed scores (same scale as the votes: 0..top_n_by_mean).

    One window per person of each stream: with several cameras, or several people in one
    camera, a shared window would average one person's votes into another's. A frame
    without the person still ages their window.
    """

    INPUTS = {"votes": "votes packet of knn, one or several people; None when no person"}
    OUTPUTS = {"scores": "{'scores': {class: smoothed votes}}, per person; None when no person"}
    PORT_TYPES = {"in:votes": "votes", "out:scores": "scores"}
    PARAMS = {
        "window": Param(10, min=1, max=10000, help="frames in the averaging window"),
        "alpha": Param(0.2, min=0.0, max=1.0, help="weight decay per frame back: (1 - alpha)^k"),
    }
    KEYS = BY_PERSON

    def new_state(self):
        return EmaDictSmoothing(self.params["window"], self.params["alpha"])

    def process(self, inputs, ctx):
        packet = inputs["votes"]
        if packet is None:
            ctx.state({})  # a frame without the person still ages the window
            return {}
        scores = ctx.state(packet.get("votes") or {})
        if scores:
            ctx.status(max(scores, key=scores.get))  # the class as it forms, in the runner's live table
        return {"scores": {"scores": scores}}


class OneEuro(Node):
    """Landmarks -> the same packet with px, norm and world One-Euro filtered
    (posegraph.pose.smoothing.LandmarksFilter), any layout.

    Filters and frame clock are kept per person of each stream: one camera's landmarks must
    not pull another's, and dt is the spacing of that stream's own frames, not of frames
    interleaved from other streams. A frame without the person resets their filter.
    Defaults are MediaPipe's pose landmark filter (min_cutoff 0.05 Hz, beta 80, d_cutoff 1 Hz).
    """

    INPUTS = {"landmarks": "landmarks packet, one or several people; None when no person"}
    OUTPUTS = {"landmarks": "the landmarks packet, filtered, per person; None when no person"}
    PORT_TYPES = {"in:landmarks": "landmarks", "out:landmarks": "landmarks"}
    PARAMS = {
        "min_cutoff": Param(0.05, min=1e-6, help="cutoff (Hz) when still: lower = smoother, more lag"),
        "beta": Param(80.0, min=0.0, help="cutoff increase per unit of speed (body sizes / s): higher = less lag"),
        "d_cutoff": Param(1.0, min=1e-6, help="cutoff (Hz) of the speed estimate"),
        "fps": Param(0.0, min=0.0, help="fixed frame rate for dt; 0: use the capture times"),
    }
    KEYS = BY_PERSON

    def new_state(self):
        p = self.params
        return LandmarksFilter(p["min_cutoff"], p["beta"], p["d_cutoff"], p["fps"])

    def process(self, inputs, ctx):
        landmarks = ctx.state(inputs["landmarks"], ctx.capture_ns)
        return {} if landmarks is None else {"landmarks": landmarks}
