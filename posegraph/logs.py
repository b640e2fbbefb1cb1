"""What PoseGraph says on the terminal goes through `logging`, under the `posegraph` logger.

Node code's `ctx.log` writes to `posegraph.node.<id>.<replica>`; the runner's warnings and
errors to `posegraph.runner`. A node process and the runner each call `setup` once, which
prints every line as it always read (`[pose.0] message`, `warning: ...`) on stderr; an
application embedding PoseGraph can instead attach its own handlers to `posegraph`.
"""
from __future__ import annotations

import logging
import sys

NODE_PREFIX = "posegraph.node."


class LineFormatter(logging.Formatter):
    """A node's lines start with its name in brackets; the runner's lines are bare."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name.startswith(NODE_PREFIX):
            return f"[{record.name[len(NODE_PREFIX):]}] {message}"
        return message


def setup(stream=None, level: int = logging.INFO) -> logging.Handler:
    """Send `posegraph` log lines to `stream` (stderr), one per line, flushed."""
    logger = logging.getLogger("posegraph")
    for handler in list(logger.handlers):
        if getattr(handler, "posegraph_line_handler", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
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
