"""What PoseGraph says on the terminal goes through `logging`, under the `posegraph` logger.

Node code's `ctx.log` writes to `posegraph.node.<id>.<replica>`; the runner's warnings and
errors to `posegraph.runner`. A node process and the runner each call `setup` once, which
prints every line as it always read (`[pose.0] message`, `warning: ...`) on stderr; an
application embedding PoseGraph can instead attach its own handlers to `posegraph`.

A node process's standard error is not the terminal: the runner reads it through a pipe
(`WorkerOutput`, at the file-descriptor level, so the native libraries' own lines come
too), drops the known noise of those libraries (`NOISE`, unless `-v`), prefixes every
other line with the process's name and prints it above the live table
(posegraph.terminal). `verbosity()` is the command line's -q / -v.
"""
from __future__ import annotations

import logging
import os
import queue
import re
import selectors
import sys
import threading
import time
from typing import Callable

NODE_PREFIX = "posegraph.node."

# Lines native libraries write straight to file descriptor 2 of a node process, known to
# tell a user nothing (each seen in this project's runs): TensorFlow Lite announcing its CPU
# delegate, absl's note before its log is set up, MediaPipe's feedback-tensor notice (glog
# format: W, date, time, thread, file:line]) and its GL context's info line, and
# TensorFlow's start-up banners. A run leaves them off the terminal (`-v` shows them; with
# `-q` they are in the log file with everything else). Nothing else is dropped: an unknown
# line, and any error or fatal (E/F) line, is always shown.
NOISE = tuple(re.compile(pattern) for pattern in (
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"^W\d{4} [\d:.]+ +\d+ inference_feedback_manager\.cc:\d+\] Feedback manager requires a model with a single "
    r"signature inference\. Disabling support for feedback tensors\.$",
    r"^I\d{4} [\d:.]+ +\d+ gl_context(_egl)?\.cc:\d+\] ",
    r"^(\S+ \S+: )?I \S+/(port|cpu_feature_guard)\.cc:\d+\] (oneDNN custom operations are on|This TensorFlow binary "
    r"is optimized to use available CPU instructions)",
    r"^To enable the following instructions: .*, in other operations, rebuild TensorFlow with the appropriate compiler flags\.$",
))

_verbosity = 0


def set_verbosity(level: int) -> None:
    """-1: quiet (-q), 0: normal, 1 and more: verbose (-v): what runs started from now show."""
    global _verbosity
    _verbosity = int(level)


def verbosity() -> int:
    return _verbosity


def is_noise(line: str) -> bool:
    """Whether `line` (one line of a node process's stderr) is known native noise (NOISE)."""
    return any(pattern.search(line) for pattern in NOISE)


class LineFormatter(logging.Formatter):
    """A node's lines start with its name in brackets; the runner's lines are bare."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name.startswith(NODE_PREFIX):
            return f"[{record.name[len(NODE_PREFIX):]}] {message}"
        return message


class _LineHandler(logging.Handler):
    """Hands each formatted line and its level to `write` (the runner's terminal: above its
    live table)."""

    def __init__(self, write: Callable[[str, int], None]):
        super().__init__()
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record), record.levelno)
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


def setup(stream=None, level: int = logging.INFO, write: Callable[[str, int], None] | None = None) -> logging.Handler:
    """Send `posegraph` log lines to `stream` (stderr), one per line, flushed; or, with
    `write`, hand each line and its level to it."""
    logger = logging.getLogger("posegraph")
    for handler in list(logger.handlers):
        if getattr(handler, "posegraph_line_handler", False):
            logger.removeHandler(handler)
    handler = _LineHandler(write) if write is not None else logging.StreamHandler(stream or sys.stderr)
    handler.posegraph_line_handler = True
    handler.setFormatter(LineFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler


def remove(handler: logging.Handler) -> None:
    """Undo `setup` (a runner embedded in a longer-lived program)."""
    logging.getLogger("posegraph").removeHandler(handler)
    handler.flush()


runner = logging.getLogger("posegraph.runner")


class WorkerOutput:
    """The output of every node process, read through a pipe per process and stream in a
    thread of its own: a process writing a lot never blocks on a full pipe, whatever the
    runner is doing. Each whole line goes to `on_line(name, stream, text)` (from that
    thread); a line longer than MAX_LINE bytes is cut into pieces rather than held."""

    MAX_LINE = 64 * 1024

    def __init__(self, on_line: Callable[[str, str, str], None]):
        self.on_line = on_line
        self.selector = selectors.DefaultSelector()
        self.added: queue.SimpleQueue = queue.SimpleQueue()
        self.partial: dict[int, bytes] = {}
        self.deadline: float | None = None  # set by close(): read what is left until then
        self.thread: threading.Thread | None = None

    def pipe(self, name: str, stream: str = "stderr") -> int:
        """A new pipe for process `name`'s `stream`: returns the end to give the process (the
        caller closes its copy once the process has it)."""
        read_end, write_end = os.pipe()
        self.added.put((read_end, name, stream))
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="posegraph-worker-output", daemon=True)
            self.thread.start()
        return write_end

    def close(self, timeout: float = 1.0) -> None:
        """Read until every process's pipes are at their end (or `timeout` seconds: a
        grandchild may hold one open), hand over what is left, and stop."""
        if self.thread is None:
            return
        self.deadline = time.monotonic() + timeout
        self.thread.join(timeout + 1.0)

    def _run(self) -> None:
        try:
            while True:
                while not self.added.empty():
                    fd, name, stream = self.added.get()
                    self.selector.register(fd, selectors.EVENT_READ, (name, stream))
                if self.deadline is not None and (not self.selector.get_map() or time.monotonic() > self.deadline):
                    break
                for key, _ in self.selector.select(timeout=0.05):
                    self._read(key)
        finally:
            for key in list(self.selector.get_map().values()):
                self._end(key)
            self.selector.close()

    def _read(self, key) -> None:
        try:
            data = os.read(key.fd, 65536)
        except OSError:
            data = b""
        if not data:
            self._end(key)
            return
        name, stream = key.data
        text = self.partial.pop(key.fd, b"") + data
        *lines, rest = text.split(b"\n")
        while len(rest) > self.MAX_LINE:
            lines.append(rest[:self.MAX_LINE])
            rest = rest[self.MAX_LINE:]
        if rest:
            self.partial[key.fd] = rest
        for line in lines:
            self._hand(name, stream, line)

    def _end(self, key) -> None:
        rest = self.partial.pop(key.fd, b"")
        if rest:
            self._hand(*key.data, rest)
        self.selector.unregister(key.fd)
        os.close(key.fd)

    def _hand(self, name: str, stream: str, line: bytes) -> None:
        try:
            self.on_line(name, stream, line.decode("utf-8", "replace").rstrip("\r"))
        except Exception:  # noqa: BLE001 - a line that cannot be shown must not stop the reading
            pass
