"""Frames in and out: reading webcams, video files, folders of images and stream URLs;
writing videos, image folders and on-screen windows; one output path per stream.

What the `capture` source and the `video`, `images` and `window` sinks do, without the
engine: plain values in (paths, parameters, stream ids and names), images and one-line
errors out. OpenCV (and PyAV) is imported when a reader or writer is made, never at import
time (the graph validator imports node modules).
"""
from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from posegraph.pose.drawing import as_bgr, usable_pts
from posegraph.pose.encoding import open_writer, probe_writer, pyav_encoder

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
LIVE_READ_RETRIES = 25  # consecutive failed reads before a camera or stream counts as gone
MIN_FRAME_SIDE = 2      # smaller frames cannot be drawn on or encoded (posegraph.pose.drawing.image_problem)


def quiet_cv2():
    """cv2, with OpenCV's and FFmpeg's own logging silenced (our one-line errors say what failed)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    return cv2


# ----- reading ---------------------------------------------------------------------------------
class SourceError(Exception):
    """A source that cannot be opened; str() is one line, `kind` says what it was taken for
    ("camera", "stream", "folder" or "file"), `param` which setting is at fault ("source",
    or "width"/"height" when they resize frames to nothing)."""

    def __init__(self, message: str, kind: str, param: str = "source"):
        super().__init__(message)
        self.kind = kind
        self.param = param


class VideoReader:
    """A webcam, a file or a stream through cv2.VideoCapture."""

    def __init__(self, cv2, source, kind: str, timeout_ms: int, fps: float):
        self.cv2, self.kind = cv2, kind
        if kind == "camera":
            self.cap = cv2.VideoCapture(source)
            if fps:
                self.cap.set(cv2.CAP_PROP_FPS, fps)
        else:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
            self.cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG, params)
        self.opened = self.cap.isOpened()
        self.total = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "file" and self.opened else None
        self.native_fps = self.cap.get(cv2.CAP_PROP_FPS) if self.opened else 0.0
        ok, first = self.cap.read() if self.opened else (False, None)
        self.shape = first.shape if ok else None
        self.pending = first if ok else None
        self.bad: list[str] = []
        self.start = time.monotonic()

    def read(self, out: np.ndarray | None):
        """(image, pts_ms) or (None, None) at the end; decodes into `out` when it fits."""
        if self.pending is not None:
            image, self.pending = self.pending, None
            if out is not None and out.shape == image.shape:
                np.copyto(out, image)
                image = out
        else:
            ok, image = self.cap.read(out) if out is not None else self.cap.read()
            if not ok:
                return None, None
        if self.kind == "file":
            pts = self.cap.get(self.cv2.CAP_PROP_POS_MSEC)
        else:
            pts = (time.monotonic() - self.start) * 1000.0
        return image, pts

    def seek(self, index: int) -> None:
        self.pending = None
        self.cap.set(self.cv2.CAP_PROP_POS_FRAMES, index)

    def close(self) -> None:
        self.cap.release()


class FolderReader:
    """Images of a folder in name order, as if they were the frames of a video."""

    kind = "folder"
    native_fps = 0.0

    def __init__(self, cv2, folder: Path, fps: float):
        self.cv2 = cv2
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self.total = len(self.files)
        self.period_ms = 1000.0 / (fps or 30.0)
        self.index = 0
        self.opened = bool(self.files)
        self.bad: list[str] = []  # names of the files that did not decode
        first = self._load(0) if self.files else None
        self.shape = first.shape if first is not None else None

    def _load(self, index: int):
        image = self.cv2.imread(str(self.files[index]), self.cv2.IMREAD_COLOR)
        if image is None:
            self.bad.append(self.files[index].name)
        return image

    def read(self, out):
        while self.index < self.total:
            image = self._load(self.index)
            pts = self.index * self.period_ms
            self.index += 1
            if image is not None:
                if out is not None and image.shape == out.shape:
                    np.copyto(out, image)
                    image = out
                return image, pts
        return None, None

    def seek(self, index: int) -> None:
        self.index = index

    def close(self) -> None:
        pass


def open_reader(cv2, source: int | str, fps: float = 0.0, timeout_ms: int = 10000):
    """The reader for `source`: a webcam index (an int or a string of digits), a stream URL,
    a folder of images or a video file; SourceError when it cannot be read."""
    if isinstance(source, int) or source.isdigit():
        reader = VideoReader(cv2, int(source), "camera", timeout_ms, fps)
        if not reader.opened or reader.shape is None:
            raise SourceError(f"cannot open camera {source} (no such device, or it gives no frames)", "camera")
        return reader
    if source.lower().startswith(STREAM_PREFIXES):
        reader = VideoReader(cv2, source, "stream", timeout_ms, 0)
        if not reader.opened or reader.shape is None:
            raise SourceError(f"cannot open stream {source!r} (unreachable, refused or no video within {timeout_ms} ms)",
                              "stream")
        return reader
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"no such file or folder: {source!r}", "file")
    if path.is_dir():
        reader = FolderReader(cv2, path, fps)
        if not reader.opened:
            raise SourceError(f"folder {source!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})", "folder")
        if reader.shape is None:
            raise SourceError(f"cannot decode the first image of {source!r}", "folder")
        return reader
    reader = VideoReader(cv2, path, "file", timeout_ms, 0)
    if not reader.opened or reader.shape is None:
        raise SourceError(f"cannot read video file {source!r} (not a video, corrupt or truncated)", "file")
    return reader


def output_shape(shape, width: int = 0, height: int = 0) -> tuple[int, int, int]:
    """H x W x 3 of frames of `shape` resized to width x height (0 keeps that side; with
    one side 0 the aspect ratio is kept)."""
    h, w = shape[:2]
    if width and not height:
        height = max(1, round(h * width / w))
    elif height and not width:
        width = max(1, round(w * height / h))
    return (height or h, width or w, 3)


def check_frame_size(name: str, kind: str, source_shape, shape, width: int = 0, height: int = 0) -> None:
    """SourceError when the source's frames, or the frames after resizing, are smaller than
    MIN_FRAME_SIDE on a side: such a picture holds no person and nothing can draw on it."""
    least = f"frames must be at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} pixels (width x height)"
    h, w = source_shape[:2]
    if h < MIN_FRAME_SIDE or w < MIN_FRAME_SIDE:
        what, frames = {"camera": ("camera", "frames"), "stream": ("stream", "frames"),
                        "folder": ("folder", "images")}.get(kind, ("video file", "frames"))
        raise SourceError(f"{what} {name!r} has {frames} of {w}x{h} pixels, too small to hold a person; {least}", kind)
    h, w = shape[:2]
    if h < MIN_FRAME_SIDE or w < MIN_FRAME_SIDE:
        param = "width" if w < MIN_FRAME_SIDE and width else "height"
        raise SourceError(f"width {width} and height {height} resize the {source_shape[1]}x{source_shape[0]} frames of "
                          f"{name!r} to {w}x{h} pixels, too small to hold a person; {least}", kind, param)


class Frames:
    """The frames of one source as `capture` emits them: resized, mirrored, every
    (skip + 1)-th one, looped, and paced to `fps` for files and folders.

    `read(out)` fills `out` (an array of `shape`) and returns (pts_ms, index: the frame's
    number in the source), or None at the end; `end_report()` then says why it ended.
    """

    def __init__(self, source: int | str, fps: float = 0.0, width: int = 0, height: int = 0, flip: bool = False,
                 skip: int = 0, loop: bool = False, timeout_ms: int = 10000):
        self.cv2 = quiet_cv2()
        self.name = str(source)
        self.reader = open_reader(self.cv2, source, fps, timeout_ms)
        self.kind = self.reader.kind
        self.total = self.reader.total
        self.shape = output_shape(self.reader.shape, width, height)
        try:
            check_frame_size(self.name, self.kind, self.reader.shape, self.shape, width, height)
        except SourceError:
            self.reader.close()
            raise
        self.flip, self.skip = flip, skip
        self.loop = loop and self.kind in ("file", "folder")
        self.index = 0  # frames read from the source
        self.pts_offset = 0.0
        self.failures = 0
        self.period = 1.0 / fps if fps and self.kind in ("file", "folder") else 0.0
        self.next_time = time.monotonic()

    @property
    def live(self) -> bool:
        """Frames come in real time (a camera, a stream, a file paced at `fps`): a reader
        that falls behind should skip stale ones rather than see every one late."""
        return self.kind in ("camera", "stream") or self.period > 0

    def resume(self, seq: int) -> int:
        """Continue at the frame that emitted seq `seq` would be (a restarted source joins
        its stream where it stands); returns that frame's number."""
        start = seq * (self.skip + 1)
        if self.kind in ("file", "folder") and self.total:
            self.reader.seek(start % self.total if self.loop else start)
        self.index = start
        return start

    def _read_one(self, out):
        """The next decoded frame (into `out` when no resize is needed), honouring loop."""
        direct = out if out.shape == self.reader.shape and not self.flip else None
        image, pts = self.reader.read(direct)
        if image is None and self.loop and self.index:
            self.pts_offset += (self.total or self.index) * 1000.0 / (self.reader.native_fps or 30.0)
            self.reader.seek(0)
            image, pts = self.reader.read(direct)
        return image, pts

    def read(self, out: np.ndarray) -> tuple[float, int] | None:
        while True:
            image, pts = self._read_one(out)
            if image is None:
                if self.kind in ("camera", "stream") and self.failures < LIVE_READ_RETRIES:
                    self.failures += 1
                    time.sleep(0.02)
                    continue
                return None
            self.failures = 0
            self.index += 1
            if (self.index - 1) % (self.skip + 1) == 0:
                break
        if image is not out:
            if image.shape != self.shape:
                image = self.cv2.resize(image, (self.shape[1], self.shape[0]), interpolation=self.cv2.INTER_AREA)
            if self.flip:
                self.cv2.flip(image, 1, dst=out)
            else:
                np.copyto(out, image)
        if self.period:
            delay = self.next_time - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.next_time = max(self.next_time + self.period, time.monotonic() - self.period)
        index = self.index - 1
        if self.loop and self.total:
            index %= self.total  # the frame's number in the source, whatever the loop
        return float(pts + self.pts_offset), index

    def progress(self) -> tuple[int, int] | None:
        """(frames done, total) of a finite source read once; None for others."""
        if self.total and not self.loop:
            return min(self.index, self.total), self.total
        return None

    def end_report(self) -> list[tuple[str | None, str]]:
        """Why the frames ended, as (counter or None, warning) pairs: a truncated file, a
        camera or stream gone, unreadable images of a folder."""
        report = []
        if self.kind == "file" and self.total and self.index < self.total - 1:
            report.append(("truncated", f"{self.name}: the file ended after {self.index} of {self.total} frames "
                                        "(truncated or corrupt); ending the stream there"))
        elif self.kind in ("camera", "stream"):
            report.append((None, f"{self.name}: no frame for {LIVE_READ_RETRIES} reads; the source is gone, ending the stream"))
        if self.reader.bad:
            report.append((None, f"{len(self.reader.bad)} unreadable image(s) skipped: {', '.join(self.reader.bad[:5])}"))
        return report

    def close(self) -> None:
        self.reader.close()


# ----- where outputs go ------------------------------------------------------------------------
class WriteError(Exception):
    """An output that cannot be written; str() is one line, `param` names the setting at
    fault ("path", "codec" or "pattern")."""

    def __init__(self, message: str, param: str = "path"):
        super().__init__(message)
        self.param = param


def stream_path(template: str, stream: int, name: str | None = None, multi: bool = False,
                folder: bool = False) -> str:
    """A sink's path parameter for one stream, with `~` expanded.

    `{stream}` becomes the stream id and `{source}` the stream's name (the id of the source
    node that started it; the id when no name is given). With `multi` (several streams
    reach the sink) and neither placeholder in the template, the name is added so each
    stream gets its own output: before the extension for a file (out/demo.mp4 ->
    out/demo.cam1.mp4), as a subfolder for a folder (`folder`: out/frames -> out/frames/cam1).
    """
    name = str(stream) if name is None else str(name)
    path = template.replace("{stream}", str(stream)).replace("{source}", name)
    if multi and "{stream}" not in template and "{source}" not in template:
        if folder:
            path = os.path.join(path, name)
        else:
            root, ext = os.path.splitext(path)
            path = f"{root}.{name}{ext}"
    return os.path.expanduser(path)


def stream_paths(template: str, streams: dict[int, str], multi: bool, folder: bool = False) -> dict[int, str]:
    """{stream id: its path} for every stream named in `streams` ({id: name})."""
    return {stream: stream_path(template, stream, name, multi, folder) for stream, name in sorted(streams.items())}


def prepare_folder(folder: str) -> None:
    """Create `folder` (and its parents) and prove a file can be created in it."""
    folder = folder or "."
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot create folder {folder!r}: {exc.strerror or exc}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".posegraph-probe-"):
            pass
    except OSError as exc:
        raise WriteError(f"cannot write in folder {folder!r}: {exc.strerror or exc}") from None


def check_not_a_file(folder: str) -> None:
    """WriteError when a file stands where the folder `folder` should be."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise WriteError(f"{folder!r} is a file; give a folder")


def prepare_file(path: str) -> None:
    """A file path that can be written: not a folder, parent created, writable."""
    if os.path.isdir(path):
        raise WriteError(f"{path!r} is a folder; give a file path")
    prepare_folder(os.path.dirname(path))
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise WriteError(f"{path!r} is not writable")


# ----- video files -----------------------------------------------------------------------------
def video_codec(codec: str) -> str:
    """`codec` when a writer knows it: h264, vp8 or vp9 (PyAV, any case) or a 4-character
    FourCC for OpenCV (mp4v, MJPG, VP80...); WriteError naming "codec" otherwise."""
    if not isinstance(codec, str) or not (pyav_encoder(codec) or len(codec) == 4):
        raise WriteError(f"codec must be h264 (.mp4), vp8 or vp9 (.webm) or a 4-character FourCC such as "
                         f"mp4v or MJPG (.avi), not {codec!r}", "codec")
    return codec


def check_video_writer(path: str, codec: str) -> None:
    """Write a tiny video with `codec` beside `path` (posegraph.pose.encoding.probe_writer),
    so a bad path or codec fails before the first frame; WriteError naming which is at fault."""
    failed = probe_writer(path, video_codec(codec))
    if failed:
        problem, param = failed
        raise WriteError(f"cannot write {path!r} with codec {codec!r} ({problem}); h264 with .mp4, vp8 or vp9 "
                         "with .webm, MJPG with .avi work", param)


class VideoTrack:
    """One output video: its writer, opened lazily and sized by the first image.

    One output frame per input frame, always: `add(None)` (an empty packet) repeats the
    previous image, or a black frame when no image came yet, so the video keeps the
    timing of the input; frame i is stamped i / fps. `codec` h264 (the default), vp8 or
    vp9 encodes with PyAV, a FourCC (mp4v, MJPG...) with OpenCV (posegraph.pose.encoding).
    `fps` 0 takes the rate from the spacing of the first two images' pts_ms (the first
    image is held until the second arrives); no usable spacing gives 30.
    Images of another size than the first are resized to it; odd widths or heights lose
    their last column or row (encoders need even sizes). `close()` finishes the file and
    says what it wrote through `log`; a track that never got an image writes no file.
    """

    def __init__(self, path: str, codec: str = "h264", fps: float = 0.0, log=print):
        import cv2

        self.cv2 = cv2
        self.path, self.codec = path, video_codec(codec)
        self.wanted_fps, self.log = fps, log
        self.writer = None
        self.size = None          # (width, height) written, even numbers
        self.last = None          # copy of the last image written, repeated for empty packets
        self.have_last = False
        self.leading_empty = 0    # empty packets before the first image: black frames
        self.held_repeats = 0     # empty packets after the held first image
        self.first_pts = None
        self.fps = None
        self.written = 0

    def add(self, image: np.ndarray | None, pts_ms=None) -> bool:
        """Write one frame (None: an empty packet); True when the image had to be resized."""
        if image is None:
            if self.writer is not None:
                self._write(self.last)
            elif self.have_last:
                self.held_repeats += 1
            else:
                self.leading_empty += 1
            return False
        if self.size is None:
            height, width = image.shape[:2]
            self.size = (width - width % 2, height - height % 2)
            self.last = np.empty((self.size[1], self.size[0], 3), np.uint8)
        frame, resized = self._fit(image)
        if self.writer is None:
            fps = self.wanted_fps
            if not self.have_last and not fps and usable_pts(pts_ms):
                np.copyto(self.last, frame)  # hold it: the next image's pts gives the fps
                self.have_last, self.first_pts = True, float(pts_ms)
                return resized
            if not fps:
                fps = 30.0
                if self.have_last and usable_pts(pts_ms) and pts_ms > self.first_pts:
                    fps = 1000.0 * (1 + self.held_repeats) / (float(pts_ms) - self.first_pts)
                    fps = fps if 0.1 <= fps <= 1000.0 else 30.0
            self._open(fps)
        self._write(frame)
        np.copyto(self.last, frame)
        self.have_last = True
        return resized

    def _fit(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """The image as a BGR array of the track's size (a view when it already is one), and
        whether it was resized."""
        width, height = self.size
        if image.ndim == 3 and image.shape[2] == 3 and image.shape[0] >= height and image.shape[1] >= width \
                and image.shape[0] - height < 2 and image.shape[1] - width < 2:
            return image[:height, :width], False
        image = as_bgr(image)
        if image.shape[:2] == (height, width):
            return image, False
        return self.cv2.resize(image, (width, height), interpolation=self.cv2.INTER_AREA), True

    def _open(self, fps: float) -> None:
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.writer, self.fps = open_writer(self.path, self.codec, fps, self.size), fps
        if self.leading_empty:
            black = np.zeros((self.size[1], self.size[0], 3), np.uint8)
            for _ in range(self.leading_empty):
                self._write(black)
            self.leading_empty = 0
        if self.have_last:  # the held first image and the empty packets after it
            for _ in range(1 + self.held_repeats):
                self._write(self.last)
            self.held_repeats = 0

    def _write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)
        self.written += 1

    def close(self) -> None:
        if self.writer is None and self.have_last:  # one image only: no spacing to go by
            self._open(self.wanted_fps or 30.0)
        if self.writer is None:
            self.log(f"warning: no image arrived for {self.path}; nothing written")
            return
        self.writer.release()
        self.writer = None
        self.log(f"wrote {self.written} frames ({self.size[0]}x{self.size[1]}, {self.fps:g} fps) to {self.path}")


class VideoJournal:
    """Every frame given to a video, kept in a hidden file beside it until the video is
    finished (`.NAME.journal`).

    Why: an mp4 whose writer was killed cannot be read back (its index is written last),
    and a sink's frames are acknowledged as soon as it has taken them, so nobody sends them
    again. The journal is what a restarted sink rebuilds the video from. Each record is
    written with one os.write before the frame counts as taken: a SIGKILL leaves whole
    records and at most one torn last one, which `replay` cuts off. Records: seq, pts_ms
    (NaN for none) and the frame as a JPEG (empty for an empty packet); a JSON header line
    says which stream and which writer (`owner`) the file belongs to.
    """

    MAGIC = b"PGVJ1 "
    RECORD = struct.Struct("<4sqdI")  # b"FRM1", seq, pts_ms, JPEG bytes
    QUALITY = 95

    def __init__(self, video_path: str):
        folder, name = os.path.split(video_path)
        self.path = os.path.join(folder, f".{name}.journal")
        self.fd: int | None = None

    def header(self) -> dict | None:
        """The header of an existing journal, or None (none, or not ours)."""
        try:
            with open(self.path, "rb") as f:
                line = f.readline(4096)
        except OSError:
            return None
        if not line.startswith(self.MAGIC) or not line.endswith(b"\n"):
            return None
        try:
            header = json.loads(line[len(self.MAGIC):])
        except ValueError:
            return None
        return header if isinstance(header, dict) else None

    def start(self, stream: int, owner: str) -> None:
        """A new journal (an earlier one at this path is replaced)."""
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._write(self.MAGIC + json.dumps({"stream": stream, "owner": owner}).encode() + b"\n")

    def replay(self):
        """(seq, pts_ms or None, image or None, readable) of every whole record, in order;
        a torn last record is cut off, and the journal is then open for appending."""
        import cv2

        with open(self.path, "rb") as f:
            f.readline(4096)
            good = f.tell()
            while True:
                head = f.read(self.RECORD.size)
                if len(head) < self.RECORD.size:
                    break
                magic, seq, pts, length = self.RECORD.unpack(head)
                data = f.read(length)
                if magic != b"FRM1" or len(data) < length:
                    break
                good = f.tell()
                image = None
                if length:
                    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                yield seq, (None if math.isnan(pts) else pts), image, image is not None or not length
        os.truncate(self.path, good)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def append(self, seq: int, image: np.ndarray | None, pts_ms) -> None:
        """Keep one frame (None: an empty packet)."""
        import cv2

        data = b""
        if image is not None:
            ok, encoded = cv2.imencode(".jpg", as_bgr(image), [cv2.IMWRITE_JPEG_QUALITY, self.QUALITY])
            if not ok:
                raise OSError(f"cannot encode frame {seq} for {self.path!r}")
            data = encoded.tobytes()
        pts = float(pts_ms) if usable_pts(pts_ms) else math.nan
        self._write(self.RECORD.pack(b"FRM1", seq, pts, len(data)) + data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self) -> None:
        """The video is finished: the journal goes."""
        self.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class ResumableVideo:
    """A stream's output video that a restarted writer continues instead of overwriting.

    Every frame goes into the video (a VideoTrack) and into its VideoJournal. A writer that
    starts with a journal of the same stream left by the same owner (the runner of this
    run), or that starts mid-stream (`seq` > 0: restarted, alone or with its machine),
    rebuilds the video from the journal (one JPEG generation on those frames), then goes
    on; packets the journal already holds are skipped, so the file has every frame once
    and in order. Seqs missing between the journal's last frame and the first new one are
    `lost`, as are the earlier frames when a writer starting mid-stream finds no journal.
    `close()` finishes the video and removes the journal.

    The journal holds a JPEG of every frame of the file until it is finished (about 110 KB
    for a 720x1280 frame, 2 ms to encode): disk space beside the video while it is written,
    which grows without bound on a live recording. `journal` False keeps none: a restarted
    writer then starts the file again and the frames before are `lost`.
    """

    def __init__(self, path: str, codec: str, fps: float, log, stream: int, seq: int, owner: str, journal: bool = True):
        self.track = VideoTrack(path, codec, fps, log)
        self.journal = VideoJournal(path) if journal else None
        self.last = -1      # the last seq in the video
        self.kept = 0       # frames rebuilt from the journal
        self.lost = 0       # seqs the video lacks
        self.resized = 0    # rebuilt frames that were resized
        header = self.journal.header() if self.journal else None
        if self.journal is None:
            pass
        elif header and header.get("stream") == stream and (header.get("owner") == owner or seq > 0):
            for frame_seq, pts, image, readable in self.journal.replay():
                self.resized += self.track.add(image, pts)
                self.lost += not readable
                self.kept += 1
                self.last = frame_seq
        else:
            self.journal.start(stream, owner)
        if seq > self.last + 1:  # nothing in the file stands for these seqs
            self.lost += seq - self.last - 1

    @property
    def path(self) -> str:
        return self.track.path

    def add(self, seq: int, image: np.ndarray | None, pts_ms=None) -> bool | None:
        """Write the frame of `seq` (None: an empty packet); None when the video already has
        it, else whether the image had to be resized."""
        if seq <= self.last:
            return None
        if self.journal is not None:
            self.journal.append(seq, image, pts_ms)
        resized = self.track.add(image, pts_ms)
        self.last = seq
        return resized

    def close(self) -> None:
        self.track.close()
        if self.journal is not None:
            self.journal.remove()


class StreamOutput:
    """What a sink holds for one stream (its keyed state): the output, made on the stream's
    first packet, and closed with the state when the stream ends."""

    def __init__(self):
        self.output = None

    def close(self) -> None:
        output, self.output = self.output, None
        if output is not None:
            output.close()


# ----- image folders ---------------------------------------------------------------------------
class ImageWriter:
    """Writes frames as image files named by a pattern ({stream}, {source}, {seq}, {index}),
    whose extension picks the format; `quality` (0..100) is for jpg and webp."""

    def __init__(self, pattern: str, quality: int = 90):
        import cv2

        self.cv2 = cv2
        try:
            sample = pattern.format(stream=0, source="cam", seq=0, index=0)
        except (KeyError, IndexError, ValueError) as exc:
            raise WriteError(f"{pattern!r} cannot be filled in ({type(exc).__name__}: {exc}); "
                             "it may use {stream}, {source}, {seq} and {index}", "pattern") from None
        if not cv2.haveImageWriter(sample):
            raise WriteError(f"OpenCV cannot write images named like {sample!r}; use .jpg, .png or .webp", "pattern")
        ext = os.path.splitext(sample)[1].lower()
        self.pattern = pattern
        self.options = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, quality], ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, quality],
                        ".webp": [cv2.IMWRITE_WEBP_QUALITY, max(1, quality)]}.get(ext, [])
        self.made: set[str] = set()  # folders known to exist

    def write(self, folder: str, image: np.ndarray, stream: int, source: str, seq: int, index: int) -> str:
        """Write one image into `folder`; its path."""
        path = os.path.join(folder, self.pattern.format(stream=stream, source=source, seq=seq, index=index))
        parent = os.path.dirname(path)
        if parent not in self.made:  # a pattern with sub-folders, e.g. {stream}/{seq:06d}.png
            os.makedirs(parent, exist_ok=True)
            self.made.add(parent)
        if not self.cv2.imwrite(path, image, self.options):
            raise OSError(f"cannot write {path!r}")
        return path


# ----- windows -----------------------------------------------------------------------------------
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
        lines = [line for line in probe.stderr.splitlines() if line.strip()]
        return f"cannot open a window on display {display!r}" + (f" ({lines[0].strip()})" if lines else "")
    return None


class Windows:
    """One on-screen window per stream, titled `title` (the later ones `title [stream]`),
    sized at first to fit a 1600x900 area of the screen."""

    def __init__(self, title: str):
        import cv2

        self.cv2, self.title = cv2, title
        self.names: dict[int, str] = {}

    def show(self, stream: int, image: np.ndarray) -> None:
        cv2 = self.cv2
        name = self.names.get(stream)
        if name is None:
            name = self.names[stream] = self.title if not self.names else f"{self.title} [{stream}]"
            cv2.namedWindow(name, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
            height, width = image.shape[:2]
            fit = min(1.0, 1600 / width, 900 / height)  # a 720x1280 portrait clip fits a 1080p screen
            cv2.resizeWindow(name, max(1, int(width * fit)), max(1, int(height * fit)))
        cv2.imshow(name, image)
        cv2.waitKey(1)

    def close(self) -> None:
        if self.names:
            self.cv2.destroyAllWindows()
