#!/usr/bin/env python3
"""The demo pipeline on a Ray cluster against the static `machines:` mode, on the same
three network-namespace hosts (tests/support/netns.py).

Hosts: head, w1, w2. A Ray cluster runs on them (tests/support/ray_netns.py: one Ray node
per namespace, bound to its address, 1 CPU each, token auth). The same pipeline runs:
  static  `machines: [head, w1, w2]` (capture on head, pose on w1, the rest on w2), one
          `runner.py --machine NAME --hosts` per namespace, CURVE keys from `keys`;
  ray     the same nodes with `resources:` naming custom resources that exist only on
          head / w1 / w2 and `colocate:`, one `posegraph run --cluster ray://...` driver
          in the head namespace (keys made per run).
So both place every node on the same host and both carry frames over CURVE tcp between
hosts; what differs is who starts the processes (Ray actors or runners by hand).

Numbers, per run: the sink's own frames/s (the `records` node's fps: first to last frame
it handled), the time from launch to the first record written (start-up), and the
resident memory (sum of VmRSS) of every process in each namespace, peak over the run
(sampled every 0.2 s). For ray, the memory includes the Ray daemons; the idle cluster's
memory is saved too. Runs are interleaved over rounds; the fps ratio is ray / static
within a round, then the median. Every run must exit 0 and write every frame once.

What this machine can show: 2 cores shared by the three "hosts" and the Ray daemons, so
these numbers say what Ray's placement costs next to the static mode, never what real
machines would gain.

Usage: python benchmarks/ray_cluster.py [--rounds N] [--frames N] [--json FILE] [--save]
(root; writes out/ray_cluster.json, with --save also benchmarks/ray_cluster.json)
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "tests"))
CLIP = ROOT / "data/google_pose_reference/pose_squats.mp4"
HOSTS = ("head", "w1", "w2")
RESOURCES = {"head": {"at_head": 1}, "w1": {"at_w1": 1}, "w2": {"at_w2": 1}}
RUN_TIMEOUT = 300


def graph(out: Path, mode: str, keys: Path | None) -> dict:
    where = {"camera": "head", "pose": "w1"}
    nodes = [
        {"id": "camera", "uses": "capture", "params": {"source": str(CLIP), "loop": True}},
        {"id": "pose", "uses": "pose", "inputs": {"frame": "camera/frame"}},
        {"id": "embed", "uses": "embed", "inputs": {"landmarks": "pose/landmarks"}},
        {"id": "knn", "uses": "knn", "inputs": {"features": "embed/features"}},
        {"id": "smooth", "uses": "smooth", "inputs": {"votes": "knn/votes"}},
        {"id": "reps", "uses": "reps", "params": {"class_name": "squats_down"}, "inputs": {"scores": "smooth/scores"}},
        {"id": "render", "uses": "render", "params": {"show_fps": False},
         "inputs": {"frame": "camera/frame", "landmarks": "pose/landmarks", "votes": "knn/votes", "scores": "smooth/scores", "reps": "reps/count"}},
        {"id": "video", "uses": "video", "params": {"path": str(out / "video.mp4")}, "inputs": {"frame": "render/frame"}},
        {"id": "records", "uses": "jsonl", "params": {"path": str(out / "records.jsonl")},
         "inputs": {"frame": "camera/frame", "landmarks": "pose/landmarks", "votes": "knn/votes", "scores": "smooth/scores", "reps": "reps/count"}},
    ]
    doc = {"name": f"bench_{mode}", "nodes": nodes}
    if mode == "static":
        doc = {"name": "bench_static", "machines": list(HOSTS), "base_port": 17650, "security": {"curve": str(keys)}, "nodes": nodes}
        for node in nodes:
            node["machine"] = where.get(node["id"], "w2")
    else:
        for node in nodes:
            host = where.get(node["id"], "w2")
            if node["id"] in ("camera", "pose", "embed"):
                node["resources"] = {f"at_{host}": 1}
            else:
                node["colocate"] = ["embed"]
    return doc


def namespace_rss_mb(host) -> float:
    done = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True, timeout=10)
    total = 0
    for pid in done.stdout.split():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def run_once(mode: str, work: Path, hosts, cluster, keys: Path, frames: int) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=work))
    out = run_dir / "out"
    out.mkdir()
    path = run_dir / "graph.yaml"
    path.write_text(yaml.safe_dump(graph(out, mode, keys), sort_keys=False))
    procs, metrics_files = [], []
    started = time.monotonic()
    if mode == "static":
        inventory = run_dir / "hosts.yaml"
        inventory.write_text(yaml.safe_dump(hosts.inventory()))
        for name in ("w2", "w1", "head"):
            metrics = run_dir / f"metrics.{name}.json"
            argv = [sys.executable, str(ROOT / "runner.py"), str(path), "--no-live", "--max-frames", str(frames),
                    "--machine", name, "--hosts", str(inventory), "--metrics", str(metrics)]
            log = open(run_dir / f"{name}.log", "w")
            procs.append(hosts[name].popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            metrics_files.append(metrics)
    else:
        metrics = run_dir / "metrics.json"
        argv = [sys.executable, "-m", "posegraph", "run", str(path), "--cluster", cluster.address, "--no-live",
                "--max-frames", str(frames), "--metrics", str(metrics)]
        log = open(run_dir / "driver.log", "w")
        procs.append(hosts["head"].popen(argv, cwd=ROOT, env=cluster.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL))
        metrics_files.append(metrics)
    records = out / "records.jsonl"
    first_record = None
    peak = {h: 0.0 for h in HOSTS}
    while any(p.poll() is None for p in procs):
        if time.monotonic() - started > RUN_TIMEOUT:
            for p in procs:
                p.kill()
            raise RuntimeError(f"{mode}: no end after {RUN_TIMEOUT} s ({run_dir})")
        if first_record is None and records.exists() and records.stat().st_size > 0:
            first_record = time.monotonic() - started
        for h in HOSTS:
            peak[h] = max(peak[h], namespace_rss_mb(hosts[h]))
        time.sleep(0.2)
    wall = time.monotonic() - started
    codes = [p.returncode for p in procs]
    if codes != [0] * len(procs):
        raise RuntimeError(f"{mode}: exit codes {codes} ({run_dir})")
    seqs = [json.loads(line)["seq"] for line in records.read_text().splitlines() if line.strip()]
    if seqs != list(range(frames)):
        raise RuntimeError(f"{mode}: the sink wrote {len(seqs)} records, not seq 0..{frames - 1} once each ({run_dir})")
    nodes = {}
    for m in metrics_files:
        nodes.update(json.loads(m.read_text())["nodes"])
    return {"sink_fps": nodes["records"]["fps"], "pose_fps": nodes["pose"]["fps"], "first_record_s": round(first_record or wall, 2),
            "wall_s": round(wall, 2), "peak_rss_mb": {h: round(v, 1) for h, v in peak.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=260)
    parser.add_argument("--json", default=str(ROOT / "out" / "ray_cluster.json"))
    parser.add_argument("--save", action="store_true", help="also write benchmarks/ray_cluster.json (what docs/benchmarks.md quotes)")
    args = parser.parse_args(argv)
    from netns import ThreeHosts
    from ray_netns import RayCluster

    work = Path(tempfile.mkdtemp(prefix="pgraybench"))
    keys = work / "keys"
    subprocess.run([sys.executable, str(ROOT / "runner.py"), "keys", str(keys)], check=True, capture_output=True, timeout=60)
    runs: dict[str, list[dict]] = {"static": [], "ray": []}
    with ThreeHosts(names=HOSTS) as hosts:
        t0 = time.monotonic()
        with RayCluster(hosts, "head", RESOURCES) as cluster:
            cluster_start = time.monotonic() - t0
            time.sleep(2)
            idle = {h: round(namespace_rss_mb(hosts[h]), 1) for h in HOSTS}
            for round_ in range(args.rounds):
                for mode in (("static", "ray") if round_ % 2 == 0 else ("ray", "static")):
                    r = run_once(mode, work, hosts, cluster, keys, args.frames)
                    runs[mode].append(r)
                    print(f"round {round_ + 1} {mode:6s} sink {r['sink_fps']:6.1f} frames/s, first record {r['first_record_s']:5.1f} s, "
                          f"peak MB {r['peak_rss_mb']}", file=sys.stderr, flush=True)
    import shutil

    shutil.rmtree(work, ignore_errors=True)  # the runs' outputs and the static mode's keys
    ratios = [ray["sink_fps"] / static["sink_fps"] for ray, static in zip(runs["ray"], runs["static"])]
    result = {
        "frames": args.frames, "rounds": args.rounds,
        "fps_ratio_ray_over_static": {"per_round": [round(x, 3) for x in ratios], "median": round(statistics.median(ratios), 3)},
        "median_sink_fps": {m: round(statistics.median(r["sink_fps"] for r in runs[m]), 2) for m in runs},
        "median_first_record_s": {m: round(statistics.median(r["first_record_s"] for r in runs[m]), 2) for m in runs},
        "ray_cluster_start_s": round(cluster_start, 1),
        "ray_cluster_idle_rss_mb": idle,
        "median_peak_rss_mb": {m: {h: round(statistics.median(r["peak_rss_mb"][h] for r in runs[m]), 1) for h in HOSTS} for m in runs},
        # the Ray daemons run through both modes' runs: what each run added on top of the idle cluster
        "median_peak_rss_over_idle_mb": {m: {h: round(statistics.median(r["peak_rss_mb"][h] for r in runs[m]) - idle[h], 1)
                                             for h in HOSTS} for m in runs},
        "runs": runs,
        "notes": "sink_fps: the records node's own frames/s; first_record_s: launch -> first record on disk (static: the "
                 "three runners launched together; ray: the driver launched, the cluster already up); peak_rss_mb: sum of "
                 "VmRSS of every process in the namespace, the idle Ray cluster's daemons included in both modes (they run "
                 "throughout; ray_cluster_idle_rss_mb is the cluster alone, median_peak_rss_over_idle_mb what a run added). "
                 "3 namespaces on a 2-core VM shared with other work.",
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    if args.save:
        (ROOT / "benchmarks" / "ray_cluster.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "notes")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
