"""Sinks: where a graph's results leave it. `window`, `video`, `images` and `jsonl`.

All are stateful (what they write depends on the order frames arrive in, so they are never
replicated), have no outputs, and check at `open` that they will be able to write, so a
bad path stops the graph before its first frame with one line naming the node and field
(NodeOpenError). Relative paths are relative to the runner's working directory.
Ctrl-C in the terminal stops a graph; every sink then finishes its files.

A sink restarted mid-stream (killed, then started again by the supervisor) resumes its
files in place: every seq once, in order. `video` rebuilds its file from a journal kept
beside it (posegraph.pose.media.ResumableVideo), `jsonl` appends after the last whole
record, `images` writes one file per seq. What a sink could not keep (seqs missing from
its output, frames it received but could not write) is counted with ctx.count("lost"),
which the engine adds to the node's `lost` metric: the runner then ends with a warning
and exit code 1.

When several streams reach a sink (ctx.multi_stream: several sources feed the graph), each
file sink writes one output per stream, so two cameras never interleave in one file: the
path's `{stream}` (id) and `{source}` (the source node's id) choose, else the source's
name is added (posegraph.pose.media.stream_path). With one stream the paths are exactly
as given. `video` and `jsonl` keep a stream's file as its keyed state (ctx.state), so the
engine finishes that file when the stream ends.
"""
from __future__ import annotations

import os

from posegraph.pose.drawing import frame_parts, image_problem
from posegraph.pose.media import (ImageWriter, ResumableVideo, StreamOutput, VideoJournal, Windows, WriteError,
                                  check_not_a_file, check_video_writer, display_problem, prepare_file, prepare_folder,
                                  stream_path, stream_paths, video_codec)
from posegraph.pose.records import STDOUT, RecordsFile, StdoutRecords, frame_record

from posegraph import Node, NodeOpenError, Param

FRAME_INPUT = {"frame": "frame packet {'image', 'pts_ms', 'index'} (or a bare uint8 image)"}
PER_STREAM_HELP = "several streams without either: NAME.<source>.EXT each"


def _announced(ctx, template: str, folder: bool = False) -> dict[int, str]:
    """{stream id: its path} for the streams the engine says reach the node (the current
    one when there is only one)."""
    names = ctx.stream_names if ctx.multi_stream else {ctx.stream: ctx.stream_name}
    return stream_paths(template, names, ctx.multi_stream, folder)


def _open_error(exc: WriteError) -> NodeOpenError:
    return NodeOpenError(str(exc), field=f"params.{exc.param}")


def runner_identity() -> str:
    """The runner this node process belongs to: its parent's pid and start time (a pid
    alone can be reused), so a restart within this run is told from a later run."""
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{parent}:{start}"


# what a frame's record is made of (posegraph.pose.records.frame_record): every sink of records takes these
RECORD_INPUTS = {
    "landmarks": "landmarks packet or None",
    "votes": "{'votes': {class: count}} or None",
    "scores": "{'scores': {class: smoothed votes}} or None",
    "reps": "{'reps': {class: count}, 'class', 'entered'}",
    "frame": "frame packet (for pts_ms and index)",
}
RECORD_PORT_TYPES = {"in:landmarks": "landmarks", "in:votes": "votes", "in:scores": "scores", "in:reps": "reps",
                     "in:frame": ("frame", "image")}


def _lost(ctx, count: int, what: str) -> None:
    """Count `count` seqs missing from this sink's output, and say which."""
    if count > 0:
        ctx.count("lost", count)
        ctx.log(f"warning: {what}")


class VideoFile(Node):
    """Writes frames to a video file (posegraph.pose.media.VideoTrack): H.264 MP4 by default.

    path   `{stream}` is replaced by the stream id, `{source}` by the stream's name (the
           source node's id). One file per stream: with several streams reaching the sink
           and neither placeholder in the path, each file gets the stream's name before
           the extension (out/demo.mp4 -> out/demo.cam1.mp4), so cameras never share a file.
    fps    frames per second stored in the file. 0 (the default) takes it from the spacing
           of the first two images' `pts_ms` (so a 5 fps clip plays at 5 fps); frames
           without `pts_ms` (bare arrays) or with unusable spacing give 30. The writer opens
           lazily, sized by the first image, so with fps 0 the first image is held until
           the second arrives.
    codec  h264 (the default: yuv420p MP4 with its index first, which browsers play), vp8 or
           vp9 for .webm, all through PyAV; a FourCC goes to OpenCV (mp4v, MJPG for
           .avi, VP80...). Checked at open by writing a tiny file beside the path.

    One output frame per input frame, always: an empty packet repeats the previous image
    (a black frame when no image came yet), so the video keeps the timing of the input.
    Images of another size than the first are resized to it; odd widths or heights lose
    their last column or row (encoders need even sizes). A stream that never brings an
    image writes no file (its size is unknown). A stream's file is finished when the
    stream ends, or when the graph stops.

    Until then every frame is also kept in a hidden journal beside the file
    (`.NAME.journal`, a JPEG per frame), so a sink killed mid-stream and restarted
    rebuilds the file from it and goes on: every frame once, in order. Frames the journal
    lacks are counted as `lost`. `journal: false` keeps none (a long live recording would
    fill the disk): a restart then starts the file again, the earlier frames `lost`.
    """

    INPUTS = FRAME_INPUT
    PORT_TYPES = {"in:frame": ("frame", "image")}
    PARAMS = {
        "path": Param("out/video.mp4", help=f"video file to write; {{stream}}: stream id, {{source}}: source name; {PER_STREAM_HELP}"),
        "fps": Param(0.0, min=0.0, max=1000.0, help="frames per second of the file; 0: from the frames' pts_ms spacing, else 30"),
        "codec": Param("h264", help="h264 for .mp4 (plays in browsers), vp8/vp9 for .webm; a FourCC such as mp4v "
                                    "or MJPG (.avi) writes with OpenCV"),
        "journal": Param(True, help="keep a JPEG of every frame beside the file until it is finished, so a restarted "
                                    "sink rebuilds it (about 110 KB a 720p frame); false for long live recordings: a "
                                    "restart then starts the file again and counts the earlier frames as lost"),
    }
    STATEFUL = True

    def open(self, ctx):
        self.streams: set[int] = set()  # streams that have had a file
        self.owner = runner_identity()
        self.log = ctx.log
        path = stream_path(self.params["path"], ctx.stream, ctx.stream_name, ctx.multi_stream)
        self.paths = dict.fromkeys((*_announced(ctx, self.params["path"]).values(), path))  # every stream's file
        self.written: set[str] = set()  # files this process wrote to
        try:
            video_codec(self.params["codec"])
            for each in self.paths:
                prepare_file(each)
            check_video_writer(path, self.params["codec"])
        except WriteError as exc:
            raise _open_error(exc) from None

    def new_state(self):
        return StreamOutput()

    def process(self, inputs, ctx):
        image, pts_ms, _ = frame_parts(inputs["frame"])
        if image is not None and image_problem(image):
            ctx.count("bad_frames")
            image = None
        if image is None:
            ctx.count("empty_frames")
        held = ctx.state
        if held.output is None:
            held.output = self._video(ctx)
        if held.output.add(ctx.seq, image, pts_ms):  # None: a frame sent again, already in the file
            ctx.count("resized_frames")
        return None

    def _video(self, ctx) -> ResumableVideo:
        """The stream's video, continued from its journal when this sink was restarted."""
        video = ResumableVideo(self._path(ctx), self.params["codec"], self.params["fps"], ctx.log, ctx.stream,
                               ctx.seq, self.owner, self.params["journal"])
        self.written.add(video.path)
        if video.kept:
            ctx.log(f"resuming {video.path} after a restart: {video.kept} frames kept, going on at seq {ctx.seq}")
        if video.resized:
            ctx.count("resized_frames", video.resized)
        _lost(ctx, video.lost, f"{video.path} lacks {video.lost} frame(s) from before seq {ctx.seq} "
                               "(its journal was gone or unreadable)")
        return video

    def _path(self, ctx) -> str:
        # a context that does not say it is multi-stream, yet a second stream arrives: the
        # first keeps the path, the others get their name added
        late = not ctx.multi_stream and bool(self.streams)
        self.streams.add(ctx.stream)
        path = stream_path(self.params["path"], ctx.stream, ctx.stream_name, ctx.multi_stream or late)
        if late and path != stream_path(self.params["path"], ctx.stream, ctx.stream_name):
            ctx.log(f"stream {ctx.stream} goes to {path} (put {{stream}} or {{source}} in the path to choose)")
        return path

    def close(self):
        """A process restarted after the last frame of a stream (killed while it finished
        the file) gets no packet of it: the file is finished here from its journal."""
        for path in getattr(self, "paths", ()):
            if path in self.written or not self.params["journal"]:
                continue
            header = VideoJournal(path).header()
            if header and header.get("owner") == self.owner:
                video = ResumableVideo(path, self.params["codec"], self.params["fps"], self.log, header.get("stream"), 0,
                                       self.owner)
                video.close()


class ImageFolder(Node):
    """Writes every frame as an image file in a folder (posegraph.pose.media.ImageWriter).

    path     the folder; `{stream}` and `{source}` as in `video`. With several streams
             reaching the sink and neither placeholder in the path, each stream writes
             into a subfolder named after its source (out/frames/cam1/...), so two
             cameras' frame 7 never overwrite each other.
    pattern  a Python format string with {stream}, {source}, {seq} and {index} (the
             source's frame number, else seq); the extension picks the format (jpg, png, webp...).
    quality  0..100 for jpg and webp; png is lossless and ignores it.

    An empty packet writes no file (counted as `empty_frames`): a file named after a
    sequence number holds that frame's image, never another frame's. Existing files with
    the same names are overwritten, so a sink restarted mid-stream that is sent a frame
    again writes the same file again. An image that cannot be written (not a picture:
    `bad_frames`) leaves its seq without a file and counts as `lost`.
    """

    INPUTS = FRAME_INPUT
    PORT_TYPES = {"in:frame": ("frame", "image")}
    PARAMS = {
        "path": Param("out/frames", help="folder to write into (created); {stream}/{source} as in video; "
                                         "several streams without either: a subfolder per source"),
        "pattern": Param("{stream}_{seq:06d}.jpg", help="file name: {stream}, {source}, {seq}, {index}; the extension picks the format"),
        "quality": Param(90, min=0, max=100, help="jpg/webp quality"),
    }
    STATEFUL = True

    def open(self, ctx):
        self.folders = _announced(ctx, self.params["path"], folder=True)  # stream id -> its folder
        try:
            for folder in self.folders.values():
                check_not_a_file(folder)
            self.writer = ImageWriter(self.params["pattern"], self.params["quality"])
            for folder in self.folders.values():
                prepare_folder(folder)
        except WriteError as exc:
            raise _open_error(exc) from None
        self.writer.made.update(self.folders.values())

    def process(self, inputs, ctx):
        image, _, index = frame_parts(inputs["frame"])
        if image is None:
            ctx.count("empty_frames")
            return None
        problem = image_problem(image)
        if problem:
            ctx.count("lost")
            ctx.warn_once("bad_frames", f"{problem}: no file is written for such a frame (counted as lost)")
            return None
        folder = self.folders.get(ctx.stream)
        if folder is None:  # a stream the context did not announce at open
            folder = self.folders[ctx.stream] = stream_path(self.params["path"], ctx.stream, ctx.stream_name,
                                                            ctx.multi_stream, folder=True)
        self.writer.write(folder, image, ctx.stream, ctx.stream_name, ctx.seq, ctx.seq if index is None else index)
        return None


class JsonLines(Node):
    """One JSON object per frame (the engine joins every wired input by stream and seq, so
    each call is one frame), in processing order: posegraph.pose.records.frame_record
    ("stream", "source", "seq", "pts_ms", "index", "landmarks", "votes", "smoothed",
    "class", "label", "reps" (null when `reps` is not wired), "layout" for custom layouts,
    and "people" when the landmarks packet holds several people).

    A stream's file is truncated when its first packet is seq 0 (a run's records never mix
    with an older run's), written line-buffered (a reader sees whole lines as they come)
    and closed when the stream ends. A sink that starts mid-stream (it was restarted,
    alone or with its whole machine) appends instead, after the last whole record the
    earlier process wrote, and skips packets that record already covers: the file keeps
    every seq exactly once, in order. Seqs it then finds no record for (the file was
    removed or cut meanwhile) count as `lost`.

    One file per stream when several streams reach the sink (`{stream}`/`{source}` in the
    path as in `video`; with neither, out/records.jsonl -> out/records.cam1.jsonl), so
    each camera's records read in order on their own. Those files are checked at open
    and each is opened (and truncated) on its stream's first packet.

    `path: -` writes the records to standard output instead (posegraph.pose.records.
    StdoutRecords), one line per record, flushed at once, so another program can read
    them through a pipe as they come (`python runner.py GRAPH --set records.path=- |
    my_program`); the runner's own lines go to stderr. Every stream goes there, told
    apart by `stream`. Nothing can be read back from a pipe: a sink restarted mid-stream
    goes on at its first record, and a record written just before it died may repeat.
    Once the reader has gone (the pipe closed), records are counted as `lost`.
    """

    INPUTS = RECORD_INPUTS
    OPTIONAL_INPUTS = frozenset(INPUTS)
    PORT_TYPES = RECORD_PORT_TYPES
    PARAMS = {"path": Param("out/records.jsonl", help=f"file to write (truncated at open); {{stream}}/{{source}} as in "
                                                      f"video; {PER_STREAM_HELP}; '-': standard output, a line per "
                                                      "record, flushed")}
    STATEFUL = True

    def open(self, ctx):
        self.multi = ctx.multi_stream
        self.run_file: RecordsFile | None = None  # the one file of a run whose streams were not announced
        self.stdout: StdoutRecords | None = None  # path '-': every stream's records on standard output
        if self.params["path"] == STDOUT:
            return
        try:
            for path in _announced(ctx, self.params["path"]).values():  # each is opened on its first packet
                prepare_file(path)
        except WriteError as exc:
            raise _open_error(exc) from None

    def new_state(self):
        return StreamOutput()

    def process(self, inputs, ctx):
        record = frame_record(ctx.stream, ctx.stream_name, ctx.seq, inputs)
        held = ctx.state
        if held.output is None:
            held.output = self._file(ctx)
        held.output.write(record)
        if getattr(held.output, "broken", False):
            ctx.count("lost")
            ctx.warn_once("stdout_closed", "standard output was closed (its reader went): records are lost")
        return None

    def _file(self, ctx) -> RecordsFile | StdoutRecords:
        if self.params["path"] == STDOUT:
            if self.stdout is None:
                self.stdout = StdoutRecords(ctx.stream, ctx.seq)
                return self.stdout
            return self.stdout.share()
        if not self.multi and self.run_file is not None:  # one file for the run when streams were not announced
            return self.run_file.share()
        records = RecordsFile(stream_path(self.params["path"], ctx.stream, ctx.stream_name, self.multi), ctx.stream, ctx.seq)
        if ctx.seq > records.written + 1:  # started mid-stream: the seqs between have no record
            _lost(ctx, ctx.seq - records.written - 1, f"{records.path} lacks the records of seqs "
                                                      f"{records.written + 1}..{ctx.seq - 1} (the file was gone or cut)")
        if not self.multi:
            self.run_file = records
        return records


class Window(Node):
    """Shows frames in a window (cv2.imshow) as they arrive.

    Without a display (a server, CI, ssh without X forwarding) it logs one warning and
    discards frames, so a webcam graph still runs headless; with `require_display: true`
    the graph stops at open instead. Keys in the window are ignored: Ctrl-C in the
    terminal stops the graph. Each stream gets its own window.
    """

    INPUTS = FRAME_INPUT
    PORT_TYPES = {"in:frame": ("frame", "image")}
    PARAMS = {
        "title": Param("posegraph", help="window title"),
        "require_display": Param(False, help="fail at open when no window can be shown, instead of discarding frames"),
    }
    STATEFUL = True

    def open(self, ctx):
        self.windows = None
        problem = display_problem()
        if problem and self.params["require_display"]:
            raise NodeOpenError(f"{problem}; set require_display: false to run without a window", field="params.require_display")
        if problem:
            ctx.log(f"warning: {problem}: frames are discarded (require_display: true makes this an error)")
            return
        self.windows = Windows(self.params["title"])

    def process(self, inputs, ctx):
        image, _, _ = frame_parts(inputs["frame"])
        if self.windows is not None and image is not None and not image_problem(image):
            self.windows.show(ctx.stream, image)
        return None

    def close(self):
        if getattr(self, "windows", None) is not None:
            self.windows.close()
