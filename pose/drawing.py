"""Helpers shared by `render` and the sinks: reading frame packets, BGR copies, class picks.

Kept free of OpenCV at import time (the graph validator imports node modules; cv2 is
loaded inside the functions that need it, which only run in a node's own process).
"""
from __future__ import annotations

import math
import os

import numpy as np


def frame_parts(value):
    """(image, pts_ms, index) of a frame packet (a dict or a bare array); Nones when empty."""
    if value is None:
        return None, None, None
    if isinstance(value, np.ndarray):
        return value, None, None
    if not isinstance(value, dict):
        return None, None, None
    return value.get("image"), value.get("pts_ms"), value.get("index")


def image_problem(image) -> str | None:
    """Why an image cannot be drawn or written (None when it is a usable uint8 picture)."""
    if not isinstance(image, np.ndarray):
        return f"a frame image must be a numpy array, not {type(image).__name__}"
    if image.dtype != np.uint8:
        return f"a frame image must be uint8, not {image.dtype}"
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4)):
        if image.shape[0] >= 2 and image.shape[1] >= 2:
            return None
    return f"a frame image must be H x W, H x W x 1, 3 or 4, not {'x'.join(map(str, image.shape))}"


def copy_bgr(src: np.ndarray, dst: np.ndarray) -> None:
    """Copy a uint8 image (gray, BGR or BGRA) into the H x W x 3 BGR array `dst`."""
    if src.ndim == 3 and src.shape[2] == 3:
        np.copyto(dst, src)
        return
    import cv2

    if src.ndim == 3 and src.shape[2] == 4:
        cv2.cvtColor(src, cv2.COLOR_BGRA2BGR, dst=dst)
    else:
        cv2.cvtColor(src.reshape(src.shape[:2]), cv2.COLOR_GRAY2BGR, dst=dst)


def packet_dict(value, key: str) -> dict | None:
    """The {class: number} of a votes/scores/reps packet ({key: {...}}), or None."""
    if not isinstance(value, dict):
        return None
    inner = value.get(key)
    return inner if isinstance(inner, dict) and inner else None


def finite(value) -> float:
    """A number as a finite float (0.0 for NaN, infinities or non-numbers)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def top_class(scores: dict | None, votes: dict | None) -> tuple[str | None, float]:
    """The current class: the argmax of the smoothed scores, else of the raw votes."""
    table = scores or votes
    if not table:
        return None, 0.0
    name = max(table, key=lambda k: finite(table[k]))
    return str(name), finite(table[name])


def stream_name_of(ctx) -> str:
    """The current stream's name (ctx.stream_name), or its id for a context that has no names."""
    name = getattr(ctx, "stream_name", None)
    return str(name) if name is not None else str(ctx.stream)


def multi_stream_of(ctx) -> bool:
    """ctx.multi_stream, False for a context that does not know (a single stream then)."""
    return bool(getattr(ctx, "multi_stream", False))


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
