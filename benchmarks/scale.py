#!/usr/bin/env python3
"""How the demo pipeline's throughput scales: more streams, pose replicas, more machines.

The pipeline is graphs/demo.yaml's (capture -> pose -> embed -> knn -> smooth -> reps ->
render -> video + jsonl, one process per node), generated into a temporary directory for
each configuration and run with `runner.py ... --no-live --metrics` as real subprocesses.
Every capture node reads the bundled clip (65 frames, 720x1280), looped, FRAMES frames each.

(a) streams: 1, 2 and 4 capture nodes feeding the same downstream nodes (pose replicas 1).
    Throughput = frames the jsonl sink processed (all streams) / the run's `seconds`
    (all nodes ready -> end); ratio against 1 stream.
(b) replicas: pose `replicas: 2` against 1 (the (a) 2-stream run of the same round), 2
    streams; pose is stateful, so each replica takes one stream.
(c) machines: three network-namespace "hosts" (tests/support/netns.py): capture on edge, pose on
    gpu, the rest on sink, `security: none`, one runner per host; against the very same
    graph file run by one runner on one host (no --machine). 1 stream. Here throughput is
    the sink node's own frames/s (first to last frame it handled) for both sides, because
    a per-machine runner's `seconds` starts when *its* nodes are ready and so would also
    count the other runners' start-up; frames/`seconds` is saved as well.
    Skipped, with the reason saved, where namespaces cannot be made (they need root).

Configurations run interleaved, once each per round (in a different shuffled order each round);
a ratio is taken within each round, then the median over rounds, as in benchmarks/nodes.py.
Every runner must exit 0 and the sink must have seen exactly FRAMES frames of every stream
(its metrics and its JSON-lines files), otherwise the benchmark stops with an error.

What this machine can show: it has 2 CPU cores, shared with whatever else runs on the VM.
One pose process (MediaPipe, one thread, ~25-30 ms a frame) is the bottleneck at ~30
frames/s and keeps one core busy; the rest of a frame's work (decode, render, mp4 encode,
~10-15 ms) fits on the other. So more streams through one pose process cannot raise the
total, only split it (per stream: total / streams); a second pose replica can use the
second core, and then the whole box is the ceiling (~40 ms of CPU per frame over 2 cores:
~50 frames/s), not the graph: it cannot show scaling past 2 cores, and 4 streams cannot
show more than 2 replicas could give. The namespace "machines" share the same 2 cores, so
(c) measures only what the split costs (720p frames sent over TCP instead of shared
memory, to the gpu host and twice to the sink host), never the gain real machines would
bring. Load from other work moves single runs by 10-30% here; the per-round ratios and
their medians are the numbers to read.

Usage: python benchmarks/scale.py [--json FILE | --save] [--rounds N] [--quick] [--frames N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import saving  # benchmarks/saving.py: out/ unless --save

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

CLIP = ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
RUNNER = str(ROOT / "runner.py")
RUN_TIMEOUT = 300  # s per runner: a hung run fails the benchmark instead of hanging it
MACHINES = ("edge", "gpu", "sink")
SETTLE_S = 2.0  # pause before each run


# ---- graphs -----------------------------------------------------------------------------------

def demo_graph(name: str, out_dir: Path, streams: int, pose_replicas: int = 1, machines: bool = False) -> dict:
    """graphs/demo.yaml's pipeline with `streams` capture nodes of the clip (looped).

    Pose is not pinned (demo.yaml pins it to the last CPU): `cpus` applies to every replica,
    so two replicas would share one CPU; unpinned everywhere keeps the configurations alike."""
    cams = [f"cam{i}" for i in range(streams)]
    frames = [f"{c}/frame" for c in cams]
    frame_in = frames[0] if streams == 1 else frames
    nodes = [{"id": c, "uses": "capture", "params": {"source": str(CLIP), "loop": True}} for c in cams]
    pose = {"id": "pose", "uses": "pose", "inputs": {"frame": frame_in}}
    if pose_replicas > 1:
        pose["replicas"] = pose_replicas
    joined = {"frame": frame_in, "landmarks": "pose/landmarks", "votes": "knn/votes", "scores": "smooth/scores", "reps": "reps/count"}
    nodes += [
        pose,
        {"id": "embed", "uses": "embed", "inputs": {"landmarks": "pose/landmarks"}},
        {"id": "knn", "uses": "knn", "inputs": {"features": "embed/features"}},
        {"id": "smooth", "uses": "smooth", "inputs": {"votes": "knn/votes"}},
        {"id": "reps", "uses": "reps", "params": {"class_name": "squats_down"}, "inputs": {"scores": "smooth/scores"}},
        {"id": "render", "uses": "render", "inputs": dict(joined)},
        {"id": "video", "uses": "video", "params": {"path": str(out_dir / "video.{source}.mp4")}, "inputs": {"frame": "render/frame"}},
        {"id": "records", "uses": "jsonl", "params": {"path": str(out_dir / "records.{source}.jsonl")}, "inputs": dict(joined)},
    ]
    graph = {"name": name, "nodes": nodes}
    if machines:
        graph = {"name": name, "machines": list(MACHINES), "security": "none", "base_port": 17550, "nodes": nodes}
        for node in nodes:
            node["machine"] = "edge" if node["uses"] == "capture" else "gpu" if node["id"] == "pose" else "sink"
    return graph


# ---- one run ----------------------------------------------------------------------------------

class RunFailed(RuntimeError):
    pass


def _wait(proc: subprocess.Popen, deadline: float) -> int:
    try:
        return proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the runner drains and takes its nodes down within 5 s
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return -999


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_config(cfg: dict, work: Path, tag: str, frames: int, hosts=None) -> dict:
    """Run one configuration once; check it; return its numbers."""
    run_dir = work / tag
    out_dir = run_dir / "out"
    out_dir.mkdir(parents=True)
    graph_path = run_dir / "graph.yaml"
    graph_path.write_text(yaml.safe_dump(demo_graph(tag, out_dir, cfg["streams"], cfg["replicas"], cfg["machines"]), sort_keys=False))
    base = [PYTHON, RUNNER, str(graph_path), "--no-live", "--max-frames", str(frames)]
    procs = []  # (label, Popen, metrics path, log path, argv as shown)
    started = time.monotonic()
    if cfg.get("spread"):
        hosts_file = run_dir / "hosts.yaml"
        hosts_file.write_text(yaml.safe_dump(hosts.inventory()))
        for machine in MACHINES:
            metrics = run_dir / f"metrics.{machine}.json"
            argv = base + ["--machine", machine, "--hosts", str(hosts_file), "--metrics", str(metrics)]
            log = run_dir / f"runner.{machine}.log"
            with open(log, "w") as out:
                proc = hosts[machine].popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            procs.append((machine, proc, metrics, log, ["ip", "netns", "exec", hosts[machine].netns, *argv]))
    else:
        metrics = run_dir / "metrics.json"
        argv = base + ["--metrics", str(metrics)]
        log = run_dir / "runner.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(("local", proc, metrics, log, argv))
    deadline = started + RUN_TIMEOUT
    codes = {label: _wait(proc, deadline) for label, proc, *_ in procs}
    wall = time.monotonic() - started
    bad = {label: code for label, code in codes.items() if code != 0}
    if bad:
        logs = "\n".join(f"--- {label} ({'timed out' if code == -999 else f'exit {code}'}), {log}:\n{_tail(log)}"
                         for label, code in bad.items() for lab, _, _, log, _ in procs if lab == label)
        raise RunFailed(f"{tag}: runner(s) failed: {bad}\n{logs}")
    sink_metrics = procs[-1][2]  # the sink machine's runner (or the only one) holds `records`
    doc = json.loads(sink_metrics.read_text())
    records = doc["nodes"]["records"]
    expected = {f"cam{i}": frames for i in range(cfg["streams"])}
    for node in ("records", "video"):
        seen = doc["nodes"][node].get("streams", {})
        if seen != expected:
            raise RunFailed(f"{tag}: sink '{node}' saw frames per stream {seen}, expected {expected} ({sink_metrics})")
    for stream in expected:
        path = out_dir / f"records.{stream}.jsonl"
        lines = sum(1 for _ in open(path)) if path.exists() else None
        if lines != frames:
            raise RunFailed(f"{tag}: {path} has {lines} records, expected {frames}")
    total = records["frames_out"]
    if total != frames * cfg["streams"]:
        raise RunFailed(f"{tag}: sink processed {total} frames, expected {frames * cfg['streams']}")
    result = {
        "fps": round(total / doc["seconds"], 3),          # frames at the jsonl sink / (ready -> end)
        "sink_span_fps": round(records["fps"], 3),        # the sink's own first -> last frame
        "seconds": doc["seconds"], "frames": total, "runner_wall_s": round(wall, 2),
        "pose_fps": doc["nodes"].get("pose", {}).get("fps"),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),  # other work on this shared box shows here
        "commands": [shlex.join(argv) for *_, argv in procs],
    }
    if cfg.get("spread"):
        pose_doc = json.loads(procs[1][2].read_text())
        result["pose_fps"] = pose_doc["nodes"]["pose"]["fps"]
    shutil.rmtree(out_dir, ignore_errors=True)  # videos add up; the checks are done
    return result


# ---- the benchmark ----------------------------------------------------------------------------

CONFIGS = {
    # name: what it runs; "metric": which number the ratios use
    "streams1": {"streams": 1, "replicas": 1, "machines": False, "metric": "fps"},
    "streams2": {"streams": 2, "replicas": 1, "machines": False, "metric": "fps"},
    "streams4": {"streams": 4, "replicas": 1, "machines": False, "metric": "fps"},
    "streams2_pose2": {"streams": 2, "replicas": 2, "machines": False, "metric": "fps"},
    "one_host": {"streams": 1, "replicas": 1, "machines": True, "metric": "sink_span_fps"},
    "three_hosts": {"streams": 1, "replicas": 1, "machines": True, "spread": True, "metric": "sink_span_fps"},
}
RATIOS = {  # name: (config, baseline config), each taken within a round
    "streams2_vs_1": ("streams2", "streams1"),
    "streams4_vs_1": ("streams4", "streams1"),
    "pose_replicas2_vs_1 (2 streams)": ("streams2_pose2", "streams2"),
    "three_hosts_vs_one_host": ("three_hosts", "one_host"),
}


def machine_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {"cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "cpu_model": model,
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "platform": platform.platform(), "git_commit": commit}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = [c for c in result["configs"] if result["configs"][c]["rounds"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    medians = [result["configs"][c]["median"] for c in configs]
    colours = ["tab:blue" if CONFIGS[c]["metric"] == "fps" else "tab:green" for c in configs]
    left.bar(range(len(configs)), medians, color=colours)
    for i, c in enumerate(configs):
        values = [r[CONFIGS[c]["metric"]] for r in result["configs"][c]["rounds"]]
        left.scatter([i] * len(values), values, color="black", s=12, zorder=3)
        left.text(i, medians[i], f"{medians[i]:.1f}", ha="center", va="bottom", fontsize=8)
    left.set_xticks(range(len(configs)), [c.replace("_", "\n") for c in configs], fontsize=8)
    left.set_ylabel("frames/s (median; dots: rounds)")
    left.set_title("blue: sink frames / run seconds; green: sink's own frames/s", fontsize=9)
    names = [n for n, v in result["ratios"].items() if v.get("median") is not None]
    values = [result["ratios"][n]["median"] for n in names]
    right.barh(range(len(names)), values, color="tab:orange")
    right.axvline(1.0, color="black", lw=0.8)
    for i, v in enumerate(values):
        right.text(v, i, f" {v:.2f}x", va="center", fontsize=8)
    right.set_yticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=8)
    right.set_xlabel("ratio (median of per-round ratios)")
    right.invert_yaxis()
    info = result["machine"]
    fig.suptitle(f"demo pipeline scaling, {result['frames_per_stream']} frames per stream, {result['rounds']} rounds, "
                 f"{info['cpu_count']} CPUs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    saving.add_arguments(parser, "scale.json")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every configuration (default 3; --quick 1)")
    parser.add_argument("--frames", type=int, default=None, help="frames per stream (default 260, the clip 4 times; --quick 20)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 20 frames per stream")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    frames = args.frames or (20 if args.quick else 260)
    t0 = time.monotonic()
    info = machine_info()  # load average before this benchmark adds its own
    json_path = saving.path(args, "scale.json")
    png_path = json_path.with_suffix(".png")

    from netns import ThreeHosts, netns_unavailable_reason

    netns_reason = netns_unavailable_reason()
    configs = [c for c in CONFIGS if not (CONFIGS[c]["machines"] and netns_reason)]
    if netns_reason:
        print(f"(c) skipped: {netns_reason}", file=sys.stderr)
    runs: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    work = Path(tempfile.mkdtemp(prefix="pg-bench-scale-"))
    hosts = ThreeHosts(MACHINES) if not netns_reason else None
    try:
        if hosts:
            hosts.__enter__()
        for round_ in range(rounds):
            order = configs[:]
            random.Random(round_).shuffle(order)  # no configuration always follows the same one
            for name in order:
                time.sleep(SETTLE_S)  # let the previous run's processes go and the load settle
                r = run_config(CONFIGS[name], work, f"r{round_ + 1}-{name}", frames, hosts)
                runs[name].append(r)
                print(f"round {round_ + 1} {name:15s} {r['fps']:6.1f} frames/s (sink frames/seconds), "
                      f"sink {r['sink_span_fps']:6.1f}, pose {r['pose_fps']}, runner {r['runner_wall_s']:.1f} s", file=sys.stderr)
    except RunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"runs kept in {work}", file=sys.stderr)
        return 1
    finally:
        if hosts:
            hosts.close()
    shutil.rmtree(work, ignore_errors=True)

    result = {
        "command": " ".join(["python benchmarks/scale.py", shlex.join(argv if argv is not None else sys.argv[1:])]).strip(),
        "machine": info, "rounds": rounds, "frames_per_stream": frames,
        "clip": str(CLIP.relative_to(ROOT)), "clip_frames": 65,
        "netns_skipped_reason": netns_reason,
        "notes": ("fps = frames the jsonl sink processed (all streams) / metrics 'seconds' (all nodes ready -> end); "
                  "sink_span_fps = the sink node's frames / its first-to-last-frame span. (c) compares sink_span_fps "
                  "because a per-machine runner's 'seconds' also counts the other runners' start-up. The pose replicas "
                  "baseline is the 2-stream run of (a) in the same round. Pose unpinned in every configuration."),
        "configs": {}, "ratios": {},
        "wall_seconds": None,
    }
    for name, cfg in CONFIGS.items():
        values = [r[cfg["metric"]] for r in runs[name]]
        result["configs"][name] = {
            "streams": cfg["streams"], "pose_replicas": cfg["replicas"],
            "placement": "edge/gpu/sink namespaces" if cfg.get("spread") else "one host",
            "metric": cfg["metric"],
            "median": round(statistics.median(values), 2) if values else None,
            "median_fps": round(statistics.median(r["fps"] for r in runs[name]), 2) if values else None,
            "median_sink_span_fps": round(statistics.median(r["sink_span_fps"] for r in runs[name]), 2) if values else None,
            "rounds": runs[name],
            "command": runs[name][0]["commands"] if values else None,
        }
    for name, (num, den) in RATIOS.items():
        metric = CONFIGS[num]["metric"]
        per_round = [a[metric] / b[metric] for a, b in zip(runs[num], runs[den])]
        result["ratios"][name] = {"config": num, "baseline": den, "metric": metric,
                                  "median": round(statistics.median(per_round), 3) if per_round else None,
                                  "rounds": [round(x, 3) for x in per_round]}
    result["wall_seconds"] = round(time.monotonic() - t0, 1)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, png_path)

    print(f"\n{'configuration':16s} {'streams':>7s} {'pose x':>6s} {'frames/s':>9s} {'per stream':>10s} {'sink fps':>9s}  rounds")
    for name, c in result["configs"].items():
        if c["median"] is None:
            print(f"{name:16s} {c['streams']:7d} {c['pose_replicas']:6d}   skipped ({netns_reason})")
            continue
        rounds_text = ", ".join(f"{r[c['metric']]:.1f}" for r in c["rounds"])
        print(f"{name:16s} {c['streams']:7d} {c['pose_replicas']:6d} {c['median_fps']:9.1f} {c['median_fps'] / c['streams']:10.1f} "
              f"{c['median_sink_span_fps']:9.1f}  {c['metric']}: {rounds_text}")
    print()
    for name, r in result["ratios"].items():
        if r["median"] is None:
            print(f"{name:34s} skipped")
        else:
            print(f"{name:34s} {r['median']:.2f}x  ({r['metric']}; rounds: {', '.join(f'{x:.2f}' for x in r['rounds'])})")
    print(f"\n{rounds} rounds, {frames} frames per stream, {result['wall_seconds']:.0f} s; saved {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
