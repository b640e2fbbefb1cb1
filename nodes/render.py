"""`render`: draws the pose and what the classifiers concluded onto a copy of each frame.

What it draws (everything optional but the frame):
  - the BlazePose skeleton from `landmarks` (px x, y): points whose visibility is below
    `visibility_threshold` are skipped, and so are the edges touching them; points below
    the halfway mark between the threshold and 1 are drawn as rings and their edges thin
    (so an unsure joint looks unsure); left side orange, right side blue, centre white;
  - a panel in the top-left corner: the current class (argmax of `scores`, else of
    `votes`) with its confidence (value / `max_score`), a bar per class of the smoothed
    confidences (the bars keep their places: every class seen so far in this stream,
    sorted by name, at most 8), and the repetition counts of `reps` (the class being counted in yellow);
  - every person of a multi-person landmarks packet (nodes/people.py: "ids"): their
    skeleton, a thin box in their own colour, and a tag above it with their id, class
    (argmax of their `scores`, else `votes`) and repetitions (their `reps` of the counted
    class); votes, scores and reps are matched to people by id. The panel then shows
    the packets' first person, as for one person;
  - skeletons of BlazePose-33, COCO-17 and OpenPose-18 landmarks (by the packet's
    `layout`, else the number of points), and of custom layouts (a model's own subset of
    the BlazePose names, nodes/landmarks.py): their points, and the BlazePose edges whose
    two ends they have;
  - the frames per second of every node of the graph (ctx.graph_fps(), refreshed once a
    second; hidden until some node has a measured rate) in small text in the bottom-left
    corner, when `show_fps`.

Sizes scale with min(height, width) / 720 times `scale`, so the overlay looks the same on
the 720x1280 portrait demo clip and on 640x480 or 1280x720 webcams.

Why a node of its own: drawing costs a few ms, and kept apart it runs in parallel with
the pose model instead of adding to its latency. It writes into a shared-memory buffer
from ctx.alloc (one copy of the input frame, no other per-frame image allocation) and
never touches its inputs, which are read-only views of other nodes' memory. An empty
frame packet gives an empty output packet (the sinks decide what an empty frame means).
"""
from __future__ import annotations

import numpy as np
from posegraph.pose.drawing import (
    copy_bgr,
    finite,
    frame_parts,
    image_problem,
    packet_dict,
    top_class,
)
from posegraph.pose.people import split

from posegraph import Node, Param

# MediaPipe's POSE_CONNECTIONS (mediapipe/python/solutions/pose_connections.py): the
# fallback when nodes.landmarks (the project's list) cannot be imported.
MEDIAPIPE_POSE_CONNECTIONS = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12),
    (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18),
    (16, 20), (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27),
    (26, 28), (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
)

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


def pose_connections() -> tuple[tuple[int, int], ...]:
    """The skeleton's edges: nodes.landmarks.BLAZEPOSE_CONNECTIONS, else MediaPipe's list."""
    try:
        from posegraph.pose.landmarks import BLAZEPOSE_CONNECTIONS

        pairs = tuple((int(a), int(b)) for a, b in BLAZEPOSE_CONNECTIONS)
        if pairs and all(0 <= a < 33 and 0 <= b < 33 for a, b in pairs):
            return pairs
    except Exception:  # not there yet, or half-written: the local copy is the same list
        pass
    return MEDIAPIPE_POSE_CONNECTIONS


def name_side(name: str) -> int:
    """LEFT, RIGHT or CENTRE from a landmark's name (left_*, *_left, l_*...)."""
    if name.startswith(("left", "l_")) or name.endswith("_left"):
        return LEFT
    if name.startswith(("right", "r_")) or name.endswith("_right"):
        return RIGHT
    return CENTRE


def side_of(index: int) -> int:
    """BlazePose numbering: 0 is the nose; odd ids below 11 and ids 11, 13... are the left side."""
    if index == 0:
        return CENTRE
    if index <= 10:
        return LEFT if index in (1, 2, 3, 7, 9) else RIGHT
    return LEFT if index % 2 else RIGHT


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


class Render(Node):
    INPUTS = {
        "frame": "frame packet {'image', 'pts_ms', 'index'} (or a bare uint8 image)",
        "landmarks": "landmarks packet {'px': 33 x 4 [x_px, y_px, z, visibility], ...} or None",
        "votes": "{'votes': {class: count of the top 10}} or None",
        "scores": "{'scores': {class: smoothed votes}} or None",
        "reps": "{'reps': {class: count}, 'class': name, 'entered': bool}",
    }
    OPTIONAL_INPUTS = frozenset({"landmarks", "votes", "scores", "reps"})
    OUTPUTS = {"frame": "annotated frame packet {'image': uint8 H x W x 3 BGR, 'pts_ms', 'index'}"}
    PARAMS = {
        "visibility_threshold": Param(0.5, min=0.0, max=1.0, help="landmarks less visible than this are not drawn"),
        "max_score": Param(10.0, min=0.001, help="what a full bar means: scores are counts out of the KNN's top 10"),
        "show_fps": Param(True, help="draw every node's frames per second in the bottom-left corner"),
        "scale": Param(1.0, min=0.25, max=4.0, help="size of text and lines relative to the automatic size"),
    }
    # only the class names seen are remembered (per stream: one camera's classes do not
    # add bars to another's), for stable bars; not worth forbidding replicas for
    STATEFUL = False

    def open(self, ctx):
        import cv2

        self.cv2 = cv2
        self.threshold = float(self.params["visibility_threshold"])
        self.sure = (1.0 + self.threshold) / 2.0  # at least this visible: drawn solid
        self.max_score = float(self.params["max_score"])
        self.scale = float(self.params["scale"])
        self.show_fps = bool(self.params["show_fps"])
        pairs = np.array(pose_connections(), dtype=np.intp)
        self.edge_a, self.edge_b = pairs[:, 0], pairs[:, 1]
        sides = np.array([side_of(i) for i in range(33)])
        self.point_side = sides
        # an edge is a side's colour when both ends are on that side, else centre
        self.edge_side = np.where(sides[self.edge_a] == sides[self.edge_b], sides[self.edge_a], CENTRE)
        self.skeletons: dict[str, tuple] = {"blazepose33": (33, self.edge_a, self.edge_b, self.point_side, self.edge_side)}
        self.layouts: dict[tuple[int, int], _Layout] = {}
        self.classes: dict[int, list[str]] = {}  # stream id -> every class seen so far, sorted
        self.labels: dict[int, tuple] = {}  # stream id -> (classes, label width, label texts, layout)
        self.fps_cache = (None, None, None)  # (fps dict object, layout, (lines, width))
        self.warned: set[str] = set()

    # ----- the frame ----------------------------------------------------------------------
    def process(self, inputs, ctx):
        image, pts_ms, index = frame_parts(inputs.get("frame"))
        if image is None:
            return {}
        problem = image_problem(image)
        if problem:
            self._warn(ctx, problem)
            ctx.count("bad_frames")
            return {}
        height, width = image.shape[:2]
        out = ctx.alloc("frame", (height, width, 3), np.uint8, name="image")
        copy_bgr(image, out)
        layout = self.layouts.get((height, width))
        if layout is None:
            layout = self.layouts[height, width] = _Layout(self.cv2, height, width, self.scale)
        landmarks, tags = inputs.get("landmarks"), []
        if isinstance(landmarks, dict) and "ids" in landmarks:
            tags = self._draw_people(out, inputs, layout, ctx)
        elif landmarks is not None:
            self._draw_pose(out, landmarks, layout, ctx)
        panel = self._draw_panel(out, inputs, layout, ctx.stream)
        for person_id, box, text in tags:  # after the panel, and clear of it
            self._draw_tag(out, person_id, box, text, layout, panel)
        if self.show_fps:
            self._draw_fps(out, ctx.graph_fps(), layout)
        return {"frame": {"image": out, "pts_ms": pts_ms, "index": ctx.seq if index is None else index}}

    def _warn(self, ctx, message: str) -> None:
        if message not in self.warned:
            self.warned.add(message)
            ctx.log(f"warning: {message} (reported once)")

    # ----- the skeleton -------------------------------------------------------------------
    def _skeleton(self, px, name):
        """(points, edge_a, edge_b, point_side, edge_side) for landmarks `px` of layout `name`
        (None: by the number of points), or None for no known layout."""
        if px.shape[0] >= 33 and name in (None, "blazepose33"):
            return self.skeletons["blazepose33"]
        if name is None:
            name = {17: "coco17", 18: "openpose18"}.get(px.shape[0])
        skeleton = self.skeletons.get(name)
        if skeleton is None and (name in ("coco17", "openpose18") or str(name).startswith("custom:")):
            from posegraph.pose import landmarks as lm

            try:
                pairs = np.array(lm.connections_of(name), dtype=np.intp).reshape(-1, 2)
                sides = np.array([name_side(n) for n in lm.names_of(name)])
            except ValueError:  # a malformed custom layout: not drawn, with the warning below
                return None
            a, b = pairs[:, 0], pairs[:, 1]
            if len(self.skeletons) > 64:  # custom layouts come from packets: keep the cache bounded
                self.skeletons = {"blazepose33": self.skeletons["blazepose33"]}
            skeleton = self.skeletons[name] = (len(sides), a, b, sides, np.where(sides[a] == sides[b], sides[a], CENTRE))
        if skeleton is None or px.shape[0] < skeleton[0]:
            return None
        return skeleton

    def _draw_pose(self, out, landmarks, layout: _Layout, ctx):
        """Draw one skeleton; returns the box (x0, y0, x1, y1) of the points drawn, or None."""
        cv2 = self.cv2
        px = landmarks.get("px") if isinstance(landmarks, dict) else landmarks
        name = landmarks.get("layout") if isinstance(landmarks, dict) else None
        skeleton = None
        if isinstance(px, np.ndarray) and px.ndim == 2 and px.shape[1] >= 2:
            skeleton = self._skeleton(px, name if isinstance(name, str) else None)
        if skeleton is None:
            self._warn(ctx, "landmarks without a 'px' array of a known layout (33, 17 or 18 x 4, or as many as "
                            "a custom layout names) are not drawn")
            ctx.count("bad_landmarks")
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
    def _draw_people(self, out, inputs, layout: _Layout, ctx) -> list:
        """Every person of a multi-person landmarks packet: their skeleton and box; returns
        their tags [(id, box, text: id, class, repetitions)] (votes, scores and reps matched by id)."""
        by_id = {port: dict(split(inputs.get(port))) for port in ("votes", "scores", "reps")}
        tags = []
        for person_id, person in split(inputs["landmarks"]):
            box = self._draw_pose(out, person, layout, ctx)
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
            x0, y0, x1, y1 = self._padded(box, layout)
            if x1 > x0 and y1 > y0:
                self.cv2.rectangle(out, (x0, y0), (x1, y1), colour, layout.thin_th, self.cv2.LINE_AA)
            tags.append((person_id, box, text))
        return tags

    @staticmethod
    def _padded(box, layout: _Layout) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        r = layout.radius
        return max(0, x0 - r), max(0, y0 - r), min(layout.width - 1, x1 + r), min(layout.height - 1, y1 + r)

    def _draw_tag(self, out, person_id: int, box, text: str, layout: _Layout, avoid=None) -> None:
        """The person's tag just above their box (inside it at the image's top edge), moved
        below `avoid` (the panel's rectangle) when it would cover it."""
        cv2 = self.cv2
        colour = PERSON_COLOURS[int(person_id) % len(PERSON_COLOURS)]
        x0, y0, _, _ = self._padded(box, layout)
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
    def _draw_fps(self, out, fps: dict, layout: _Layout) -> None:
        if not fps:
            return
        cv2 = self.cv2
        cached_fps, cached_layout, lines = self.fps_cache
        if cached_fps is not fps or cached_layout is not layout:  # graph_fps() changes once a second
            lines = None
            if any(finite(rate) > 0 for rate in fps.values()):  # all 0.0: nothing measured yet
                texts = [f"{node} {finite(rate):.1f} fps" for node, rate in fps.items()]
                width = max(cv2.getTextSize(t, layout.font, layout.tiny, layout.tiny_th)[0][0] for t in texts)
                lines = (texts, width)
            self.fps_cache = (fps, layout, lines)
        if lines is None:
            return
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
