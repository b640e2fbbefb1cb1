"""Video encoders behind the `video` sink's VideoTrack (posegraph.pose.media): H.264, VP8
and VP9 through PyAV (FFmpeg with libx264 and libvpx, bundled in the `av` wheel), any
other FourCC through OpenCV's VideoWriter.

Why PyAV: OpenCV's wheels write MPEG-4 part 2 (mp4v) into .mp4, which browsers do not
play. H.264 here is yuv420p, Constrained Baseline, BT.601 tagged, in an MP4 whose index
(moov) comes before the frames (faststart), so Chromium, Firefox, Safari and phones play it,
and start before the whole file has downloaded. Frame i is stamped i / fps, so the file
lasts exactly frames / fps.

Plain values in (path, codec name, fps, size), BGR uint8 images in; `open_writer` raises
OSError, `probe_writer` says in one line why a tiny file could not be written and which
setting ("path" or "codec") is at fault. Neither OpenCV nor PyAV is imported at import time.
"""
from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

# codec names (any case) written through PyAV: {name: FFmpeg encoder}
PYAV_CODECS = {"h264": "libx264", "avc1": "libx264", "x264": "libx264", "vp8": "libvpx", "vp9": "libvpx-vp9"}
FASTSTART_SUFFIXES = {".mp4", ".m4v", ".mov"}  # MP4-family muxers: move the index to the front
ENCODER_OPTIONS = {
    # ultrafast: Constrained Baseline (every H.264 decoder), 5 ms of CPU per 720x1280 frame
    # (mp4v: 3.6, veryfast: 14.6), so a live graph keeps its pace; about 1.5x mp4v's size at
    # a better PSNR (44 dB against 40 on the bundled clip). crf 23: x264's default quality
    "libx264": {"crf": "23", "preset": "ultrafast"},
    "libvpx": {"crf": "10", "deadline": "realtime", "cpu-used": "8"},
    "libvpx-vp9": {"crf": "32", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
}
BIT_RATES = {"libvpx": 4_000_000, "libvpx-vp9": 0}  # VP8's crf needs a ceiling; VP9's 0: quality only
BT601 = 6  # SMPTE 170M: the matrix, primaries and transfer of OpenCV's BGR -> YUV
LIMITED_RANGE = 1


def pyav_encoder(codec: str) -> str | None:
    """The FFmpeg encoder PyAV writes `codec` with (h264, vp8, vp9; any case), or None for
    a name OpenCV writes (a FourCC such as mp4v or MJPG)."""
    return PYAV_CODECS.get(codec.lower())


def video_rate(fps: float) -> Fraction:
    """fps as the fraction the file's time base is built on (29.97 -> 30000/1001)."""
    return Fraction(float(fps)).limit_denominator(1001)


class PyAVWriter:
    """Encodes BGR frames of one size with PyAV; frame i gets pts i in a 1/fps time base."""

    def __init__(self, path: str, codec: str, fps: float, size: tuple[int, int]):
        import av
        import cv2

        self.av, self.cv2 = av, cv2
        encoder = pyav_encoder(codec)
        options = {"movflags": "+faststart"} if os.path.splitext(path)[1].lower() in FASTSTART_SUFFIXES else {}
        try:
            self.container = av.open(path, "w", container_options=options)
        except (OSError, ValueError, av.FFmpegError) as exc:
            raise OSError(f"PyAV cannot open {path!r}: {exc}") from None
        try:
            stream = self.container.add_stream(encoder, rate=video_rate(fps))
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.options = dict(ENCODER_OPTIONS.get(encoder, {}))
            if encoder in BIT_RATES:
                stream.bit_rate = BIT_RATES[encoder]
            context = stream.codec_context
            context.colorspace = context.color_primaries = context.color_trc = BT601
            context.color_range = LIMITED_RANGE
        except (ValueError, av.FFmpegError) as exc:
            self.container.close()
            raise OSError(f"PyAV cannot write {codec} into {path!r}: {exc}") from None
        self.stream, self.count = stream, 0

    def write(self, image: np.ndarray) -> None:
        # OpenCV's BGR -> I420 is BT.601 limited range, as tagged: 5x faster than swscale's
        # and exact where swscale's fast path darkens by up to 4 levels
        frame = self.av.VideoFrame.from_ndarray(self.cv2.cvtColor(image, self.cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        frame.pts = self.count
        self.count += 1
        self.container.mux(self.stream.encode(frame))

    def release(self) -> None:
        """Flush the encoder and finish the file (faststart moves the index to the front)."""
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()


class OpenCVWriter:
    """OpenCV's VideoWriter for a FourCC (mp4v, MJPG, VP80, XVID...)."""

    def __init__(self, path: str, codec: str, fps: float, size: tuple[int, int]):
        import cv2

        self.writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), float(fps), size)
        if not self.writer.isOpened():
            raise OSError(f"OpenCV's VideoWriter cannot open {path!r} ({size[0]}x{size[1]}, {codec})")

    def write(self, image: np.ndarray) -> None:
        self.writer.write(image)

    def release(self) -> None:
        self.writer.release()


def open_writer(path: str, codec: str, fps: float, size: tuple[int, int]):
    """A writer (write(bgr image), release()) for `codec`; OSError when it cannot open."""
    if pyav_encoder(codec):
        return PyAVWriter(path, codec, fps, size)
    return OpenCVWriter(path, codec, fps, size)


def _probe_path(path: str) -> str:
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.probe-{os.getpid()}{ext}")


def _probe_opencv(path: str, fourcc: str) -> str | None:
    """Have OpenCV write a tiny video beside `path` (same extension): why it fails, or None."""
    import cv2

    probe = _probe_path(path)
    logging = getattr(getattr(cv2, "utils", None), "logging", cv2)  # OpenCV 4.12+ moved cv2.getLogLevel there
    level = logging.getLogLevel()
    logging.setLogLevel(0)  # FFmpeg's complaints would print several lines; we say it in one
    try:
        writer = cv2.VideoWriter(probe, cv2.VideoWriter_fourcc(*fourcc), 30.0, (64, 64))
        ok = writer.isOpened()
        if ok:
            writer.write(np.zeros((64, 64, 3), np.uint8))
        writer.release()
    except cv2.error:
        ok = False
    finally:
        logging.setLogLevel(level)
        _unlink(probe)
    return None if ok else "VideoWriter did not open"


def _probe_pyav(path: str, codec: str) -> tuple[str, str] | None:
    """Have PyAV write two tiny frames beside `path`: (why it fails, "path" or "codec"), or None."""
    try:
        import av
    except ImportError:
        return "PyAV is not installed (pip install av)", "codec"
    encoder = pyav_encoder(codec)
    try:
        av.codec.Codec(encoder, "w")
    except (ValueError, av.FFmpegError):
        return f"this FFmpeg has no {encoder} encoder", "codec"
    probe = _probe_path(path)
    try:
        try:
            with open(probe, "wb"):  # PyAV opens the file only when the first frame is written
                pass
        except OSError as exc:
            return f"cannot create a file there ({exc.strerror or exc})", "path"
        try:
            container = av.open(probe, "w")
        except (OSError, ValueError, av.FFmpegError) as exc:
            return f"no container format for this path ({exc})", "path"
        try:
            if encoder not in container.supported_codecs:
                return f"the {container.format.name} format cannot hold {codec}", "codec"
        finally:
            container.close()
        writer = PyAVWriter(probe, codec, 30.0, (64, 64))
        for _ in range(2):
            writer.write(np.zeros((64, 64, 3), np.uint8))
        writer.release()
    except OSError as exc:
        return str(exc).replace(probe, path), "codec"
    finally:
        _unlink(probe)
    return None


def probe_writer(path: str, codec: str) -> tuple[str, str] | None:
    """Write a tiny video with `codec` beside `path` (same extension, removed after), so a
    bad path or codec is known before the first frame: (why it failed, "path" or
    "codec"), or None when it works."""
    if not os.path.splitext(path)[1]:
        return "the path has no extension, so there is no container format", "path"
    if pyav_encoder(codec):
        return _probe_pyav(path, codec)
    problem = _probe_opencv(path, codec)
    if problem is None:
        return None
    # the same container with mp4v works: the codec is at fault, not the path
    return problem, "codec" if _probe_opencv(path, "mp4v") is None else "path"


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
