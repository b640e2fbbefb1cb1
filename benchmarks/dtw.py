#!/usr/bin/env python3
"""The dtw node's exact DTW (numba, posegraph/pose/dtw.py) against fastdtw (pip's pure-Python,
approximate) on the same sequences: time per comparison and agreement.

Two data sets:
- synthetic: 50-frame queries against 45-frame templates of 8 features (seeded): time-warped,
  noisy copies of 4 prototype motions (a sinusoid per feature), 2 queries and 2 templates each;
- real: joint angles (9 features, posegraph/pose/dtw.py `features`) of Google's pose_squats.full.json
  (65 frames of reference landmarks): 50-frame queries and 45-frame templates cut from it at
  different offsets, plus time-warped and noisy copies.

Timed: posegraph.pose.dtw.dtw_distance exact (one call per comparison, wrapper included), with a
Sakoe-Chiba band of 5, and per template inside one dtw_distances call over all templates
(what the node does); fastdtw.fastdtw with radius 1 (its default) and radius 10, and
fastdtw.dtw (fastdtw's own exact pure-Python DTW, also the exactness reference). All use
the Euclidean frame cost. Agreement: relative difference of each distance to the exact one,
and how often each method picks the same nearest template for a query.

Usage: python benchmarks/dtw.py [--json FILE | --save] [--quick]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import saving  # benchmarks/saving.py: out/ unless --save

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from posegraph.pose.dtw import dtw_distance, dtw_distances, features  # noqa: E402

SQUATS = ROOT / "data" / "google_pose_reference" / "pose_squats.full.json"


def euclidean(a, b):
    d = a - b
    return float(np.sqrt(np.dot(d, d)))


def synthetic(rng, count: int, length: int, dims: int = 8, prototypes=None) -> list[np.ndarray]:
    """`count` motions of `length` frames: each a time-warped, noisy copy of one of a few
    prototype motions (per feature a sinusoid of 1 to 2.5 cycles with random phase and
    amplitude, like joint angles during a repeated exercise)."""
    out = []
    for i in range(count):
        freq, phase, amp = prototypes[i % len(prototypes)]
        t = np.linspace(0, 1, 120)[:, None]
        base = amp * np.sin(2 * np.pi * freq * t + phase)
        out.append(warp(base, length, rng) + rng.normal(scale=0.05, size=(length, dims)))
    return out


def prototypes(rng, count: int = 4, dims: int = 8):
    return [(rng.uniform(1.0, 2.5, dims), rng.uniform(0, 2 * np.pi, dims), rng.uniform(0.3, 1.0, dims)) for _ in range(count)]


def warp(seq: np.ndarray, length: int, rng, strength: float = 0.25) -> np.ndarray:
    """`seq` resampled to `length` frames along a random monotone time warp
    (u = t + c sin(pi t), monotone for |c| < 1/pi)."""
    t = np.linspace(0, 1, length)
    u = np.clip(t + rng.uniform(-strength, strength) * np.sin(np.pi * t), 0, 1) * (len(seq) - 1)
    idx = np.arange(len(seq))
    return np.stack([np.interp(u, idx, seq[:, k]) for k in range(seq.shape[1])], axis=1)


def synthetic_set(rng):
    protos = prototypes(rng)
    return synthetic(rng, 8, 50, prototypes=protos), synthetic(rng, 8, 45, prototypes=protos)


def real(rng) -> tuple[list[np.ndarray], list[np.ndarray]]:
    pts = np.asarray(json.loads(SQUATS.read_text()), dtype=np.float32)
    pts = np.concatenate([pts, np.ones((*pts.shape[:2], 1), np.float32)], axis=2)
    angles = features(pts, "blazepose33", "angles")  # (65, 9)
    queries = [angles[s:s + 50] for s in (0, 5, 10, 15)]
    queries += [warp(angles[s:s + 50], 50, rng) + rng.normal(scale=0.03, size=(50, 9)) for s in (0, 8, 15)]
    templates = [angles[s:s + 45] for s in range(0, 21, 4)]
    templates += [warp(angles[s:s + 45], 45, rng) + rng.normal(scale=0.05, size=(45, 9)) for s in (2, 11, 19)]
    return queries, templates


def per_call_us(fn, pairs, min_seconds: float) -> float:
    """Best round's mean time per call over all pairs, in microseconds (the minimum over
    rounds: the least disturbed by other processes, for every method alike)."""
    for q, t in pairs[:2]:
        fn(q, t)  # warm (numba compiles or loads its cache here)
    rounds = []
    deadline = time.perf_counter() + min_seconds
    while len(rounds) < 3 or (time.perf_counter() < deadline and len(rounds) < 50):
        start = time.perf_counter()
        for q, t in pairs:
            fn(q, t)
        rounds.append((time.perf_counter() - start) / len(pairs) * 1e6)
    return min(rounds)


def batched_us(queries, templates, band, min_seconds: float) -> float:
    flat = np.ascontiguousarray(np.concatenate(templates))
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in templates])]).astype(np.int64)
    dtw_distances(queries[0], flat, offsets, band, False)
    rounds = []
    deadline = time.perf_counter() + min_seconds
    while len(rounds) < 3 or (time.perf_counter() < deadline and len(rounds) < 200):
        start = time.perf_counter()
        for q in queries:
            dtw_distances(q, flat, offsets, band, False)
        rounds.append((time.perf_counter() - start) / (len(queries) * len(templates)) * 1e6)
    return min(rounds)


def run_set(name: str, queries, templates, quick: bool) -> dict:
    from fastdtw import dtw as py_dtw
    from fastdtw import fastdtw

    methods = {
        "numba_exact": lambda q, t: dtw_distance(q, t),
        "numba_band5": lambda q, t: dtw_distance(q, t, band=5),
        "fastdtw_radius1_default": lambda q, t: fastdtw(q, t, radius=1, dist=euclidean)[0],
        "fastdtw_radius10": lambda q, t: fastdtw(q, t, radius=10, dist=euclidean)[0],
        "python_exact_dtw": lambda q, t: py_dtw(q, t, dist=euclidean)[0],
    }
    pairs = [(q, t) for q in queries for t in templates]
    timing_pairs = pairs if not quick else pairs[:8]
    slow_pairs = timing_pairs[: (4 if quick else 16)]
    us = {}
    for m, fn in methods.items():
        fast = m.startswith("numba")
        us[m] = round(per_call_us(fn, timing_pairs if fast else slow_pairs, 0.5 if fast else (0.2 if quick else 1.0)), 3)
    us["numba_exact_batched_per_template"] = round(batched_us(queries, templates, 0, 0.5), 3)
    us["numba_band5_batched_per_template"] = round(batched_us(queries, templates, 5, 0.5), 3)

    dist = {m: np.array([[fn(q, t) for t in templates] for q in queries]) for m, fn in methods.items()}
    exact = dist["numba_exact"]
    agreement = {}
    for m in methods:
        rel = np.abs(dist[m] - exact) / np.maximum(exact, 1e-12)
        nearest = float(np.mean(dist[m].argmin(axis=1) == exact.argmin(axis=1)))
        agreement[m] = {"rel_diff_mean": float(rel.mean()), "rel_diff_max": float(rel.max()),
                        "nearest_template_agrees": nearest}
    base = us["fastdtw_radius1_default"]
    return {
        "queries": len(queries), "templates": len(templates),
        "query_frames": int(len(queries[0])), "template_frames": int(len(templates[0])), "features": int(queries[0].shape[1]),
        "us_per_comparison": us,
        "speedup_vs_fastdtw_radius1": {m: round(base / v, 1) for m, v in us.items()},
        "agreement_with_exact": agreement,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    saving.add_arguments(parser, "dtw.json")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke test)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(7)
    results = {
        "command": "python benchmarks/dtw.py" + (" --quick" if args.quick else ""),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "synthetic": run_set("synthetic", *synthetic_set(rng), args.quick),
        "real_squat_angles": run_set("real", *real(rng), args.quick),
    }
    results["notes"] = ("numba_band5 is exact DTW restricted to a Sakoe-Chiba band of 5 frames: a different, constrained "
                        "distance, so its difference from unbanded DTW is the band's effect, not approximation error "
                        "(tests/pose/test_dtw.py checks it against a pure-Python banded reference). fastdtw's default radius is 1. "
                        "Times: best of several rounds (the machine may be shared).")
    for name in ("synthetic", "real_squat_angles"):
        r = results[name]
        print(f"{name}: {r['queries']} queries x {r['templates']} templates, {r['query_frames']} vs {r['template_frames']} frames, {r['features']} features")
        for m, v in r["us_per_comparison"].items():
            print(f"  {m:34s} {v:12.2f} us/comparison   {r['speedup_vs_fastdtw_radius1'][m]:9.1f}x vs fastdtw radius 1")
        for m, a in r["agreement_with_exact"].items():
            print(f"  {m:34s} rel. diff mean {a['rel_diff_mean']:.2e} max {a['rel_diff_max']:.2e}   "
                  f"nearest template agrees {a['nearest_template_agrees']:.0%}")
    print("note: " + results["notes"])
    target = saving.path(args, "dtw.json")
    target.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
