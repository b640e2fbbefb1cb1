"""`capture`: frames from a webcam, a video file, a folder of images or a stream URL.

Frames are decoded straight into the node's shared-memory output slots (OpenCV writes
into the array it is given), so a 720p frame costs one decode and no copy on its way to
the pose node. A source that cannot be opened stops the graph at start with a one-line
error naming it; a file that ends early (truncated or corrupt) ends the stream cleanly
with a warning instead of hanging.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from posegraph import EndOfStream, Node, NodeOpenError, Param

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
LIVE_READ_RETRIES = 25  # consecutive failed reads before a camera or stream counts as gone


def _quiet_cv2():
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")  # our one-line errors say what failed
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    return cv2


class _VideoSource:
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


class _FolderSource:
    """Images of a folder in name order, as if they were the frames of a video."""

    def __init__(self, cv2, folder: Path, fps: float):
        self.cv2 = cv2
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self.total = len(self.files)
        self.period_ms = 1000.0 / (fps or 30.0)
        self.index = 0
        self.opened = bool(self.files)
        self.bad: list[str] = []
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


class Capture(Node):
    OUTPUTS = {"frame": "{'image': uint8 HxWx3 BGR, 'pts_ms': source timestamp, 'index': frame number}"}
    PARAMS = {
        "source": Param(0, type=(int, str), help="webcam index, video file, folder of images, or rtsp/http URL"),
        "fps": Param(0.0, min=0.0, max=1000.0, help="target frames per second; 0: as fast as the graph takes them (files) or the device's rate"),
        "width": Param(0, min=0, max=7680, help="resize to this width (0 keeps; with height 0 the aspect is kept)"),
        "height": Param(0, min=0, max=4320, help="resize to this height (0 keeps; with width 0 the aspect is kept)"),
        "flip": Param(False, help="mirror horizontally (selfie view)"),
        "skip": Param(0, min=0, max=1000, help="after each frame emitted, skip this many"),
        "loop": Param(False, help="start a file or folder again at its end"),
        "timeout_ms": Param(10000, min=100, max=600000, help="open/read timeout for stream URLs"),
    }
    STATEFUL = True

    def open(self, ctx):
        cv2 = self.cv2 = _quiet_cv2()
        source = self.params["source"]
        self.name = str(source)
        if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
            self.kind = "camera"
            self.reader = _VideoSource(cv2, int(source), "camera", self.params["timeout_ms"], self.params["fps"])
            if not self.reader.opened or self.reader.shape is None:
                raise NodeOpenError(f"cannot open camera {source} (no such device, or it gives no frames); "
                                    f"to run this graph on a file: --set {ctx.node_id}.source=path/to/video.mp4", field="params.source")
        elif source.lower().startswith(STREAM_PREFIXES):
            self.kind = "stream"
            self.reader = _VideoSource(cv2, source, "stream", self.params["timeout_ms"], 0)
            if not self.reader.opened or self.reader.shape is None:
                raise NodeOpenError(f"cannot open stream {source!r} (unreachable, refused or no video within "
                                    f"{self.params['timeout_ms']} ms)", field="params.source")
        else:
            path = Path(source).expanduser()
            if not path.exists():
                raise NodeOpenError(f"no such file or folder: {source!r}", field="params.source")
            if path.is_dir():
                self.kind = "folder"
                self.reader = _FolderSource(cv2, path, self.params["fps"])
                if not self.reader.opened:
                    raise NodeOpenError(f"folder {source!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})", field="params.source")
                if self.reader.shape is None:
                    raise NodeOpenError(f"cannot decode the first image of {source!r}", field="params.source")
            else:
                self.kind = "file"
                self.reader = _VideoSource(cv2, path, "file", self.params["timeout_ms"], 0)
                if not self.reader.opened or self.reader.shape is None:
                    raise NodeOpenError(f"cannot read video file {source!r} (not a video, corrupt or truncated)", field="params.source")
        self.total = self.reader.total
        self.out_shape = self._output_shape(self.reader.shape)
        self.index = 0  # frames read from the source
        self.emitted = 0
        self.pts_offset = 0.0
        self.failures = 0
        self.period = 1.0 / self.params["fps"] if self.params["fps"] and self.kind in ("file", "folder") else 0.0
        self.next_time = time.monotonic()
        self.started = False

    def _resume(self, ctx) -> None:
        """A source asked for a first seq above 0 was restarted mid-stream (alone or with
        its machine): continue the file where the stream stands instead of replaying it."""
        start = ctx.seq * (self.params["skip"] + 1)
        if self.kind in ("file", "folder") and self.total:
            self.reader.seek(start % self.total if self.params["loop"] else start)
        self.index = start
        self.emitted = ctx.seq
        ctx.log(f"resuming at frame {start}")

    def _output_shape(self, shape):
        h, w = shape[:2]
        tw, th = self.params["width"], self.params["height"]
        if tw and not th:
            th = max(1, round(h * tw / w))
        elif th and not tw:
            tw = max(1, round(w * th / h))
        return (th or h, tw or w, 3)

    def _read_one(self, out):
        """The next decoded frame (into `out` when no resize is needed), honouring loop."""
        direct = out if out.shape == self.reader.shape and not self.params["flip"] else None
        image, pts = self.reader.read(direct)
        if image is None and self.params["loop"] and self.kind in ("file", "folder") and self.index:
            self.pts_offset += self._duration_ms()
            self.reader.seek(0)
            image, pts = self.reader.read(direct)
        return image, pts

    def _duration_ms(self) -> float:
        fps = getattr(self.reader, "native_fps", 0.0) or 30.0
        return (self.total or self.index) * 1000.0 / fps

    def process(self, inputs, ctx):
        if not self.started:
            self.started = True
            if ctx.seq:
                self._resume(ctx)
        skip = self.params["skip"]
        out = ctx.alloc("frame", self.out_shape, np.uint8, name="image")
        while True:
            image, pts = self._read_one(out)
            if image is None:
                if self.kind in ("camera", "stream") and self.failures < LIVE_READ_RETRIES:
                    self.failures += 1
                    time.sleep(0.02)
                    continue
                self._end(ctx)
            self.failures = 0
            self.index += 1
            if (self.index - 1) % (skip + 1) == 0:
                break
        if image is not out:
            cv2 = self.cv2
            if image.shape != self.out_shape:
                image = cv2.resize(image, (self.out_shape[1], self.out_shape[0]), interpolation=cv2.INTER_AREA)
            if self.params["flip"]:
                cv2.flip(image, 1, dst=out)
            else:
                np.copyto(out, image)
        if self.period:
            delay = self.next_time - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.next_time = max(self.next_time + self.period, time.monotonic() - self.period)
        ctx.capture_ns = time.time_ns()
        self.emitted += 1
        if self.total and not self.params["loop"]:
            ctx.progress(min(self.index, self.total), self.total)
        index = self.index - 1
        if self.params["loop"] and self.total:
            index %= self.total  # the frame's number in the source, whatever the loop
        return {"frame": {"image": out, "pts_ms": float(pts + self.pts_offset), "index": index}}

    def _end(self, ctx):
        if self.kind == "file" and self.total and self.index < self.total - 1:
            ctx.log(f"warning: {self.name}: the file ended after {self.index} of {self.total} frames "
                    "(truncated or corrupt); ending the stream there")
            ctx.count("truncated")
        elif self.kind in ("camera", "stream"):
            ctx.log(f"warning: {self.name}: no frame for {LIVE_READ_RETRIES} reads; the source is gone, ending the stream")
        if self.kind == "folder" and self.reader.bad:
            ctx.log(f"warning: {len(self.reader.bad)} unreadable image(s) skipped: {', '.join(self.reader.bad[:5])}")
        raise EndOfStream

    def close(self):
        if hasattr(self, "reader"):
            self.reader.close()
