"""The built-in node kinds (installed as `posegraph.nodes`): one small file per kind, or per
close family (the sinks, the smoothers), each a thin adapter between the engine's node
contract (posegraph.node) and the pose library (posegraph.pose).

Kinds are registered by name under the `posegraph.kinds` entry points (setup.cfg), so the
engine finds them without importing this package. Validating a graph imports only these
small class definitions; heavy libraries are imported inside a kind's `open`.
"""
