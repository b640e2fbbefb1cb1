"""Sinks: where a graph's results leave it. `window`, `video`, `images` and `jsonl`.

All are stateful (what they write depends on the order frames arrive in, so they are never
replicated), have no outputs, and check at `open` that they will be able to write, so a
bad path stops the graph before its first frame with one line naming the node and field
(NodeOpenError). Relative paths are relative to the runner's working directory.
Ctrl-C in the terminal stops a graph; every sink then finishes its file in `close`.

When several streams reach a sink (ctx.multi_stream: several sources feed the graph), each
file sink writes one output per stream, so two cameras never interleave in one file: the
path's `{stream}` (id) and `{source}` (the source node's id) choose, else the source's
name is added (draw_utils.stream_path). With one stream the paths are exactly as given.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from posegraph.pose.drawing import (
    copy_bgr,
    finite,
    frame_parts,
    image_problem,
    multi_stream_of,
    packet_dict,
    stream_name_of,
    stream_path,
    top_class,
)
from posegraph.pose.people import split

from posegraph import Node, NodeOpenError, Param

FRAME_INPUT = {"frame": "frame packet {'image', 'pts_ms', 'index'} (or a bare uint8 image)"}


def _prepare_folder(folder: str, field: str) -> None:
    """Create `folder` (and its parents) and prove a file can be created in it."""
    folder = folder or "."
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise NodeOpenError(f"cannot create folder {folder!r}: {exc.strerror or exc}", field=field) from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".posegraph-probe-"):
            pass
    except OSError as exc:
        raise NodeOpenError(f"cannot write in folder {folder!r}: {exc.strerror or exc}", field=field) from None


def _prepare_file(path: str, field: str = "params.path") -> None:
    """A file path that can be written: not a folder, parent created, writable."""
    if os.path.isdir(path):
        raise NodeOpenError(f"{path!r} is a folder; give a file path", field=field)
    _prepare_folder(os.path.dirname(path), field)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise NodeOpenError(f"{path!r} is not writable", field=field)


# ----- video -----------------------------------------------------------------------------------
class _Track:
    """One output video (one per stream): its writer and the frames held until it opens."""

    def __init__(self, path: str):
        self.path = path
        self.writer = None
        self.size = None          # (width, height) written, even numbers (encoders want them)
        self.last = None          # copy of the last image written, repeated for empty packets
        self.have_last = False
        self.leading_empty = 0    # empty packets before the first image: black frames
        self.held_repeats = 0     # empty packets after the held first image
        self.first_pts = None
        self.fps = None
        self.written = 0
        self.resized = 0


class VideoFile(Node):
    """Writes frames to a video file with OpenCV's VideoWriter.

    path   `{stream}` is replaced by the stream id, `{source}` by the stream's name (the
           source node's id). One file per stream: with several streams reaching the sink
           and neither placeholder in the path, each file gets the stream's name before
           the extension (out/demo.mp4 -> out/demo.cam1.mp4), so cameras never share a file.
    fps    frames per second stored in the file. 0 (the default) takes it from the spacing
           of the first two images' `pts_ms` (so a 5 fps clip plays at 5 fps); frames
           without `pts_ms` (bare arrays) or with unusable spacing give 30. The writer opens
           lazily, sized by the first image, so with fps 0 the first image is held until
           the second arrives.
    codec  FourCC: mp4v for .mp4 (the default), MJPG for .avi...; checked at open.

    One output frame per input frame, always: an empty packet repeats the previous image
    (a black frame when no image came yet), so the video keeps the timing of the input.
    Images of another size than the first are resized to it; odd widths or heights lose
    their last column or row (encoders need even sizes). A stream that never brings an
    image writes no file (its size is unknown). close() releases the writer, which
    finishes the file.
    """

    INPUTS = FRAME_INPUT
    PARAMS = {
        "path": Param("out/video.mp4", help="video file to write; {stream}: stream id, {source}: source name; "
                                            "several streams without either: NAME.<source>.EXT each"),
        "fps": Param(0.0, min=0.0, max=1000.0, help="frames per second of the file; 0: from the frames' pts_ms spacing, else 30"),
        "codec": Param("mp4v", help="FourCC of the encoder: mp4v for .mp4, MJPG for .avi"),
    }
    STATEFUL = True

    def open(self, ctx):
        import cv2

        self.cv2 = cv2
        self.ctx = ctx
        codec = self.params["codec"]
        if len(codec) != 4:
            raise NodeOpenError(f"codec must be a 4-character FourCC such as mp4v or MJPG, not {codec!r}", field="params.codec")
        self.fourcc = cv2.VideoWriter_fourcc(*codec)
        self.tracks: dict[int, _Track] = {}
        self.template = self.params["path"]
        multi = multi_stream_of(ctx)
        path = stream_path(self.template, ctx.stream, stream_name_of(ctx), multi)
        if multi:  # every stream's file must be writable, not only the first one's
            for stream, name in sorted(ctx.stream_names.items()):
                _prepare_file(stream_path(self.template, stream, name, multi))
        _prepare_file(path)
        problem = self._probe(path, self.fourcc)
        if problem:
            # the same container with mp4v works: the codec is at fault, not the path
            codec_fault = self._probe(path, cv2.VideoWriter_fourcc(*"mp4v")) is None
            raise NodeOpenError(f"OpenCV cannot write {path!r} with codec {codec!r} ({problem}); "
                                "mp4v with .mp4 or MJPG with .avi work",
                                field="params.codec" if codec_fault else "params.path")

    def _probe(self, path: str, fourcc: int) -> str | None:
        """Open a tiny writer beside `path` (same extension), so a bad path or codec fails now."""
        cv2 = self.cv2
        folder, name = os.path.split(path)
        stem, ext = os.path.splitext(name)
        if not ext:
            return "the path has no extension, so there is no container format"
        probe = os.path.join(folder, f".{stem}.probe-{os.getpid()}{ext}")
        level = cv2.getLogLevel()
        cv2.setLogLevel(0)  # FFmpeg's complaints would print several lines; we say it in one
        try:
            writer = cv2.VideoWriter(probe, fourcc, 30.0, (64, 64))
            ok = writer.isOpened()
            if ok:
                writer.write(np.zeros((64, 64, 3), np.uint8))
            writer.release()
        except cv2.error:
            ok = False
        finally:
            cv2.setLogLevel(level)
            try:
                os.unlink(probe)
            except OSError:
                pass
        return None if ok else "VideoWriter did not open"

    def _track(self, ctx) -> _Track:
        track = self.tracks.get(ctx.stream)
        if track is None:
            multi = multi_stream_of(ctx)
            # a context that does not say it is multi-stream, yet a second stream arrives:
            # the first keeps the path, the others get their name added
            late = not multi and bool(self.tracks)
            path = stream_path(self.template, ctx.stream, stream_name_of(ctx), multi or late)
            if late and path != stream_path(self.template, ctx.stream, stream_name_of(ctx)):
                self.ctx.log(f"stream {ctx.stream} goes to {path} (put {{stream}} or {{source}} in the path to choose)")
            track = self.tracks[ctx.stream] = _Track(path)
        return track

    def process(self, inputs, ctx):
        image, pts_ms, _ = frame_parts(inputs["frame"])
        track = self._track(ctx)
        if image is not None and image_problem(image):
            ctx.count("bad_frames")
            image = None
        if image is None:
            ctx.count("empty_frames")
            if track.writer is not None:
                self._write(track, track.last)
            elif track.have_last:
                track.held_repeats += 1
            else:
                track.leading_empty += 1
            return None
        if track.size is None:
            height, width = image.shape[:2]
            track.size = (width - width % 2, height - height % 2)
            track.last = np.empty((track.size[1], track.size[0], 3), np.uint8)
        frame = self._fit(track, image, ctx)
        if track.writer is None:
            fps = self.params["fps"]
            if not track.have_last and not fps and _usable(pts_ms):
                np.copyto(track.last, frame)  # hold it: the next image's pts gives the fps
                track.have_last, track.first_pts = True, float(pts_ms)
                return None
            if not fps:
                fps = 30.0
                if track.have_last and _usable(pts_ms) and pts_ms > track.first_pts:
                    fps = 1000.0 * (1 + track.held_repeats) / (float(pts_ms) - track.first_pts)
                    fps = fps if 0.1 <= fps <= 1000.0 else 30.0
            self._open_writer(track, fps)
        self._write(track, frame)
        np.copyto(track.last, frame)
        track.have_last = True
        return None

    def _fit(self, track: _Track, image: np.ndarray, ctx) -> np.ndarray:
        """The image as a BGR array of the track's size (a view when it already is one)."""
        width, height = track.size
        if image.ndim == 3 and image.shape[2] == 3 and image.shape[0] >= height and image.shape[1] >= width \
                and image.shape[0] - height < 2 and image.shape[1] - width < 2:
            return image[:height, :width]
        if image.ndim != 3 or image.shape[2] != 3:
            bgr = np.empty(image.shape[:2] + (3,), np.uint8)
            copy_bgr(image, bgr)
            image = bgr
        if image.shape[:2] != (height, width):
            ctx.count("resized_frames")
            image = self.cv2.resize(image, (width, height), interpolation=self.cv2.INTER_AREA)
        return image

    def _open_writer(self, track: _Track, fps: float) -> None:
        cv2 = self.cv2
        folder = os.path.dirname(track.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        writer = cv2.VideoWriter(track.path, self.fourcc, float(fps), track.size)
        if not writer.isOpened():
            raise OSError(f"OpenCV's VideoWriter cannot open {track.path!r} ({track.size[0]}x{track.size[1]}, {self.params['codec']})")
        track.writer, track.fps = writer, fps
        if track.leading_empty:
            black = np.zeros((track.size[1], track.size[0], 3), np.uint8)
            for _ in range(track.leading_empty):
                self._write(track, black)
            track.leading_empty = 0
        if track.have_last:  # the held first image and the empty packets after it
            for _ in range(1 + track.held_repeats):
                self._write(track, track.last)
            track.held_repeats = 0

    def _write(self, track: _Track, frame: np.ndarray) -> None:
        track.writer.write(frame)
        track.written += 1

    def close(self):
        for track in getattr(self, "tracks", {}).values():
            if track.writer is None and track.have_last:  # one image only: no spacing to go by
                self._open_writer(track, self.params["fps"] or 30.0)
            if track.writer is None:
                self.ctx.log(f"warning: no image arrived for {track.path}; nothing written")
                continue
            track.writer.release()
            track.writer = None
            self.ctx.log(f"wrote {track.written} frames ({track.size[0]}x{track.size[1]}, {track.fps:g} fps) to {track.path}")


def _usable(pts_ms) -> bool:
    return isinstance(pts_ms, (int, float)) and not isinstance(pts_ms, bool) and math.isfinite(pts_ms)


# ----- still images --------------------------------------------------------------------------
class ImageFolder(Node):
    """Writes every frame as an image file in a folder.

    path     the folder; `{stream}` and `{source}` as in `video`. With several streams
             reaching the sink and neither placeholder in the path, each stream writes
             into a subfolder named after its source (out/frames/cam1/...), so two
             cameras' frame 7 never overwrite each other.
    pattern  a Python format string with {stream}, {source}, {seq} and {index} (the
             source's frame number, else seq); the extension picks the format (jpg, png, webp...).
    quality  0..100 for jpg and webp; png is lossless and ignores it.

    An empty packet writes no file (counted as `empty_frames`): a file named after a
    sequence number holds that frame's image, never another frame's. Existing files with
    the same names are overwritten.
    """

    INPUTS = FRAME_INPUT
    PARAMS = {
        "path": Param("out/frames", help="folder to write into (created); {stream}/{source} as in video; "
                                         "several streams without either: a subfolder per source"),
        "pattern": Param("{stream}_{seq:06d}.jpg", help="file name: {stream}, {source}, {seq}, {index}; the extension picks the format"),
        "quality": Param(90, min=0, max=100, help="jpg/webp quality"),
    }
    STATEFUL = True

    def open(self, ctx):
        import cv2

        self.cv2 = cv2
        self.folders: dict[int, str] = {}  # stream id -> its folder
        multi = multi_stream_of(ctx)
        names = dict(ctx.stream_names) if multi else {ctx.stream: stream_name_of(ctx)}
        for stream, name in sorted(names.items()):
            folder = stream_path(self.params["path"], stream, name, multi, folder=True)
            if os.path.exists(folder) and not os.path.isdir(folder):
                raise NodeOpenError(f"{folder!r} is a file; give a folder", field="params.path")
            self.folders[stream] = folder
        pattern = self.params["pattern"]
        try:
            sample = pattern.format(stream=0, source="cam", seq=0, index=0)
        except (KeyError, IndexError, ValueError) as exc:
            raise NodeOpenError(f"{pattern!r} cannot be filled in ({type(exc).__name__}: {exc}); "
                                "it may use {stream}, {source}, {seq} and {index}", field="params.pattern") from None
        if not cv2.haveImageWriter(sample):
            raise NodeOpenError(f"OpenCV cannot write images named like {sample!r}; use .jpg, .png or .webp",
                                field="params.pattern")
        ext = os.path.splitext(sample)[1].lower()
        quality = self.params["quality"]
        self.options = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, quality], ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, quality],
                        ".webp": [cv2.IMWRITE_WEBP_QUALITY, max(1, quality)]}.get(ext, [])
        for folder in self.folders.values():
            _prepare_folder(folder, "params.path")
        self.made = set(self.folders.values())

    def process(self, inputs, ctx):
        image, _, index = frame_parts(inputs["frame"])
        if image is None or image_problem(image):
            ctx.count("empty_frames" if image is None else "bad_frames")
            return None
        folder = self.folders.get(ctx.stream)
        if folder is None:  # a stream the context did not announce at open
            folder = self.folders[ctx.stream] = stream_path(self.params["path"], ctx.stream, stream_name_of(ctx),
                                                            multi_stream_of(ctx), folder=True)
        name = self.params["pattern"].format(stream=ctx.stream, source=stream_name_of(ctx), seq=ctx.seq,
                                             index=ctx.seq if index is None else index)
        path = os.path.join(folder, name)
        folder = os.path.dirname(path)
        if folder not in self.made:  # a pattern with sub-folders, e.g. {stream}/{seq:06d}.png
            os.makedirs(folder, exist_ok=True)
            self.made.add(folder)
        if not self.cv2.imwrite(path, image, self.options):
            raise OSError(f"cannot write {path!r}")
        return None


# ----- JSON lines ------------------------------------------------------------------------------
def _landmark_rows(value):
    """n x [x_px, y_px, z, visibility] rounded to 2 decimals (None for non-finite numbers)."""
    px = value.get("px") if isinstance(value, dict) else value
    if not isinstance(px, np.ndarray) or px.ndim != 2 or px.shape[1] < 3:
        return None
    array = np.round(px[:, :4].astype(np.float64), 2)
    rows = array.tolist()
    if not np.isfinite(array).all():
        rows = [[v if math.isfinite(v) else None for v in row] for row in rows]
    if array.shape[1] == 3:  # no visibility column
        rows = [row + [None] for row in rows]
    return rows


def _table(value, key: str, digits: int | None):
    table = packet_dict(value, key)
    if table is None:
        return None
    if digits is None:
        return {str(k): int(finite(v)) if float(finite(v)).is_integer() else finite(v) for k, v in table.items()}
    return {str(k): round(finite(v), digits) for k, v in table.items()}


def _box(person) -> list | None:
    """A person's box [x0, y0, x1, y1] in pixels (2 decimals): the packet's own `box` when it
    has one, else the extent of their finite landmarks; None when neither exists."""
    if not isinstance(person, dict):
        return None
    box = person.get("box")
    if box is not None:
        values = np.asarray(box, dtype=np.float64).reshape(-1)
        if values.shape == (4,) and np.isfinite(values).all():
            return [round(float(v), 2) for v in values]
    px = person.get("px")
    if isinstance(px, np.ndarray) and px.ndim == 2 and px.shape[1] >= 2:
        xy = px[:, :2].astype(np.float64)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy):
            return [round(float(v), 2) for v in (*xy.min(axis=0), *xy.max(axis=0))]
    return None


def _number(value):
    """A finite plain number (rounded to 4 decimals), else None."""
    try:
        number = float(np.asarray(value).reshape(-1)[0]) if isinstance(value, np.ndarray) else float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return round(number, 4) if math.isfinite(number) else None


def _fields(landmarks, votes, scores, reps, reps_wired: bool) -> dict:
    """The per-person fields of a record from one person's packets (any may be None)."""
    smoothed = _table(scores, "scores", 4)
    table = _table(votes, "votes", None)
    fields = {
        "landmarks": None if landmarks is None else _landmark_rows(landmarks),
        "votes": table,
        "smoothed": smoothed,
        "class": top_class(smoothed, table)[0],
        # a classifier's own answer, when it gives one ("unknown" included: DTW, LSTM)
        "label": votes.get("label") if isinstance(votes, dict) else None,
        "reps": _table(reps, "reps", None) if reps_wired else None,
    }
    layout = landmarks.get("layout") if isinstance(landmarks, dict) else None
    if isinstance(layout, str) and layout.startswith("custom:"):
        # the rows' count cannot tell which points they are (it can for 33 and 17), so the
        # layout, which lists their names, goes along; known layouts' records stay as they were
        fields["layout"] = layout
    return fields


def _people(inputs) -> list[dict] | None:
    """The `people` list of a record, when the landmarks packet holds several people
    (nodes/people.py: it has "ids"): one entry per person of the landmarks packet, in its
    order, with what the other inputs say about that person id; None otherwise."""
    landmarks = inputs.get("landmarks")
    if not isinstance(landmarks, dict) or "ids" not in landmarks:
        return None
    by_id = {port: dict(split(inputs.get(port))) for port in ("votes", "scores", "reps")}
    people = []
    for person_id, person in split(landmarks):
        entry = {"id": int(person_id)}
        entry.update(_fields(person, by_id["votes"].get(person_id), by_id["scores"].get(person_id),
                             by_id["reps"].get(person_id), "reps" in inputs))
        entry["score"] = _number(person.get("score")) if isinstance(person, dict) else None
        entry["box"] = _box(person)
        people.append(entry)
    return people


def _last_whole_record(path: str) -> int:
    """The seq of the last complete line of a records file (-1 when none); a half-written
    last line, left by a process killed mid-write, is cut off."""
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            f.truncate(end)
        for line in reversed(data[:end].splitlines()):
            try:
                return int(json.loads(line)["seq"])
            except (ValueError, KeyError, TypeError):
                continue
    return -1


class JsonLines(Node):
    """One JSON object per frame (the engine joins every wired input by stream and seq, so
    each call is one frame), in processing order:

      {"stream" (id), "source" (the stream's name: its source node's id), "seq", "pts_ms"
       and "index" (from `frame`, null when it is not wired or empty), "landmarks": 33 x
       [x_px, y_px, z, visibility] (2 decimals) or null when no person, "votes": {class: n}
       or null, "smoothed": {class: score} (4 decimals) or null, "class": argmax of
       smoothed (else votes) or null, "label": the classifier's own answer when its votes
       packet has one (e.g. "unknown"), "reps": {class: count} or null when `reps` is not
       wired, and "layout" only for landmarks of a custom layout: "custom:name,name,..."
       naming the landmark rows in order (nodes/landmarks.py)}

    and, when the landmarks packet holds several people (nodes/people.py: it has "ids"),
    "people": [{"id", "landmarks", "votes", "smoothed", "class", "label", "reps" (as
    above, for that person: the other inputs are matched by person id), "score" (the pose
    model's score for them, or null), "box" ([x0, y0, x1, y1] pixels: the packet's box,
    else the extent of their landmarks)}, ...] in the landmarks packet's order; the
    top-level fields are then those of its first person.

    A stream's file is truncated when its first packet is seq 0 (a run's records never mix
    with an older run's), written line-buffered (a reader sees whole lines as they come)
    and flushed and closed in close(). A sink that starts mid-stream (it was restarted,
    alone or with its whole machine) appends instead, after the last whole record the
    earlier process wrote, and skips packets that record already covers: the file keeps
    every seq exactly once, in order.

    One file per stream when several streams reach the sink (`{stream}`/`{source}` in the
    path as in `video`; with neither, out/records.jsonl -> out/records.cam1.jsonl), so
    each camera's records read in order on their own. Those files are checked at open
    and each is opened (and truncated) on its stream's first packet.
    """

    INPUTS = {
        "landmarks": "landmarks packet or None",
        "votes": "{'votes': {class: count}} or None",
        "scores": "{'scores': {class: smoothed votes}} or None",
        "reps": "{'reps': {class: count}, 'class', 'entered'}",
        "frame": "frame packet (for pts_ms and index)",
    }
    OPTIONAL_INPUTS = frozenset(INPUTS)
    PARAMS = {"path": Param("out/records.jsonl", help="file to write (truncated at open); {stream}/{source} as in "
                                                      "video; several streams without either: NAME.<source>.EXT each")}
    STATEFUL = True

    def open(self, ctx):
        self.files: dict[int, object] = {}  # stream id -> its open file
        self.written: dict[int, int] = {}   # stream id -> last seq already in its file (resuming)
        self.multi = multi_stream_of(ctx)
        streams = sorted(ctx.stream_names.items()) if self.multi else [(ctx.stream, stream_name_of(ctx))]
        for stream, name in streams:  # every file is checked here; each is opened on its first packet
            _prepare_file(stream_path(self.params["path"], stream, name, self.multi))

    def _open(self, path: str, stream: int, seq: int):
        """Truncate for a stream that starts at its beginning; append after the last whole
        record when this process joins a stream an earlier one had begun."""
        try:
            if seq > 0 and os.path.exists(path):
                self.written[stream] = _last_whole_record(path)
                return open(path, "a", buffering=1, encoding="utf-8")
            return open(path, "w", buffering=1, encoding="utf-8")
        except OSError as exc:
            raise OSError(f"cannot write {path!r}: {exc.strerror or exc}") from None

    def _file(self, ctx):
        out = self.files.get(ctx.stream)
        if out is None:
            if not self.multi and self.files:  # one file for the run when streams were not announced
                return next(iter(self.files.values()))
            path = stream_path(self.params["path"], ctx.stream, stream_name_of(ctx), self.multi)
            out = self.files[ctx.stream] = self._open(path, ctx.stream, ctx.seq)
        return out

    def process(self, inputs, ctx):
        _, pts_ms, index = frame_parts(inputs.get("frame"))
        people = _people(inputs)
        record = {
            "stream": ctx.stream,
            "source": stream_name_of(ctx),
            "seq": ctx.seq,
            "pts_ms": round(float(pts_ms), 3) if _usable(pts_ms) else None,
            "index": int(index) if isinstance(index, (int, np.integer)) else None,
        }
        if people:  # the first person's fields at the top, as the single-person record has them
            record.update({k: v for k, v in people[0].items() if k not in ("id", "score", "box")})
            record["people"] = people
        else:
            record.update(_fields(inputs.get("landmarks"), inputs.get("votes"), inputs.get("scores"), inputs.get("reps"),
                                  "reps" in inputs))
        out = self._file(ctx)
        if ctx.seq <= self.written.get(ctx.stream, -1):
            return None  # the earlier process wrote this one before it went
        out.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        return None

    def close(self):
        files, self.files = getattr(self, "files", {}), {}
        for out in files.values():
            out.flush()
            out.close()


# ----- on screen -------------------------------------------------------------------------------
_PROBE = "import cv2; cv2.namedWindow('posegraph-probe'); cv2.waitKey(1); cv2.destroyAllWindows()"


def display_problem() -> str | None:
    """Why no window can be shown here, or None when one can.

    On Linux a display needs DISPLAY or WAYLAND_DISPLAY; when one is set it is still tried
    in a throw-away process, because OpenCV's Qt backend aborts the whole process (no
    exception) when it cannot reach the display.
    """
    if sys.platform in ("darwin", "win32"):
        return None
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not display:
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return f"opening a window on display {display!r} timed out"
    if probe.returncode != 0:
        lines = [l for l in probe.stderr.splitlines() if l.strip()]
        return f"cannot open a window on display {display!r}" + (f" ({lines[0].strip()})" if lines else "")
    return None


class Window(Node):
    """Shows frames in a window (cv2.imshow) as they arrive.

    Without a display (a server, CI, ssh without X forwarding) it logs one warning and
    discards frames, so a webcam graph still runs headless; with `require_display: true`
    the graph stops at open instead. Keys in the window are ignored: Ctrl-C in the
    terminal stops the graph. Each stream gets its own window.
    """

    INPUTS = FRAME_INPUT
    PARAMS = {
        "title": Param("posegraph", help="window title"),
        "require_display": Param(False, help="fail at open when no window can be shown, instead of discarding frames"),
    }
    STATEFUL = True

    def open(self, ctx):
        self.windows: dict[int, str] = {}
        problem = display_problem()
        if problem and self.params["require_display"]:
            raise NodeOpenError(f"{problem}; set require_display: false to run without a window", field="params.require_display")
        if problem:
            ctx.log(f"warning: {problem}: frames are discarded (require_display: true makes this an error)")
            self.cv2 = None
            return
        import cv2

        self.cv2 = cv2

    def process(self, inputs, ctx):
        if self.cv2 is None:
            return None
        image, _, _ = frame_parts(inputs["frame"])
        if image is None or image_problem(image):
            return None
        cv2 = self.cv2
        name = self.windows.get(ctx.stream)
        if name is None:
            name = self.params["title"] if not self.windows else f"{self.params['title']} [{ctx.stream}]"
            self.windows[ctx.stream] = name
            cv2.namedWindow(name, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
            height, width = image.shape[:2]
            fit = min(1.0, 1600 / width, 900 / height)  # a 720x1280 portrait clip fits a 1080p screen
            cv2.resizeWindow(name, max(1, int(width * fit)), max(1, int(height * fit)))
        cv2.imshow(name, image)
        cv2.waitKey(1)
        return None

    def close(self):
        if getattr(self, "cv2", None) is not None and self.windows:
            self.cv2.destroyAllWindows()
