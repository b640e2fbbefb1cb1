"""Built-in node kinds, by the name a graph's `uses:` gives them.

Each entry is "module:Class" so that validating a graph imports only the small class
definitions; heavy libraries are imported inside a kind's `open`. The packets the pose
pipeline's kinds exchange are described in nodes/packets.py.
"""

BUILTIN_KINDS = {
    # engine tests and benchmarks
    "synthetic": "nodes.synthetic:Synthetic",
    "passthrough": "nodes.passthrough:Passthrough",
    "null": "nodes.null:Null",
    # pose pipeline
    "capture": "nodes.capture:Capture",
    "pose": "nodes.pose:Pose",
    "one_euro": "nodes.smooth:OneEuro",
    "embed": "nodes.embed:Embed",
    "knn": "nodes.knn:Knn",
    "smooth": "nodes.smooth:Smooth",
    "reps": "nodes.reps:Reps",
    "lstm": "nodes.lstm:Lstm",
    "dtw": "nodes.dtw:Dtw",
    "render": "nodes.render:Render",
    # sinks
    "window": "nodes.sinks:Window",
    "video": "nodes.sinks:VideoFile",
    "images": "nodes.sinks:ImageFolder",
    "jsonl": "nodes.sinks:JsonLines",
    "web": "nodes.web:Web",
}
