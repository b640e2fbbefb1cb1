"""`coco`: COCO keypoint results of each stream, for COCO tools (pycocotools' loadRes and
COCOeval, and whatever reads that format).

At the end of each stream (or when the graph stops) the sink writes one JSON list with
an entry per person per frame: {"image_id", "category_id": 1, "keypoints": [x, y, v] * 17
(COCO-17, pixels), "score"}, converted from whatever layout the pose node gives
(posegraph.pose.coco: BlazePose-33, COCO-17 of MoveNet and PoseNet, custom layouts by
name). Frames with nobody give no entry. `image_id` is the frame's number in its source
(the frame packet's `index`, when `frame` is wired and has one), else its seq; with
`image_id: seq`, always the seq.

Until the stream ends its entries go to a hidden journal beside the file
(`.NAME.partial`, a JSON line per frame), so a sink restarted mid-stream goes on after
the last frame its predecessor kept; frames missing from it count as `lost`, as for
`jsonl`. With several streams reaching the sink, one file per stream (`{stream}` and
`{source}` in the path, else the source's name before the extension).
"""
from __future__ import annotations

import numbers

from posegraph.pose.drawing import frame_parts
from posegraph.pose.media import StreamOutput, WriteError, prepare_file, stream_path, stream_paths

from posegraph import Node, NodeOpenError, Param


class CocoResults(Node):
    """Writes COCO keypoint results (a JSON list per stream) at the end of each stream."""

    INPUTS = {
        "landmarks": "landmarks packet (one or several people) or None",
        "frame": "frame packet (for its index: the image_id)",
    }
    OPTIONAL_INPUTS = frozenset({"frame"})
    PORT_TYPES = {"in:landmarks": "landmarks", "in:frame": ("frame", "image")}
    PARAMS = {
        "path": Param("out/coco.json", help="results file to write at the end of each stream; {stream}/{source} "
                                            "as in video; several streams without either: NAME.<source>.json each"),
        "image_id": Param("index", choices=("index", "seq"),
                          help="index: the frame's number in its source (seq when it has none); seq: the seq"),
    }
    STATEFUL = True

    def open(self, ctx):
        self.multi = ctx.multi_stream
        self.first_stream: int | None = None
        names = ctx.stream_names if ctx.multi_stream else {ctx.stream: ctx.stream_name}
        try:
            for path in stream_paths(self.params["path"], names, ctx.multi_stream).values():
                prepare_file(path)
        except WriteError as exc:
            raise NodeOpenError(str(exc), field=f"params.{exc.param}") from None

    def new_state(self):
        return StreamOutput()

    def process(self, inputs, ctx):
        from posegraph.pose.coco import frame_results

        held = ctx.state
        if held.output is None:
            held.output = self._file(ctx)
        _, _, index = frame_parts(inputs.get("frame"))
        by_index = self.params["image_id"] == "index" and isinstance(index, numbers.Integral) and not isinstance(index, bool)
        try:
            entries = frame_results(inputs.get("landmarks"), index if by_index else ctx.seq)
        except ValueError as exc:
            ctx.warn_once("bad_landmarks", f"landmarks that cannot be converted to COCO-17: {exc}")
            entries = []
        held.output.add(ctx.stream, ctx.seq, entries)
        return None

    def _file(self, ctx):
        from posegraph.pose.coco import ResultsFile

        if self.first_stream is None:
            self.first_stream = ctx.stream
        # a second stream the context did not announce still gets a file of its own
        late = not self.multi and ctx.stream != self.first_stream
        path = stream_path(self.params["path"], ctx.stream, ctx.stream_name, self.multi or late)
        results = ResultsFile(path, ctx.stream, ctx.seq)
        if ctx.seq > results.written + 1:  # started mid-stream: the frames between were never journalled
            ctx.count("lost", ctx.seq - results.written - 1)
            ctx.log(f"warning: {path} lacks the frames of seqs {results.written + 1}..{ctx.seq - 1} "
                    "(its journal was gone or cut)")
        return results
