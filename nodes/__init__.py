"""Built-in node kinds, by the name a graph's `uses:` gives them.

Each entry is "module:Class" so that validating a graph imports only the small class
definitions; heavy libraries are imported inside a kind's `open`.
"""

BUILTIN_KINDS = {
    "synthetic": "nodes.synthetic:Synthetic",
    "passthrough": "nodes.passthrough:Passthrough",
    "null": "nodes.null:Null",
}
