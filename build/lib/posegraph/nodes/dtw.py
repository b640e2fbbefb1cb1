"""`dtw`: landmarks -> DTW votes against recorded templates (posegraph.pose.dtw), per person."""
from __future__ import annotations

from posegraph.pose.dtw import DEFAULT_TEMPLATES, DtwClassifier, Templates, TemplatesError
from posegraph.pose.paths import find_path
from posegraph.pose.people import BY_PERSON

from posegraph import Node, NodeOpenError, Param


class Dtw(Node):
    """Landmarks -> DTW votes against recorded templates, over a sliding window per person
    of each stream (posegraph.pose.dtw.DtwWindow). The features are the templates' kind:
    `body` (view-invariant, from BlazePose's world landmarks) or 2-D `angles` / `embed`. A
    person the templates cannot use (a layout without world landmarks for `body`, or the
    wrong layout) is skipped on that frame, counted as `wrong_layout` and reported once; a
    frame without the person carries their last features forward (`carried`). An answer
    "unknown" (batch split, or the best distance above the templates' calibrated
    threshold) votes {"unknown": 1.0}, so the smoothed class can be "unknown" too."""

    INPUTS = {"landmarks": "landmarks packet (posegraph/pose/packets.py), one or several people; None when no person"}
    OUTPUTS = {"votes": "{'votes': {class: fraction of the batch} or {'unknown': 1.0}, 'label': class or 'unknown', "
                        "'distance': best normalised DTW distance}, per person; None before min_frames frames with a person"}
    PORT_TYPES = {"in:landmarks": "landmarks", "out:votes": "votes"}
    PARAMS = {
        "templates": Param(DEFAULT_TEMPLATES, help="templates .npz (runner.py dtw-templates); relative: from the current directory, the graph file's folder, else the package"),
        "window": Param(45, min=2, max=10000, help="query length in frames (the last N frames)"),
        "every": Param(5, min=1, max=10000, help="classify every N frames; the frames between repeat the last answer"),
        "batch": Param(4, min=1, max=1000, help="closest templates that vote; the closest one's class wins if it has at least half"),
        "band": Param(10, min=0, max=100000, help="Sakoe-Chiba band half-width in frames (widened to the length difference); 0: no band"),
        "threshold": Param(0.0, min=-1.0, help="best normalised distance above which the answer is 'unknown'; 0: the "
                                               "templates file's calibrated thresholds (off when it has none); -1: off"),
        "min_frames": Param(15, min=1, max=10000, help="answer once this many frames were seen (the window fills up to `window`)"),
    }
    KEYS = BY_PERSON

    def open(self, ctx):
        p = self.params
        try:
            threshold = None if p["threshold"] == 0 else p["threshold"]  # None: the file's; below 0: off
            self.dtw = DtwClassifier(Templates.load(find_path(p["templates"], ctx.graph_file)), p["window"], p["every"],
                                     p["batch"], p["band"], threshold, p["min_frames"], name=p["templates"])
        except (TemplatesError, FileNotFoundError) as exc:
            raise NodeOpenError(str(exc), field="params.templates") from None
        self.dtw.warm_up()

    def new_state(self):
        return self.dtw.new_window()

    def process(self, inputs, ctx):
        problem = self.dtw.unusable(inputs["landmarks"])
        if problem is not None:
            ctx.warn_once("wrong_layout", problem)
            return {}
        answer = ctx.state.push(inputs["landmarks"], ctx.count)
        return {} if answer is None else {"votes": answer}
