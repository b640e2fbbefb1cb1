"""What `render` draws, and the frame and class packet helpers it shares with the sinks.

`Overlay.draw` puts onto a BGR image (everything optional but the image):
  - the skeleton of a landmarks packet (px x, y): points whose visibility is below the
    threshold are skipped, and so are the edges touching them; points below the halfway
    mark between the threshold and 1 are drawn as rings and their edges thin (so an
    unsure joint looks unsure); left side orange, right side blue, centre white. BlazePose-33,
    COCO-17, OpenPose-18 and custom layouts (posegraph.pose.landmarks) are drawn by the
    packet's `layout`, else by the number of points;
  - a panel in the top-left corner: the current class (argmax of `scores`, else of
    `votes`) with its confidence (value / max_score), a bar per class of the smoothed
    confidences (the bars keep their places: every class seen so far in the stream,
    sorted by name, at most 8), and the repetition counts of `reps` (the counted class in yellow);
  - every person of a multi-person landmarks packet (posegraph.pose.people: "ids"): their
    skeleton, a thin box in their own colour and a tag above it with their id, class and
    repetitions (votes, scores and reps matched by id); the panel shows the first person;
  - the frames per second of the graph's nodes in small text in the bottom-left corner.

Sizes scale with min(height, width) / 720 times `scale`, so the overlay looks the same on
the 720x1280 portrait demo clip and on 640x480 or 1280x720 webcams.

Free of OpenCV at import time (the graph validator imports node modules; cv2 is loaded
when an Overlay is made or an image converted, which happens in a node's own process).
"""
from __future__ import annotations

import math

import numpy as np

from posegraph.pose import landmarks as lm
from posegraph.pose.people import split

LEFT, RIGHT, CENTRE = 0, 1, 2
SIDE_COLOURS = ((0, 150, 255), (255, 170, 40), (235, 235, 235))  # BGR: orange, blue, white
WHITE, DIM, DARK = (255, 255, 255), (170, 170, 170), (70, 70, 70)
ACTIVE, BAR = (90, 230, 90), (200, 160, 100)  # the current class's bar, the others
COUNTED = (0, 220, 255)  # the class whose repetitions are being counted
MAX_BARS, MAX_REPS = 8, 4
SHIFT = 4  # sub-pixel bits for cv2 drawing: coordinates are multiplied by 16
# one colour per person id (BGR), for their box and tag
PERSON_COLOURS = ((80, 220, 80), (60, 90, 255), (255, 120, 200), (40, 220, 255), (255, 200, 60), (180, 120, 255),
                  (120, 255, 220), (90, 160, 255))
MAX_SKELETONS = 64  # custom layouts come from packets: the cache of their skeletons stays bounded


# ----- frame and class packets -------------------------------------------------------------------
def frame_parts(value):
    """(image, pts_ms, index) of a frame packet (a dict or a bare array); Nones when empty."""
    if value is None:
        return None, None, None
    if isinstance(value, np.ndarray):
        return value, None, None
    if not isinstance(value, dict):
        return None, None, None
    return value.get("image"), value.get("pts_ms"), value.get("index")


def usable_pts(pts_ms) -> bool:
    """Whether a frame's pts_ms is a finite number (not None, not a bool)."""
    return isinstance(pts_ms, (int, float)) and not isinstance(pts_ms, bool) and math.isfinite(pts_ms)


def image_problem(image) -> str | None:
    """Why an image cannot be drawn or written (None when it is a usable uint8 picture)."""
    if not isinstance(image, np.ndarray):
        return f"a frame image must be a numpy array, not {type(image).__name__}"
    if image.dtype != np.uint8:
        return f"a frame image must be uint8, not {image.dtype}"
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4)):
        if image.shape[0] >= 2 and image.shape[1] >= 2:
            return None
        return (f"a frame image of {image.shape[1]}x{image.shape[0]} pixels (width x height) is too small: "
                "at least 2x2")
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


def as_bgr(image: np.ndarray) -> np.ndarray:
    """The image itself when it is H x W x 3, else a BGR copy of it."""
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    bgr = np.empty(image.shape[:2] + (3,), np.uint8)
    copy_bgr(image, bgr)
    return bgr


def packet_dict(value, key: str) -> dict | None:
    """The {class: number} of a votes/scores/reps packet ({key: {...}}), or None."""
    if not isinstance(value, dict):
        return None
    inner = value.get(key)
    return inner if isinstance(inner, dict) and inner else None


def fps_lines(fps: dict | None) -> list[str]:
    """The lines of the frames-per-second overlay, one per node whose rate is measured
    ("pose 17.3 fps"). A node without one yet (0.0: the engine has not seen it process two
    frames, or its table has not reached the drawing node yet) is left out rather than
    drawn as 0.0; none known, no lines."""
    return [f"{node} {finite(rate):.1f} fps" for node, rate in (fps or {}).items() if finite(rate) > 0]


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


# ----- skeletons ---------------------------------------------------------------------------------
def pose_connections() -> tuple[tuple[int, int], ...]:
    """The BlazePose-33 skeleton's edges (MediaPipe's POSE_CONNECTIONS)."""
    return tuple((int(a), int(b)) for a, b in lm.connections_of(lm.BLAZEPOSE33))


def name_side(name: str) -> int:
    """LEFT, RIGHT or CENTRE from a landmark's name (left_*, *_left, l_*...)."""
    if name.startswith(("left", "l_")) or name.endswith("_left"):
        return LEFT
    if name.startswith(("right", "r_")) or name.endswith("_right"):
        return RIGHT
    return CENTRE


def skeleton_of(layout: str) -> tuple:
    """(points, edge_a, edge_b, point_side, edge_side) of a layout; an edge is a side's
    colour when both its ends are on that side, else the centre's. ValueError for a
    malformed custom layout."""
    pairs = np.array(lm.connections_of(layout), dtype=np.intp).reshape(-1, 2)
    sides = np.array([name_side(n) for n in lm.names_of(layout)])
    a, b = pairs[:, 0], pairs[:, 1]
    return len(sides), a, b, sides, np.where(sides[a] == sides[b], sides[a], CENTRE)


class _Layout:
    """Font scales, line heights and panel widths for one image size (computed once)."""

    def __init__(self, cv2, height: int, width: int, scale: float):
        u = scale * min(height, width) / 720.0
        self.font = cv2.FONT_HERSHEY_SIMPLEX
        self.margin = max(3, round(14 * u))
        self.pad = max(2, round(8 * u))
        self.big, self.big_th = 1.1 * u, max(1, round(2.2 * u))
        self.small, self.small_th = 0.6 * u, max(1, round(1.4 * u))
        self.tiny, self.tiny_th = 0.45 * u, max(1, round(1.0 * u))
        self.big_h = self._height(cv2, self.big, self.big_th)
        self.small_h = self._height(cv2, self.small, self.small_th)
        self.tiny_h = self._height(cv2, self.tiny, self.tiny_th)
        self.radius = max(2, round(5 * u))
        self.line_th = max(1, round(3 * u))
        self.thin_th = max(1, round(1.5 * u))
        self.panel_w = max(40, min(width - 2 * self.margin, round(380 * u)))
        self.value_w = cv2.getTextSize("10.0", self.font, self.small, self.small_th)[0][0]
        self.height, self.width = height, width

    def _height(self, cv2, font_scale: float, thickness: int) -> int:
        (_, h), baseline = cv2.getTextSize("Hg", self.font, font_scale, thickness)
        return h + baseline

    def padded(self, box) -> tuple[int, int, int, int]:
        """A person's box grown by a point's radius, inside the image, in whole pixels."""
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        r = self.radius
        return max(0, x0 - r), max(0, y0 - r), min(self.width - 1, x1 + r), min(self.height - 1, y1 + r)


# ----- the overlay -------------------------------------------------------------------------------
class Overlay:
    """Draws landmarks, votes, scores and reps packets onto images (see the module docstring).

    Remembers, per stream id, the class names seen so far (so the bars keep their places)
    and caches the text sizes of each image size. `draw` returns the problems it met, as
    (counter, message) pairs, for the caller to count and report.
    """

    def __init__(self, visibility_threshold: float = 0.5, max_score: float = 10.0, scale: float = 1.0):
        import cv2

        self.cv2 = cv2
        self.threshold = float(visibility_threshold)
        self.sure = (1.0 + self.threshold) / 2.0  # at least this visible: drawn solid
        self.max_score = float(max_score)
        self.scale = float(scale)
        self.skeletons: dict[str, tuple] = {lm.BLAZEPOSE33: skeleton_of(lm.BLAZEPOSE33)}
        self.layouts: dict[tuple[int, int], _Layout] = {}
        self.classes: dict[int, list[str]] = {}  # stream id -> every class seen so far, sorted
        self.labels: dict[int, tuple] = {}  # stream id -> (classes, label width, label texts, layout)
        self.fps_cache = (None, None, None)  # (fps dict, layout, (lines, width))
        self.fps_drawn: list[str] = []  # the rates drawn on the last frame ([]: none were known yet)

    def draw(self, out: np.ndarray, inputs: dict, stream: int = 0, fps: dict | None = None) -> list[tuple[str, str]]:
        """Draw onto the H x W x 3 BGR `out` what `inputs` (render's ports but the frame) say
        about stream `stream`, and `fps` ({node: frames per second}) when given."""
        height, width = out.shape[:2]
        layout = self.layouts.get((height, width))
        if layout is None:
            layout = self.layouts[height, width] = _Layout(self.cv2, height, width, self.scale)
        problems: list[tuple[str, str]] = []
        landmarks, tags = inputs.get("landmarks"), []
        if isinstance(landmarks, dict) and "ids" in landmarks:
            tags = self._draw_people(out, inputs, layout, problems)
        elif landmarks is not None:
            self._draw_pose(out, landmarks, layout, problems)
        panel = self._draw_panel(out, inputs, layout, stream)
        for person_id, box, text in tags:  # after the panel, and clear of it
            self._draw_tag(out, person_id, box, text, layout, panel)
        self.fps_drawn = self._draw_fps(out, fps, layout) if fps else []
        return problems

    # ----- the skeleton -------------------------------------------------------------------
    def _skeleton(self, px, name):
        """The skeleton for landmarks `px` of layout `name` (None: by the number of points),
        or None for no known layout."""
        if px.shape[0] >= 33 and name in (None, lm.BLAZEPOSE33):
            return self.skeletons[lm.BLAZEPOSE33]
        if name is None:
            name = {17: lm.COCO17, 18: lm.OPENPOSE18}.get(px.shape[0])
        skeleton = self.skeletons.get(name)
        if skeleton is None and (name in (lm.COCO17, lm.OPENPOSE18) or str(name).startswith("custom:")):
            try:
                skeleton = skeleton_of(name)
            except ValueError:  # a malformed custom layout: not drawn, reported by the caller
                return None
            if len(self.skeletons) > MAX_SKELETONS:
                self.skeletons = {lm.BLAZEPOSE33: self.skeletons[lm.BLAZEPOSE33]}
            self.skeletons[name] = skeleton
        if skeleton is None or px.shape[0] < skeleton[0]:
            return None
        return skeleton

    def _draw_pose(self, out, landmarks, layout: _Layout, problems: list):
        """Draw one skeleton; returns the box (x0, y0, x1, y1) of the points drawn, or None."""
        cv2 = self.cv2
        px = landmarks.get("px") if isinstance(landmarks, dict) else landmarks
        name = landmarks.get("layout") if isinstance(landmarks, dict) else None
        skeleton = None
        if isinstance(px, np.ndarray) and px.ndim == 2 and px.shape[1] >= 2:
            skeleton = self._skeleton(px, name if isinstance(name, str) else None)
        if skeleton is None:
            problems.append(("bad_landmarks", "landmarks without a 'px' array of a known layout (33, 17 or 18 x 4, "
                                              "or as many as a custom layout names) are not drawn"))
            return None
        n, edge_a, edge_b, point_side, edge_side = skeleton
        xy = px[:n, :2].astype(np.float32)
        if isinstance(landmarks, dict):  # landmarks found on a resized image: map them onto this one
            lw, lh = landmarks.get("width"), landmarks.get("height")
            if isinstance(lw, int) and isinstance(lh, int) and lw > 0 and lh > 0 and (lw, lh) != (layout.width, layout.height):
                xy *= np.array([layout.width / lw, layout.height / lh], dtype=np.float32)
        visibility = px[:n, 3] if px.shape[1] >= 4 else np.ones(n, np.float32)
        shown = np.isfinite(xy).all(axis=1) & (visibility >= self.threshold)  # NaN compares False
        if not shown.any():
            return None
        sure = visibility >= self.sure
        pts = np.rint(np.nan_to_num(np.clip(xy, -1e5, 1e5)) * (1 << SHIFT)).astype(np.int32)  # NaN ones are not shown
        a, b = edge_a, edge_b
        drawn = shown[a] & shown[b]
        solid = sure[a] & sure[b]
        for side, colour in enumerate(SIDE_COLOURS):
            for strong, thickness in ((True, layout.line_th), (False, layout.thin_th)):
                pick = drawn & (edge_side == side) & (solid == strong)
                if pick.any():
                    segments = np.stack([pts[a[pick]], pts[b[pick]]], axis=1)
                    cv2.polylines(out, list(segments), False, colour, thickness, cv2.LINE_AA, SHIFT)
        radius = layout.radius << SHIFT
        for i in np.flatnonzero(shown):
            centre = (int(pts[i, 0]), int(pts[i, 1]))
            colour = SIDE_COLOURS[point_side[i]]
            if sure[i]:
                cv2.circle(out, centre, radius, colour, -1, cv2.LINE_AA, SHIFT)
                cv2.circle(out, centre, radius, WHITE, 1, cv2.LINE_AA, SHIFT)
            else:
                cv2.circle(out, centre, radius, colour, layout.thin_th, cv2.LINE_AA, SHIFT)
        seen = np.clip(xy[shown], -1e5, 1e5)
        return (float(seen[:, 0].min()), float(seen[:, 1].min()), float(seen[:, 0].max()), float(seen[:, 1].max()))

    # ----- several people ---------------------------------------------------------------------
    def _draw_people(self, out, inputs, layout: _Layout, problems: list) -> list:
        """Every person of a multi-person landmarks packet: their skeleton and box; returns
        their tags [(id, box, text: id, class, repetitions)] (votes, scores and reps matched by id)."""
        by_id = {port: dict(split(inputs.get(port))) for port in ("votes", "scores", "reps")}
        tags = []
        for person_id, person in split(inputs["landmarks"]):
            box = self._draw_pose(out, person, layout, problems)
            if box is None:
                continue
            name, _ = top_class(packet_dict(by_id["scores"].get(person_id), "scores"),
                                packet_dict(by_id["votes"].get(person_id), "votes"))
            text = f"#{person_id}" + (f" {name}" if name is not None else "")
            reps_packet = by_id["reps"].get(person_id)
            reps = packet_dict(reps_packet, "reps")
            if reps:
                counted = reps_packet.get("class")
                count = reps.get(counted) if counted in reps else next(iter(reps.values()))
                text += f"  reps {int(finite(count))}"
            colour = PERSON_COLOURS[int(person_id) % len(PERSON_COLOURS)]
            x0, y0, x1, y1 = layout.padded(box)
            if x1 > x0 and y1 > y0:
                self.cv2.rectangle(out, (x0, y0), (x1, y1), colour, layout.thin_th, self.cv2.LINE_AA)
            tags.append((person_id, box, text))
        return tags

    def _draw_tag(self, out, person_id: int, box, text: str, layout: _Layout, avoid=None) -> None:
        """The person's tag just above their box (inside it at the image's top edge), moved
        below `avoid` (the panel's rectangle) when it would cover it."""
        cv2 = self.cv2
        colour = PERSON_COLOURS[int(person_id) % len(PERSON_COLOURS)]
        x0, y0, _, _ = layout.padded(box)
        (w, h), base = cv2.getTextSize(text, layout.font, layout.small, layout.small_th)
        p = layout.pad // 2 + 1
        tall = h + base + 2 * p
        tx = min(max(0, x0), max(0, layout.width - w - 2 * p))
        top = y0 - tall if y0 - tall >= 0 else y0  # above the box, else inside it
        if avoid is not None:
            ax0, ay0, ax1, ay1 = avoid
            if tx < ax1 and tx + w + 2 * p > ax0 and top < ay1 and top + tall > ay0:
                top = ay1 + p
        top = max(0, min(top, layout.height - tall))
        ty, bottom = top + p + h, min(layout.height, top + tall)
        roi = out[top:bottom, tx:min(layout.width, tx + w + 2 * p)]
        np.right_shift(roi, 1, out=roi)  # darken behind the text
        cv2.rectangle(out, (tx, top), (min(layout.width - 1, tx + w + 2 * p), bottom - 1), colour, 1)
        cv2.putText(out, text, (tx + p, ty), layout.font, layout.small, colour, layout.small_th, cv2.LINE_AA)

    # ----- class, bars and repetitions ------------------------------------------------------
    def _bar_labels(self, table: dict | None, layout: _Layout, stream: int):
        """Class names for the bars (stable: all seen so far in the stream, sorted) and their label texts."""
        seen = self.classes.setdefault(stream, [])
        if table:
            new = [str(k) for k in table if str(k) not in seen]
            if new:
                seen = self.classes[stream] = sorted(seen + new)
        classes = tuple(seen)
        if len(classes) > MAX_BARS and table:  # too many: the highest now, still in name order
            keep = set(sorted(classes, key=lambda c: -finite(table.get(c, 0)))[:MAX_BARS])
            classes = tuple(c for c in classes if c in keep)
        else:
            classes = classes[:MAX_BARS]
        cached_classes, _, _, cached_layout = self.labels.get(stream, ((), 0, (), None))
        if classes != cached_classes or cached_layout is not layout:
            cv2, limit = self.cv2, layout.panel_w // 2
            texts = []
            for name in classes:
                text = name
                while len(text) > 3 and cv2.getTextSize(text, layout.font, layout.small, layout.small_th)[0][0] > limit:
                    text = text[:-3] + ".."
                texts.append(text)
            width = max((cv2.getTextSize(t, layout.font, layout.small, layout.small_th)[0][0] for t in texts), default=0)
            self.labels[stream] = (classes, width, tuple(texts), layout)
        return self.labels[stream]

    def _draw_panel(self, out, inputs, layout: _Layout, stream: int = 0):
        """Draws the panel; returns its rectangle (x0, y0, x1, y1), None when there is none."""
        cv2 = self.cv2
        scores = packet_dict(inputs.get("scores"), "scores")
        votes = packet_dict(inputs.get("votes"), "votes")
        table = scores or votes
        name, value = top_class(scores, votes)
        no_person = name is None and "landmarks" in inputs and inputs["landmarks"] is None
        charted = "scores" in inputs or "votes" in inputs
        classes, label_w, texts, _ = self._bar_labels(table, layout, stream) if charted else ((), 0, (), None)
        reps_packet = inputs.get("reps")
        reps = packet_dict(reps_packet, "reps")
        counted = reps_packet.get("class") if isinstance(reps_packet, dict) else None
        if reps and isinstance(reps_packet.get("recognised"), list):  # learned counters: the classes seen only
            reps = {name: reps[name] for name in reps_packet["recognised"] if name in reps}
        rep_items = list(reps.items())[:MAX_REPS] if reps else []
        if name is None and not no_person and not classes and not rep_items:
            return None
        m, p = layout.margin, layout.pad
        row = layout.small_h + p
        height = p + layout.big_h + p + len(classes) * row + len(rep_items) * row + p
        x0, y0 = m, m
        x1, y1 = min(layout.width, x0 + layout.panel_w), min(layout.height, y0 + height)
        roi = out[y0:y1, x0:x1]
        np.right_shift(roi, 1, out=roi)  # darken what is behind the text to half
        y = y0 + p + layout.big_h
        if name is not None:
            title = f"{name}  {100.0 * min(value / self.max_score, 1.0):.0f}%"
            cv2.putText(out, title, (x0 + p, y - p // 2), layout.font, layout.big, WHITE, layout.big_th, cv2.LINE_AA)
        elif no_person:
            cv2.putText(out, "no person", (x0 + p, y - p // 2), layout.font, layout.big, DIM, layout.big_th, cv2.LINE_AA)
        y += p
        bar_x0 = x0 + p + label_w + p
        bar_x1 = x1 - p - layout.value_w - p
        bar_h = max(2, round(layout.small_h * 0.75))
        for cls, text in zip(classes, texts):
            level = finite(table.get(cls, 0.0)) if table else 0.0
            fraction = min(max(level / self.max_score, 0.0), 1.0)
            y += row
            base = y - p // 2  # text baseline
            colour = WHITE if cls == name else DIM
            cv2.putText(out, text, (x0 + p, base), layout.font, layout.small, colour, layout.small_th, cv2.LINE_AA)
            if bar_x1 > bar_x0:
                top = base - bar_h + max(1, bar_h // 8)
                cv2.rectangle(out, (bar_x0, top), (bar_x1, top + bar_h), DARK, 1)
                filled = bar_x0 + round(fraction * (bar_x1 - bar_x0))
                if filled > bar_x0:
                    cv2.rectangle(out, (bar_x0, top), (filled, top + bar_h), ACTIVE if cls == name else BAR, -1)
            cv2.putText(out, f"{level:.1f}", (x1 - p - layout.value_w, base), layout.font, layout.small, colour, layout.small_th, cv2.LINE_AA)
        for cls, count in rep_items:
            y += row
            colour = COUNTED if cls == counted else WHITE
            text = f"{cls} reps: {int(finite(count))}"
            cv2.putText(out, text, (x0 + p, y - p // 2), layout.font, layout.small, colour, layout.small_th, cv2.LINE_AA)
        return x0, y0, x1, y1

    # ----- frames per second ----------------------------------------------------------------
    def _draw_fps(self, out, fps: dict, layout: _Layout) -> list[str]:
        """The rates of the nodes that have a measured one (fps_lines); what was drawn."""
        cv2 = self.cv2
        cached_fps, cached_layout, lines = self.fps_cache
        if cached_fps != fps or cached_layout is not layout:  # the engine's table changes about once a second
            texts = fps_lines(fps)
            lines = None
            if texts:
                width = max(cv2.getTextSize(t, layout.font, layout.tiny, layout.tiny_th)[0][0] for t in texts)
                lines = (texts, width)
            self.fps_cache = (dict(fps), layout, lines)
        if lines is None:
            return []
        texts, width = lines
        m, p = layout.margin, layout.pad // 2 + 1
        row = layout.tiny_h + p
        x0, y1 = m, layout.height - m
        y0 = max(0, y1 - len(texts) * row - p)
        x1 = min(layout.width, x0 + width + 2 * p)
        roi = out[y0:y1, x0:x1]
        np.right_shift(roi, 1, out=roi)
        y = y0 + p
        for text in texts:
            y += row
            cv2.putText(out, text, (x0 + p, y - p), layout.font, layout.tiny, WHITE, layout.tiny_th, cv2.LINE_AA)
        return texts
