"""What an upload must be: a known graph, a plain file name with a video extension, a size
within the limit, and a file OpenCV can open and read a frame of at least 2x2 pixels from.
Every refusal is an UploadError with an HTTP status and a message meant for the person
uploading.

An upload comes either as the raw request body (`receive`) or as multipart/form-data, as
`curl -F file=@clip.mp4` and HTML forms send it (`receive_multipart`); both stream the file
to disk in chunks, count it against the limit as it comes, and remove it on any refusal."""
from __future__ import annotations

import os
from email.parser import HeaderParser
from pathlib import Path

from posegraph.pose.media import MIN_FRAME_SIDE

# graph name -> (graph file relative to the project root, what it does); the first is the page's default
# (DTW: the classifier that held best on people and places it never saw, docs/accuracy.md)
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
    """The graph an upload names; none named: the default (the first of GRAPHS), so a bare
    `curl -F file=@clip.mp4` works."""
    if not name:
        return next(iter(GRAPHS))
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


def check_length(header: str | None, max_bytes: int, chunked: bool = False, multipart: bool = False) -> int:
    """The body length announced by Content-Length, checked before a byte is read. A form
    (multipart) body may exceed the file limit by its part headers and boundaries
    (MULTIPART_SLACK); the file inside it is counted against the limit while streaming."""
    if chunked or header is None:
        how = "send the form with a known length" if multipart else "send the file as the raw request body"
        raise UploadError(f"the upload needs a Content-Length header ({how})", 411)
    try:
        length = int(header)
    except ValueError:
        raise UploadError(f"bad Content-Length {header[:40]!r}") from None
    if length < 0:
        raise UploadError(f"bad Content-Length {header[:40]!r}")
    if length == 0:
        raise UploadError("the file is empty")
    if length > max_bytes + (MULTIPART_SLACK if multipart else 0):
        what = "upload" if multipart else "file"
        raise UploadError(f"the {what} is {length / 1e6:.1f} MB; the limit is {max_bytes / 1e6:g} MB", 413)
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


# ---- multipart/form-data (RFC 7578) ----

MULTIPART_SLACK = 64 << 10   # a form body's allowance over the file limit: part headers, boundaries, small fields
FORM_FIELDS = ("file", "graph", "name")   # `file`: the video; `graph`, `name`: as the query's
MAX_PARTS = 8
MAX_PART_HEADERS = 8 << 10
MAX_FIELD = 1 << 10


def multipart_boundary(content_type: str | None) -> str | None:
    """The boundary of a multipart/form-data Content-Type, None for any other type (a raw
    upload); a form without a usable boundary is refused."""
    if not content_type:
        return None
    header = HeaderParser().parsestr(f"Content-Type: {content_type}\r\n\r\n")
    if header.get_content_type() != "multipart/form-data":
        if header.get_content_maintype() == "multipart":
            raise UploadError(f"{header.get_content_type()} is not accepted; send multipart/form-data or the raw file", 415)
        return None
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70 or not boundary.isascii() \
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in boundary):
        raise UploadError("the multipart/form-data upload has no valid boundary in its Content-Type")
    return boundary


class Body:
    """Reads exactly `length` bytes of a request body in chunks, keeping at most one chunk
    and a delimiter's length in memory; `left` is what is still unread on the socket."""

    def __init__(self, rfile, length: int, chunk: int = 1 << 20):
        self.rfile, self.length, self.left, self.chunk = rfile, length, length, chunk
        self.buf = b""

    def _fill(self) -> bool:
        if self.left <= 0:
            return False
        data = self.rfile.read(min(self.chunk, self.left))
        if not data:
            raise UploadError(f"the upload stopped after {self.length - self.left} of {self.length} bytes")
        self.left -= len(data)
        self.buf += data
        return True

    def stream_until(self, delimiter: bytes, sink) -> None:
        """Pass everything before `delimiter` to sink(bytes), piece by piece, and consume the
        delimiter; refuses a body that ends first."""
        keep = len(delimiter) - 1
        while True:
            at = self.buf.find(delimiter)
            if at >= 0:
                if at:
                    sink(self.buf[:at])
                self.buf = self.buf[at + len(delimiter):]
                return
            if len(self.buf) > keep:
                sink(self.buf[:len(self.buf) - keep])
                self.buf = self.buf[len(self.buf) - keep:]
            if not self._fill():
                raise UploadError("the multipart/form-data upload ends before its closing boundary")

    def read_until(self, delimiter: bytes, limit: int, what: str) -> bytes:
        """The bytes before `delimiter` (consumed), when they are at most `limit` bytes."""
        held = []

        def collect(data: bytes) -> None:
            held.append(data)
            if sum(map(len, held)) > limit:
                raise UploadError(f"the multipart/form-data upload has {what} over {limit} bytes")

        self.stream_until(delimiter, collect)
        return b"".join(held)

    def startswith(self, prefix: bytes) -> bool:
        while len(self.buf) < len(prefix) and self._fill():
            pass
        return self.buf.startswith(prefix)

    def discard_rest(self) -> None:
        self.buf = b""
        while self._fill():
            self.buf = b""


def receive_multipart(body: Body, boundary: str, dest: Path, max_bytes: int) -> tuple[dict[str, str], str | None, int]:
    """Stream a multipart/form-data body: the `file` part into a new file `dest` (created
    exclusively, never through a symlink; removed on any failure), the small text fields
    `graph` and `name` into memory. Returns (fields, the file part's filename, file size).

    Refused: no or two `file` parts, unknown or repeated fields, parts that are not
    form-data, headers or fields over their small limits, more than MAX_PARTS parts, a
    file over `max_bytes` (counted while streaming) and a body cut short."""
    delimiter = b"\r\n--" + boundary.encode("ascii")
    body.buf = b"\r\n"   # the first boundary may open the body: read it as if after a line break
    body.stream_until(delimiter, lambda data: None)   # the preamble, discarded
    fields: dict[str, str] = {}
    filename, size, parts = None, None, 0
    try:
        while True:
            if body.startswith(b"--"):   # the closing boundary; what follows (the epilogue) is discarded
                body.discard_rest()
                break
            padding = body.read_until(b"\r\n", 256, "a boundary line")
            if padding.strip(b" \t"):
                raise UploadError("the multipart/form-data upload has a malformed boundary line")
            parts += 1
            if parts > MAX_PARTS:
                raise UploadError(f"the form has more than {MAX_PARTS} parts")
            raw = b"" if body.startswith(b"\r\n") else body.read_until(b"\r\n\r\n", MAX_PART_HEADERS, "part headers")
            if not raw:
                body.buf = body.buf[2:]
            try:
                headers = HeaderParser().parsestr(raw.decode("utf-8") + "\r\n\r\n")
            except UnicodeDecodeError:
                raise UploadError("the form's part headers are not UTF-8") from None
            if headers.get_content_disposition() != "form-data":
                raise UploadError("a part of the form has no Content-Disposition: form-data header")
            name = headers.get_param("name", header="content-disposition")
            if not isinstance(name, str) or name not in FORM_FIELDS:
                shown = name if isinstance(name, str) else "(none)"
                raise UploadError(f"unknown form field {shown[:40]!r}; the form's fields are: {', '.join(FORM_FIELDS)}")
            if name in fields or (name == "file" and size is not None):
                raise UploadError(f"the form field {name!r} is given more than once")
            if name == "file":
                filename = headers.get_filename()
                size = _stream_file(body, delimiter, dest, max_bytes)
            else:
                value = body.read_until(delimiter, MAX_FIELD, f"a field {name!r}")
                try:
                    fields[name] = value.decode("utf-8")
                except UnicodeDecodeError:
                    raise UploadError(f"the form field {name!r} is not UTF-8 text") from None
        if size is None:
            raise UploadError("the form has no 'file' field (curl -F file=@clip.mp4)")
        if size == 0:
            raise UploadError("the file is empty")
    except OSError as exc:   # the socket (a stalled client) or the disk
        dest.unlink(missing_ok=True)
        raise UploadError(f"the upload failed: {exc.strerror or exc}") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return fields, filename, size


def _stream_file(body: Body, delimiter: bytes, dest: Path, max_bytes: int) -> int:
    received = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as out:
        def write(data: bytes) -> None:
            nonlocal received
            received += len(data)
            if received > max_bytes:
                raise UploadError(f"the file is over the limit; the limit is {max_bytes / 1e6:g} MB", 413)
            out.write(data)

        try:
            body.stream_until(delimiter, write)
        except OSError as exc:
            raise UploadError(f"the upload failed: {exc.strerror or exc}") from None
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
