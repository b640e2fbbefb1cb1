"""The graph `posegraph run SOURCE` builds: capture -> pose -> classifier -> smooth -> reps
-> render -> video, and the records, as a plain graph document (what a user would write in
YAML, and what `--print-graph` prints).

It names node kinds and their params, nothing of the engine: the engine loads the document
like any graph file.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

CLASSIFIERS = ("dtw", "tcn", "knn", "lstm")
DEFAULT_CLASSIFIER = "dtw"  # the best measured on people the models never saw (docs/accuracy.md)

# classifier -> (the param naming its trained model, the shipped model)
CLASSIFIER_MODELS = {
    "dtw": ("templates", "models/dtw_exercises.npz"),
    "tcn": ("model", "models/tcn_exercises"),
    "lstm": ("model", "models/lstm_exercises"),
    "knn": ("samples", "models/knn_exercises.csv"),
}
REPS_MODEL = "models/reps_exercises.json"
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


def source_kind(source: str) -> str:
    """camera (an index), stream (a URL), folder or file: how SOURCE is read."""
    if source.isdigit():
        return "camera"
    if source.lower().startswith(STREAM_PREFIXES):
        return "stream"
    return "folder" if Path(source).expanduser().is_dir() else "file"


def output_stem(source: str) -> str:
    """The name outputs take from their input: the file's stem, camera0, or the stream's
    last path part (characters unsafe in a file name replaced)."""
    kind = source_kind(source)
    if kind == "camera":
        stem = f"camera{int(source)}"
    elif kind == "stream":
        stem = re.sub(r"^[a-z]+://", "", source.lower()).rstrip("/").split("/")[-1].split("?")[0] or "stream"
    else:
        path = Path(os.path.abspath(os.path.expanduser(source)))  # not resolved: a link keeps its own name
        stem = path.stem if kind == "file" else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "output"


def build_graph(source: str, classifier: str = DEFAULT_CLASSIFIER, people: int = 1, model: str | None = None,
                out_dir: str = "out", stem: str | None = None, video: bool = True, show: str | None = None) -> dict:
    """The graph document for one SOURCE. `show`: None, "window" or "web" (a live view).

    A camera or a stream is live: pose takes the newest frame (a `latest` queue) so the
    view keeps up. A file keeps every frame (the engine never drops a file's frames)."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}; one of {', '.join(CLASSIFIERS)}")
    stem = stem or output_stem(source)
    base = f"{out_dir.rstrip('/') or '.'}/{stem}"
    live = source_kind(source) in ("camera", "stream")
    param, shipped = CLASSIFIER_MODELS[classifier]
    pose = {"id": "pose", "uses": "pose", "cpus": [-1], "inputs": {"frame": "camera/frame"}}
    if people > 1:
        pose["params"] = {"max_people": people}
    if live:
        pose["queue"] = {"frame": {"size": 1, "policy": "latest"}}
    nodes = [{"id": "camera", "uses": "capture", "params": {"source": int(source) if source.isdigit() else source}}, pose]
    if classifier == "knn":
        nodes.append({"id": "embed", "uses": "embed", "params": {"kind": "body"}, "inputs": {"landmarks": "pose/landmarks"}})
        nodes.append({"id": "knn", "uses": "knn", "params": {param: model or shipped}, "inputs": {"features": "embed/features"}})
    else:
        nodes.append({"id": classifier, "uses": classifier, "params": {param: model or shipped},
                      "inputs": {"landmarks": "pose/landmarks"}})
    votes = f"{classifier}/votes"
    nodes += [
        {"id": "smooth", "uses": "smooth", "inputs": {"votes": votes}},
        {"id": "reps", "uses": "reps", "params": {"model": REPS_MODEL},
         "inputs": {"scores": "smooth/scores", "landmarks": "pose/landmarks"}},
    ]
    results = {"frame": "camera/frame", "landmarks": "pose/landmarks", "votes": votes, "scores": "smooth/scores",
               "reps": "reps/count"}
    if video or show:
        render = {"id": "render", "uses": "render", "inputs": dict(results)}
        if classifier != "knn":
            render["params"] = {"max_score": 1.0}  # probabilities, not counts of the top 10
        nodes.append(render)
    if video:
        nodes.append({"id": "video", "uses": "video", "params": {"path": f"{base}.mp4"}, "inputs": {"frame": "render/frame"}})
    if show == "window":
        nodes.append({"id": "window", "uses": "window", "params": {"title": f"PoseGraph {stem}"},
                      "inputs": {"frame": "render/frame"}})
    elif show == "web":
        nodes.append({"id": "web", "uses": "web", "params": {"port": 0}, "inputs": {"frame": "render/frame"}})
    nodes.append({"id": "records", "uses": "jsonl", "params": {"path": f"{base}.jsonl"}, "inputs": dict(results)})
    return {"name": stem, "nodes": nodes}


def graph_yaml(doc: dict, command: str = "") -> str:
    """The document as the YAML file a user would write, flow style per node's maps."""
    lines = [f"# {command}" if command else "# built by posegraph run", f"name: {doc['name']}", "nodes:"]
    for node in doc["nodes"]:
        first = True
        for key, value in node.items():
            text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
            if text.endswith("\n..."):
                text = text[:-4].strip()
            lines.append(f"  {'- ' if first else '  '}{key}: {text}")
            first = False
    return "\n".join(lines) + "\n"
