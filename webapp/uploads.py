"""What an upload must be: a known graph, a plain file name with a video extension, a size
within the limit, and a file OpenCV can open and read a frame of at least 2x2 pixels from.
Every refusal is an UploadError with an HTTP status and a message meant for the person
uploading."""
from __future__ import annotations

import os
from pathlib import Path

from posegraph.pose.media import MIN_FRAME_SIDE

# graph name -> (graph file relative to the project root, what it does); the first is the page's default
# (DTW: the classifier that held best on people and places it never saw, README "Measured")
GRAPHS = {
    "dtw": ("graphs/video_dtw.yaml", "DTW exercise classifier (squat, jumping jack, plank, russian twist, or unknown) with repetitions"),
    "tcn": ("graphs/video_tcn.yaml", "TCN exercise classifier (squat, jumping jack, plank, russian twist, or unknown) with repetitions"),
    "knn": ("graphs/video_knn.yaml", "KNN exercise classifier, pose by pose (the same classes, or unknown) with repetitions"),
    "lstm": ("graphs/video_lstm.yaml", "LSTM exercise classifier (the same classes, or unknown) with repetitions"),
}
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
MAX_NAME = 255


class UploadError(Exception):
    """A refused upload: `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def check_graph(name: str | None) -> str:
    if not name:
        raise UploadError(f"no graph chosen; choose one of: {', '.join(GRAPHS)}")
    if name not in GRAPHS:
        raise UploadError(f"unknown graph {name!r}; choose one of: {', '.join(GRAPHS)}")
    return name


def check_name(name: str | None) -> str:
    """The lower-case extension of an acceptable file name; refuses, never repairs, a bad one."""
    if not name:
        raise UploadError("no file name given (?name=FILENAME)")
    shown = name.replace("\0", "\\0")[:80]
    if len(name) > MAX_NAME:
        raise UploadError(f"file name is too long ({len(name)} characters; at most {MAX_NAME})")
    if "\0" in name or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise UploadError(f"file name {shown!r} is refused: it contains control characters")
    if "/" in name or "\\" in name:
        raise UploadError(f"file name {shown!r} is refused: a name must not contain '/' or '\\' (no folders or paths)")
    if ".." in name:
        raise UploadError(f"file name {shown!r} is refused: it contains '..'")
    if name.startswith(".") or name.strip() != name:
        raise UploadError(f"file name {shown!r} is refused: hidden names and names with leading or trailing spaces are not accepted")
    if len(name) >= 2 and name[1] == ":":
        raise UploadError(f"file name {shown!r} is refused: it looks like a drive path")
    ext = os.path.splitext(name)[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        raise UploadError(f"file name {shown!r} has extension {ext or '(none)'!r}; accepted: {' '.join(VIDEO_EXTENSIONS)}")
    return ext


def check_length(header: str | None, max_bytes: int, chunked: bool = False) -> int:
    """The body length announced by Content-Length, checked before a byte is read."""
    if chunked or header is None:
        raise UploadError("the upload needs a Content-Length header (send the file as the raw request body)", 411)
    try:
        length = int(header)
    except ValueError:
        raise UploadError(f"bad Content-Length {header[:40]!r}") from None
    if length < 0:
        raise UploadError(f"bad Content-Length {header[:40]!r}")
    if length == 0:
        raise UploadError("the file is empty")
    if length > max_bytes:
        raise UploadError(f"the file is {length / 1e6:.1f} MB; the limit is {max_bytes / 1e6:g} MB", 413)
    return length


def receive(rfile, length: int, dest: Path, max_bytes: int, chunk: int = 1 << 20) -> int:
    """Stream exactly `length` body bytes into a new file `dest`, counting as it goes.

    The file is created exclusively (never through a symlink); on any failure it is removed."""
    received = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            while received < length:
                data = rfile.read(min(chunk, length - received))
                if not data:
                    raise UploadError(f"the upload stopped after {received} of {length} bytes")
                received += len(data)
                if received > max_bytes:  # cannot happen with an honest length; counted anyway
                    raise UploadError(f"the file is over the limit of {max_bytes / 1e6:g} MB", 413)
                out.write(data)
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise UploadError(f"the upload failed: {exc.strerror or exc}") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return received


def probe_video(path: Path) -> int:
    """The clip's frame count (0 when the container does not say); refuses a file that OpenCV
    cannot open or read a first frame from."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UploadError("the file is not a video this server can read (OpenCV cannot open it)", 400)
        ok, frame = cap.read()
        if not ok or frame is None:
            raise UploadError("the file is not a video this server can read (OpenCV opens it but reads no frame)", 400)
        height, width = frame.shape[:2]
        if min(height, width) < MIN_FRAME_SIDE:
            raise UploadError(f"the video's frames are {width}x{height} pixels, too small to hold a person; "
                              f"frames must be at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} pixels (width x height)", 400)
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        return int(count) if count and count > 0 else 0
    finally:
        cap.release()
