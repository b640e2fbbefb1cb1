"""Graph validation: every malformed graph is rejected before any process starts.

The contract pinned here: `posegraph.spec.load_graph` raises one SpecError whose
attributes name the file, the 1-based line, the node id and the field at fault, and whose
str() is a single line `FILE:LINE: node 'ID' field 'FIELD': DETAIL`; the CLI prints it as
`error: ...` on exactly one stderr line and exits 2.

Each malformed case lives in CASES (YAML text plus where the error must point). The named
tests check what each message says; one parametrised test checks the one-line format of
all of them; a handful of cases also go through the real `runner.py` as a subprocess.
Expected line numbers are computed from the YAML text (the line holding a marker
fragment), so a case's text and its expected line cannot drift apart.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from posegraph.spec import SpecError, load_graph  # noqa: E402

ANY_LINE = object()  # the error may or may not carry a line (nothing in the file to point at)
NO_LINE = object()  # the error must carry no line (it is not about a line of the file)

MYNODE = """\
from posegraph import Node, Param


class MyNode(Node):
    INPUTS = {"frame": "a frame"}
    OUTPUTS = {"frame": "the same frame"}
    PARAMS = {"gain": Param(1.0, min=0.0, max=10.0, help="a made-up gain")}

    def process(self, inputs, ctx):
        return {"frame": inputs["frame"]}


def helper():
    return None
"""

BROKEN = """\
raise RuntimeError("boom")
"""

BAD_PARAMS = """\
from posegraph import Node


class Bad(Node):
    INPUTS = {"frame": "a frame"}
    OUTPUTS = {"frame": "the same frame"}
    PARAMS = {"x": 5}

    def process(self, inputs, ctx):
        return {"frame": inputs["frame"]}
"""

NO_PROCESS = """\
from posegraph import Node


class Lazy(Node):
    INPUTS = {"frame": "a frame"}
    OUTPUTS = {"frame": "the same frame"}
"""


@dataclass(frozen=True)
class Case:
    yaml: str
    at: object  # marker fragment of the expected line, (fragment, nth occurrence), an int, ANY_LINE or NO_LINE
    node: str | None
    field: str | None
    words: tuple[str, ...]  # fragments the detail must contain
    files: tuple[tuple[str, str], ...] = ()  # extra files written next to the graph
    overrides: tuple[str, ...] = ()
    file: str | None = None  # expected SpecError.file when not the graph's path


def g(text: str) -> str:
    """A whole graph file written indented in this source."""
    return textwrap.dedent(text).lstrip("\n")


def more(text: str) -> str:
    """Node items to append to SOURCE's `nodes:` list (indented two spaces, like SOURCE's)."""
    return textwrap.indent(g(text), "  ")


SOURCE = """\
name: t
nodes:
  - id: source
    uses: synthetic
    params: {width: 64, height: 48, count: 5}
"""

CASES: dict[str, Case] = {
    # --- the file as a whole -------------------------------------------------------------
    "yaml_syntax_error": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic: oops
        """),
        "synthetic: oops", None, None, ("YAML syntax error", "mapping values are not allowed")),
    "top_level_is_a_list": Case(
        g("""
        - id: source
          uses: synthetic
        """),
        ANY_LINE, None, None, ("a graph file must be a mapping with a 'nodes' list",)),
    "empty_file": Case("", ANY_LINE, None, None, ("a graph file must be a mapping with a 'nodes' list",)),
    "missing_nodes": Case(
        g("""
        name: t
        description: no nodes at all
        """),
        "name: t", None, "nodes", ("'nodes' must be a non-empty list of nodes",)),
    "empty_nodes": Case(
        g("""
        name: t
        nodes: []
        """),
        "nodes: []", None, "nodes", ("'nodes' must be a non-empty list of nodes",)),
    "nodes_is_a_mapping": Case(
        g("""
        name: t
        nodes:
          source: {uses: synthetic}
        """),
        "nodes:", None, "nodes", ("'nodes' must be a non-empty list of nodes",)),
    "unknown_top_level_field": Case(
        g("""
        name: t
        node:
          - id: source
            uses: synthetic
        """),
        "node:", None, None, ("unknown top-level field 'node'", "(did you mean 'nodes'?)")),
    "bad_graph_transport": Case(
        SOURCE + "transport: udp\n",
        "transport: udp", None, "transport", ("transport must be one of ipc, tcp, got 'udp'",)),
    "bad_base_port": Case(
        SOURCE + "base_port: 80\n",
        "base_port: 80", None, "base_port", ("base_port must be an integer in 1024..65000, got 80",)),
    "node_is_not_a_mapping": Case(
        g("""
        name: t
        nodes:
          - synthetic
        """),
        "nodes:", None, "nodes", ("node #1 must be a mapping with 'id' and 'uses'",)),
    # --- ids ---------------------------------------------------------------------------
    "node_without_id": Case(
        SOURCE + more("""
          - uses: passthrough
            inputs: {frame: source/frame}
        """),
        "- uses: passthrough", None, "id", ("node #2 has no 'id'",)),
    "duplicate_id": Case(
        SOURCE + more("""
          - id: source
            uses: synthetic
        """),
        ("- id: source", 2), "source", "id", ("duplicate id", "first defined on line 3")),
    "bad_id_characters": Case(
        SOURCE + more("""
          - id: my hop!
            uses: passthrough
            inputs: {frame: source/frame}
        """),
        "- id: my hop!", None, "id", ("'my hop!'", "must start with a letter", "letters, digits, '_' or '-'")),
    "id_starting_with_a_digit": Case(
        SOURCE + more("""
          - id: 2hop
            uses: passthrough
            inputs: {frame: source/frame}
        """),
        "- id: 2hop", None, "id", ("'2hop'", "must start with a letter")),
    # --- uses --------------------------------------------------------------------------
    "missing_uses": Case(
        SOURCE + more("""
          - id: hop
            inputs: {frame: source/frame}
        """),
        "- id: hop", "hop", "uses", ("missing 'uses'", "path/to/file.py:ClassName")),
    "unknown_kind": Case(
        SOURCE + more("""
          - id: hop
            uses: pasthrough
            inputs: {frame: source/frame}
        """),
        "uses: pasthrough", "hop", "uses",
        ("unknown kind 'pasthrough'", "(did you mean 'passthrough'?)", "built-in kinds: ")),
    "user_node_file_not_found": Case(
        SOURCE + more("""
          - id: hop
            uses: missing.py:Thing
            inputs: {frame: source/frame}
        """),
        "uses: missing.py:Thing", "hop", "uses", ("node file 'missing.py' not found", "missing.py)")),
    "user_node_class_missing": Case(
        SOURCE + more("""
          - id: hop
            uses: mynode.py:MyNod
            inputs: {frame: source/frame}
        """),
        "uses: mynode.py:MyNod", "hop", "uses", ("'mynode.py' has no class 'MyNod'", "(did you mean 'MyNode'?)"),
        files=(("mynode.py", MYNODE),)),
    "user_node_file_fails_to_import": Case(
        SOURCE + more("""
          - id: hop
            uses: broken.py:Thing
            inputs: {frame: source/frame}
        """),
        "uses: broken.py:Thing", "hop", "uses", ("importing 'broken.py' failed", "RuntimeError: boom"),
        files=(("broken.py", BROKEN),)),
    "user_node_is_not_a_node_class": Case(
        SOURCE + more("""
          - id: hop
            uses: mynode.py:helper
            inputs: {frame: source/frame}
        """),
        "uses: mynode.py:helper", "hop", "uses", ("'mynode.py:helper' is not a posegraph.Node subclass",),
        files=(("mynode.py", MYNODE),)),
    # --- node fields -------------------------------------------------------------------
    "unknown_node_field": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            input: {frame: source/frame}
        """),
        "input: {frame", "hop", "input", ("unknown field", "(did you mean 'inputs'?)")),
    "bad_node_transport": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            transport: shm
        """),
        "transport: shm", "hop", "transport", ("transport must be one of ipc, tcp, got 'shm'",)),
    "bad_node_port": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            port: 99999
        """),
        "port: 99999", "hop", "port", ("port must be an integer in 1024..65000, got 99999",)),
    # --- params ------------------------------------------------------------------------
    "unknown_param": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
            params:
              widht: 320
        """),
        "widht: 320", "source", "params.widht",
        ("unknown param", "(did you mean 'width'?)", "this kind takes: count, fps, height, live, width")),
    "param_of_wrong_type": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
            params:
              height: 48
              width: "big"
        """),
        'width: "big"', "source", "params.width", ("expected int, got str 'big'",)),
    "param_below_minimum": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
            params:
              width: 2
        """),
        "width: 2", "source", "params.width", ("2 is below the minimum 8",)),
    "negative_count": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
            params:
              count: -1
        """),
        "count: -1", "source", "params.count", ("-1 is below the minimum 0",)),
    "param_above_maximum": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
            params:
              height: 10000
        """),
        "height: 10000", "source", "params.height", ("10000 is above the maximum 4320",)),
    "params_not_a_mapping": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
            params: [64, 48]
        """),
        "params: [64, 48]", "source", "params", ("params must be a mapping of name: value",)),
    # --- replicas, restart ---------------------------------------------------------------
    "replicas_on_stateful_null": Case(
        SOURCE + more("""
          - id: sink
            uses: null
            inputs: {frame: source/frame}
            replicas: 2
        """),
        "replicas: 2", "sink", "replicas", ("kind 'null' is stateful", "sharded by stream", "at most 1 replica")),
    "replicas_on_stateful_synthetic": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
            replicas: 3
        """),
        "replicas: 3", "source", "replicas", ("a source cannot be replicated",)),
    "zero_replicas": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            replicas: 0
        """),
        "replicas: 0", "hop", "replicas", ("replicas must be an integer in 1..64, got 0",)),
    "fractional_replicas": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            replicas: 1.5
        """),
        "replicas: 1.5", "hop", "replicas", ("replicas must be an integer in 1..64, got 1.5",)),
    "replicas_as_text": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            replicas: two
        """),
        "replicas: two", "hop", "replicas", ("replicas must be an integer in 1..64, got 'two'",)),
    "invalid_restart": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            restart: always
        """),
        "restart: always", "hop", "restart", ("restart must be one of on-failure, never, got 'always'",)),
    "invalid_max_restarts": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            max_restarts: -1
        """),
        "max_restarts: -1", "hop", "max_restarts", ("max_restarts must be an integer in 0..100, got -1",)),
    # --- wiring ------------------------------------------------------------------------
    "inputs_on_a_source": Case(
        SOURCE + more("""
          - id: second
            uses: synthetic
            inputs: {frame: source/frame}
        """),
        "inputs: {frame: source/frame}", "second", "inputs", ("kind 'synthetic' is a source and takes no inputs",)),
    "inputs_not_a_mapping": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: [source/frame]
        """),
        "inputs: [source/frame]", "hop", "inputs", ("inputs must be a mapping of port: producer/port",)),
    "unknown_input_port": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs:
              frames: source/frame
        """),
        "frames: source/frame", "hop", "inputs.frames",
        ("kind 'passthrough' has no input port 'frames'", "(did you mean 'frame'?)", "inputs: frame")),
    "input_from_missing_node": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs:
              frame: sorce/frame
        """),
        "frame: sorce/frame", "hop", "inputs.frame",
        ("wired to 'sorce/frame' but there is no node 'sorce'", "(did you mean 'source'?)")),
    "input_from_missing_output_port": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs:
              frame: source/image
        """),
        "frame: source/image", "hop", "inputs.frame",
        ("node 'source' (synthetic) has no output port 'image'", "outputs: frame")),
    "input_from_a_sink": Case(
        SOURCE + more("""
          - id: sink
            uses: null
            inputs: {frame: source/frame}
          - id: hop
            uses: passthrough
            inputs:
              frame: sink/frame
        """),
        "frame: sink/frame", "hop", "inputs.frame", ("node 'sink' (null) has no output port 'frame'", "outputs: none")),
    "reference_without_slash": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs:
              frame: source
        """),
        "frame: source", "hop", "inputs.frame", ("'source' must be producer_id/output_port",)),
    "reference_with_two_slashes": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs:
              frame: source/frame/0
        """),
        "frame: source/frame/0", "hop", "inputs.frame", ("'source/frame/0' must be producer_id/output_port",)),
    "required_input_wired_to_nothing": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
        """),
        "- id: hop", "hop", "inputs.frame", ("input port 'frame' is wired to nothing", "add inputs: {frame: producer/port}")),
    "self_loop": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs:
              frame: hop/frame
        """),
        "frame: hop/frame", "hop", "inputs.frame", ("a node cannot take its own output as input", "cycle")),
    "cycle": Case(
        SOURCE + more("""
          - id: left
            uses: passthrough
            inputs: {frame: right/frame}
          - id: right
            uses: passthrough
            inputs: {frame: left/frame}
          - id: sink
            uses: null
            inputs: {frame: source/frame}
        """),
        "inputs: {frame: right/frame}", "left", "inputs", ("the graph has a cycle: left -> right -> left",)),
    # --- queues ------------------------------------------------------------------------
    "queue_for_unwired_port": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            queue:
              frames: {size: 2}
        """),
        "frames: {size: 2}", "hop", "queue.frames", ("queue for 'frames', which is not a wired input", "(did you mean 'frame'?)")),
    "bad_queue_policy": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            queue:
              frame:
                policy: newest
        """),
        "policy: newest", "hop", "queue.frame.policy", ("policy must be one of block, latest, got 'newest'",)),
    "zero_queue_size": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            queue:
              frame:
                size: 0
        """),
        "size: 0", "hop", "queue.frame.size", ("size must be an integer in 1..1024, got 0",)),
    "queue_size_as_text": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            queue:
              frame:
                policy: latest
                size: many
        """),
        "size: many", "hop", "queue.frame.size", ("size must be an integer in 1..1024, got 'many'",)),
    "unknown_queue_field": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            queue:
              frame:
                sise: 2
        """),
        "sise: 2", "hop", "queue.frame.sise", ("unknown queue field", "(did you mean 'size'?)")),
    "queue_not_a_mapping": Case(
        SOURCE + more("""
          - id: hop
            uses: passthrough
            inputs: {frame: source/frame}
            queue:
              frame: 8
        """),
        "frame: 8", "hop", "queue.frame", ("must be a mapping {size: N, policy: block|latest}",)),
    # --- --set overrides (they name the command line, not a line of the file) --------------
    "set_unknown_node": Case(
        SOURCE, NO_LINE, None, None, ("'sorce.width=320'", "no node 'sorce'", "(did you mean 'source'?)"),
        overrides=("sorce.width=320",), file="--set"),
    "set_unknown_param": Case(
        SOURCE, NO_LINE, "source", "params.widht", ("unknown param", "(did you mean 'width'?)"),
        overrides=("source.widht=320",), file="--set"),
    "set_bad_value": Case(
        SOURCE, NO_LINE, "source", "params.width", ("expected int, got str 'big'",),
        overrides=("source.width=big",), file="--set"),
    "set_out_of_range_value": Case(
        SOURCE, NO_LINE, "source", "params.count", ("-5 is below the minimum 0",),
        overrides=("source.count=-5",), file="--set"),
    "set_without_equals": Case(
        SOURCE, NO_LINE, None, None, ("'source.width'", "must look like ID.PARAM=VALUE"),
        overrides=("source.width",), file="--set"),
    "set_without_param_name": Case(
        SOURCE, NO_LINE, None, None, ("'width=320'", "must look like ID.PARAM=VALUE"),
        overrides=("width=320",), file="--set"),
    # --- the YAML itself: what the loader refuses -------------------------------------------
    "duplicate_nodes_key": Case(
        SOURCE + g("""
        nodes:
          - id: other
            uses: synthetic
        """),
        ("nodes:", 2), None, "nodes", ("'nodes' is given twice (first on line 2)", "YAML would keep only the last")),
    "duplicate_key_in_a_node": Case(
        SOURCE + "    uses: passthrough\n",
        "uses: passthrough", "source", "uses", ("'uses' is given twice (first on line 4)",)),
    "duplicate_id_key_in_a_node": Case(
        g("""
        name: t
        nodes:
          - id: source
            id: camera
            uses: synthetic
        """),
        "id: camera", "source", "id", ("'id' is given twice (first on line 3)",)),
    "duplicate_param_key": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
            params:
              width: 64
              width: 32
        """),
        "width: 32", "source", "params.width", ("'width' is given twice (first on line 6)",)),
    "anchor_and_alias": Case(
        g("""
        name: &lol [lol, lol, lol, lol, lol, lol, lol, lol, lol]
        description: *lol
        nodes:
          - id: source
            uses: synthetic
        """),
        "name: &lol", None, None, ("YAML anchors and aliases (&name, *name) are not allowed",)),
    "alias_bomb_in_a_param": Case(  # "billion laughs": 9 ** 9 strings once expanded
        "name: t\nnodes:\n  - id: source\n    uses: synthetic\n    params:\n"
        + "".join(f"      a{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i else "lol"] * 9) + "]\n" for i in range(9))
        + "      width: *a8\n",
        "a0: &a0", None, None, ("YAML anchors and aliases",)),
    "nesting_too_deep": Case(
        SOURCE + "    params: {width: " + "[" * 20000 + "]" * 20000 + "}\n",
        "params: {width: [[[", None, None, ("YAML nested more than 64 levels deep",)),
    "integer_beyond_64_bits": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
            params:
              width: 9223372036854775808
        """),
        "width: 92233", "source", "params.width", ("integer 9223372036854775808 is out of range",)),
    "integer_of_five_thousand_digits": Case(
        SOURCE + "    replicas: " + "9" * 5000 + "\n",
        "replicas: 999", "source", "replicas", ("is out of range",)),
    "unreadable_date": Case(
        g("""
        name: 2024-13-45
        nodes:
          - id: source
            uses: synthetic
        """),
        "name: 2024-13-45", None, "name", ("cannot read '2024-13-45' as timestamp",)),
    # --- names: matched whole, control characters refused ----------------------------------
    "id_with_a_trailing_newline": Case(
        g("""
        name: t
        nodes:
          - id: "source\\n"
            uses: synthetic
        """),
        'id: "source', None, "id", ("id 'source\\n' must start with a letter",)),
    "machine_name_with_a_trailing_newline": Case(
        'machines: ["edge\\n"]\n' + SOURCE,
        "machines:", None, "machines", ("machine name 'edge\\n' must start with a letter",)),
    "graph_name_with_a_control_character": Case(
        g("""
        name: "demo\\x1b[2J"
        nodes:
          - id: source
            uses: synthetic
        """),
        "name: ", None, "name", ("name must be one line of text", "'demo\\x1b[2J'")),
    "uses_with_a_control_character": Case(
        SOURCE + more("""
          - id: hop
            uses: "passthrough\\x00"
            inputs: {frame: source/frame}
        """),
        'uses: "passthrough', "hop", "uses", ("must be a kind name or path/to/file.py:ClassName, got 'passthrough\\x00'",)),
    # --- values that pass a type check yet cannot run ----------------------------------------
    "nan_float_param": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
            params: {fps: .nan}
        """),
        "fps: .nan", "source", "params.fps", ("nan is not a finite number",)),
    "infinite_float_param": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
            params: {fps: -.inf}
        """),
        "fps: -.inf", "source", "params.fps", ("-inf is not a finite number",)),
    "params_given_as_zero": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
            params: 0
        """),
        "params: 0", "source", "params", ("params must be a mapping of name: value",)),
    "inputs_given_as_an_empty_list": Case(
        SOURCE + "    inputs: []\n",
        "inputs: []", "source", "inputs", ("inputs must be a mapping of port: producer/port",)),
    "two_nodes_on_one_port": Case(
        g("""
        name: t
        transport: tcp
        nodes:
          - id: source
            uses: synthetic
            port: 6000
          - id: sink
            uses: null
            inputs: {frame: source/frame}
            port: 6000
        """),
        ("port: 6000", 2), "sink", "port", ("replica 0 would bind tcp port 6000, which node 'source' binds too",)),
    "replica_ports_overlap": Case(
        g("""
        name: t
        nodes:
          - id: source
            uses: synthetic
          - id: hop
            uses: passthrough
            transport: tcp
            replicas: 2
            port: 6000
            inputs: {frame: source/frame}
          - id: sink
            uses: null
            transport: tcp
            port: 6002
            inputs: {frame: hop/frame}
        """),
        "port: 6002", "sink", "port", ("replica 0 would bind tcp port 6002, which node 'hop' binds too",)),
    "port_on_an_automatic_port": Case(
        g("""
        name: t
        transport: tcp
        base_port: 6000
        nodes:
          - id: source
            uses: synthetic
          - id: sink
            uses: null
            port: 6001
            inputs: {frame: source/frame}
        """),
        "port: 6001", "sink", "port", ("tcp port 6001, which node 'source' binds too",)),
    # --- user node files that misbehave -----------------------------------------------------
    "user_node_exits_at_import": Case(
        SOURCE + more("""
          - id: hop
            uses: exits.py:Thing
            inputs: {frame: source/frame}
        """),
        "uses: exits.py:Thing", "hop", "uses", ("importing 'exits.py' failed: SystemExit: 0",),
        files=(("exits.py", "raise SystemExit(0)\n"),)),
    "user_node_interrupted_at_import": Case(
        SOURCE + more("""
          - id: hop
            uses: interrupts.py:Thing
            inputs: {frame: source/frame}
        """),
        "uses: interrupts.py:Thing", "hop", "uses", ("importing 'interrupts.py' failed: KeyboardInterrupt",),
        files=(("interrupts.py", "raise KeyboardInterrupt\n"),)),
    "user_node_param_that_is_not_a_param": Case(
        SOURCE + more("""
          - id: hop
            uses: badparams.py:Bad
            inputs: {frame: source/frame}
        """),
        "uses: badparams.py:Bad", "hop", "uses", ("class Bad: param 'x' must be declared as Param(default, ...), got int 5",),
        files=(("badparams.py", BAD_PARAMS),)),
    "user_node_without_process": Case(
        SOURCE + more("""
          - id: hop
            uses: lazy.py:Lazy
            inputs: {frame: source/frame}
        """),
        "uses: lazy.py:Lazy", "hop", "uses", ("class Lazy does not implement process(self, inputs, ctx)",),
        files=(("lazy.py", NO_PROCESS),)),
}


# --- helpers ---------------------------------------------------------------------------

def write_case(tmp_path: Path, case: Case, name: str = "graph.yaml") -> Path:
    for file_name, text in case.files:
        (tmp_path / file_name).write_text(text)
    path = tmp_path / name
    path.write_text(case.yaml)
    return path


def expected_line(case: Case):
    if case.at in (ANY_LINE, NO_LINE) or isinstance(case.at, int):
        return case.at
    fragment, nth = case.at if isinstance(case.at, tuple) else (case.at, 1)
    hits = [i for i, text in enumerate(case.yaml.splitlines(), 1) if fragment in text]
    assert len(hits) >= nth, f"marker {fragment!r} occurs {len(hits)} times in the case's YAML"
    if nth == 1:
        assert len(hits) == 1, f"marker {fragment!r} is ambiguous in the case's YAML (lines {hits})"
    return hits[nth - 1]


def reject(tmp_path: Path, key: str) -> SpecError:
    """Load CASES[key] through load_graph; check the error's location; return it."""
    case = CASES[key]
    path = write_case(tmp_path, case)
    with pytest.raises(SpecError) as info:
        load_graph(path, list(case.overrides))
    err = info.value
    assert err.file == (case.file or str(path))
    line = expected_line(case)
    if line is NO_LINE:
        assert err.line is None
    elif line is not ANY_LINE:
        assert err.line == line, f"error points at line {err.line}, expected {line}: {err}"
    assert err.node == case.node
    assert err.field == case.field
    for word in case.words:
        assert word in err.detail, f"{word!r} not in {err.detail!r}"
    return err


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "runner.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.endswith("\n")
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"stderr is not one line:\n{result.stderr}"
    assert lines[0].startswith("error: ")
    return lines[0]


# --- every case: one precise line -------------------------------------------------------

@pytest.mark.parametrize("key", list(CASES))
def test_every_malformed_graph_fails_with_one_line_naming_file_line_node_and_field(tmp_path, key):
    err = reject(tmp_path, key)
    head = err.file + (f":{err.line}" if err.line is not None else "")
    if err.node:
        head += f": node '{err.node}'"
    if err.field:
        head += (" " if err.node else ": ") + f"field '{err.field}'"
    assert str(err) == f"{head}: {err.detail}"
    assert "\n" not in str(err)


def test_there_are_at_least_twenty_distinct_malformed_cases():
    assert len(CASES) >= 20
    assert len({c.yaml + "|".join(c.overrides) + "|".join(t for _, t in c.files) for c in CASES.values()}) == len(CASES)


# --- the file as a whole ------------------------------------------------------------------

def test_yaml_syntax_error_names_its_line(tmp_path):
    err = reject(tmp_path, "yaml_syntax_error")
    assert err.line == 4
    # libyaml says "... in this context", PyYAML's pure-Python parser "... here"
    assert err.detail.startswith("YAML syntax error: mapping values are not allowed")


def test_top_level_list_is_not_a_graph(tmp_path):
    err = reject(tmp_path, "top_level_is_a_list")
    assert err.detail == "a graph file must be a mapping with a 'nodes' list"


def test_empty_file_is_not_a_graph(tmp_path):
    err = reject(tmp_path, "empty_file")
    assert err.detail == "a graph file must be a mapping with a 'nodes' list"


def test_graph_without_nodes_points_at_the_top_mapping(tmp_path):
    err = reject(tmp_path, "missing_nodes")
    assert err.line == 1
    assert err.detail == "'nodes' must be a non-empty list of nodes"


def test_empty_nodes_list_points_at_the_nodes_key(tmp_path):
    err = reject(tmp_path, "empty_nodes")
    assert err.line == 2
    assert err.detail == "'nodes' must be a non-empty list of nodes"


def test_nodes_written_as_a_mapping_is_rejected(tmp_path):
    assert reject(tmp_path, "nodes_is_a_mapping").detail == "'nodes' must be a non-empty list of nodes"


def test_unknown_top_level_field_suggests_the_closest_one(tmp_path):
    err = reject(tmp_path, "unknown_top_level_field")
    assert err.detail == "unknown top-level field 'node' (did you mean 'nodes'?)"
    assert str(err).endswith(f"graph.yaml:2: {err.detail}")


def test_graph_transport_and_base_port_are_checked(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert reject(tmp_path / "a", "bad_graph_transport").detail == "transport must be one of ipc, tcp, got 'udp'"
    assert reject(tmp_path / "b", "bad_base_port").detail == "base_port must be an integer in 1024..65000, got 80"


def test_node_that_is_not_a_mapping_is_rejected(tmp_path):
    assert reject(tmp_path, "node_is_not_a_mapping").detail == "node #1 must be a mapping with 'id' and 'uses'"


def test_missing_graph_file_is_a_spec_error_naming_the_file(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(SpecError) as info:
        load_graph(path)
    assert info.value.file == str(path)
    assert info.value.detail == "graph file not found"
    assert str(info.value) == f"{path}: graph file not found"


def test_graph_file_that_is_not_utf8_text_is_a_spec_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\nnodes: []\n".encode("latin-1"))
    with pytest.raises(SpecError) as info:
        load_graph(path)
    assert info.value.file == str(path)
    assert "utf-8" in info.value.detail.lower()


# --- ids ----------------------------------------------------------------------------------

def test_node_without_id_points_at_the_node_and_counts_it(tmp_path):
    err = reject(tmp_path, "node_without_id")
    assert err.line == 6
    assert err.detail == "node #2 has no 'id'"
    assert str(err) == f"{err.file}:6: field 'id': node #2 has no 'id'"


def test_duplicate_id_points_at_the_second_and_mentions_the_first_line(tmp_path):
    err = reject(tmp_path, "duplicate_id")
    assert err.line == 6
    assert err.detail == "duplicate id (first defined on line 3)"


def test_id_with_bad_characters_is_rejected(tmp_path):
    err = reject(tmp_path, "bad_id_characters")
    assert err.detail == "id 'my hop!' must start with a letter and hold only letters, digits, '_' or '-'"


def test_id_starting_with_a_digit_is_rejected(tmp_path):
    assert reject(tmp_path, "id_starting_with_a_digit").detail.startswith("id '2hop' must start with a letter")


# --- uses -----------------------------------------------------------------------------------

def test_missing_uses_is_rejected(tmp_path):
    err = reject(tmp_path, "missing_uses")
    assert err.detail == "missing 'uses' (a kind name or path/to/file.py:ClassName)"


def test_unknown_kind_suggests_the_closest_builtin(tmp_path):
    err = reject(tmp_path, "unknown_kind")
    assert err.line == 7
    from posegraph.registry import kinds

    assert err.detail == ("unknown kind 'pasthrough' (did you mean 'passthrough'?); "
                          f"built-in kinds: {', '.join(sorted(kinds()))}")


def test_user_node_file_not_found_says_where_it_looked(tmp_path):
    err = reject(tmp_path, "user_node_file_not_found")
    assert err.detail == f"node file 'missing.py' not found (looked at {(tmp_path / 'missing.py').resolve()})"


def test_user_node_file_without_the_class_suggests_the_closest_class(tmp_path):
    err = reject(tmp_path, "user_node_class_missing")
    assert err.detail == "'mynode.py' has no class 'MyNod' (did you mean 'MyNode'?)"


def test_user_node_file_that_fails_to_import_reports_the_exception(tmp_path):
    err = reject(tmp_path, "user_node_file_fails_to_import")
    assert err.detail == "importing 'broken.py' failed: RuntimeError: boom"


def test_user_node_that_is_not_a_node_class_is_rejected(tmp_path):
    assert reject(tmp_path, "user_node_is_not_a_node_class").detail == "'mynode.py:helper' is not a posegraph.Node subclass"


# --- node fields --------------------------------------------------------------------------

def test_unknown_node_field_suggests_inputs(tmp_path):
    err = reject(tmp_path, "unknown_node_field")
    assert err.line == 8
    assert err.detail == "unknown field (did you mean 'inputs'?)"


def test_node_transport_and_port_are_checked(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert reject(tmp_path / "a", "bad_node_transport").detail == "transport must be one of ipc, tcp, got 'shm'"
    assert reject(tmp_path / "b", "bad_node_port").detail == "port must be an integer in 1024..65000, got 99999"


# --- params ---------------------------------------------------------------------------------

def test_unknown_param_suggests_width_and_lists_the_params(tmp_path):
    err = reject(tmp_path, "unknown_param")
    assert err.line == 6
    assert err.detail == "unknown param (did you mean 'width'?); this kind takes: count, fps, height, live, width"


def test_param_of_the_wrong_type_says_what_was_expected(tmp_path):
    err = reject(tmp_path, "param_of_wrong_type")
    assert err.line == 7
    assert err.detail == "expected int, got str 'big'"


def test_width_below_its_minimum_is_rejected(tmp_path):
    assert reject(tmp_path, "param_below_minimum").detail == "2 is below the minimum 8"


def test_negative_count_is_rejected(tmp_path):
    assert reject(tmp_path, "negative_count").detail == "-1 is below the minimum 0"


def test_height_above_its_maximum_is_rejected(tmp_path):
    assert reject(tmp_path, "param_above_maximum").detail == "10000 is above the maximum 4320"


def test_params_that_are_not_a_mapping_are_rejected(tmp_path):
    assert reject(tmp_path, "params_not_a_mapping").detail == "params must be a mapping of name: value"


# --- replicas, restart ------------------------------------------------------------------------

def test_stateful_sink_has_no_more_replicas_than_streams_reaching_it(tmp_path):
    err = reject(tmp_path, "replicas_on_stateful_null")
    assert err.line == 9
    assert err.detail == ("kind 'null' is stateful (its output depends on earlier frames of a stream), so its replicas are "
                          "sharded by stream; 1 stream(s) reach it, so at most 1 replica(s) can work")


def test_a_source_cannot_be_replicated(tmp_path):
    assert reject(tmp_path, "replicas_on_stateful_synthetic").detail == "a source cannot be replicated"


@pytest.mark.parametrize("key, shown", [("zero_replicas", "0"), ("fractional_replicas", "1.5"), ("replicas_as_text", "'two'")])
def test_replicas_must_be_a_positive_integer(tmp_path, key, shown):
    assert reject(tmp_path, key).detail == f"replicas must be an integer in 1..64, got {shown}"


def test_invalid_restart_lists_the_allowed_values(tmp_path):
    assert reject(tmp_path, "invalid_restart").detail == "restart must be one of on-failure, never, got 'always'"


def test_negative_max_restarts_is_rejected(tmp_path):
    assert reject(tmp_path, "invalid_max_restarts").detail == "max_restarts must be an integer in 0..100, got -1"


# --- wiring ---------------------------------------------------------------------------------

def test_source_kind_takes_no_inputs(tmp_path):
    err = reject(tmp_path, "inputs_on_a_source")
    assert err.line == 8
    assert err.detail == "kind 'synthetic' is a source and takes no inputs"


def test_inputs_written_as_a_list_are_rejected(tmp_path):
    assert reject(tmp_path, "inputs_not_a_mapping").detail == "inputs must be a mapping of port: producer/port"


def test_input_port_the_kind_lacks_suggests_its_real_port(tmp_path):
    err = reject(tmp_path, "unknown_input_port")
    assert err.line == 9
    assert err.detail == "kind 'passthrough' has no input port 'frames' (did you mean 'frame'?); inputs: frame"


def test_input_wired_to_a_missing_node_suggests_the_closest_id(tmp_path):
    err = reject(tmp_path, "input_from_missing_node")
    assert err.line == 9
    assert err.detail == "wired to 'sorce/frame' but there is no node 'sorce' (did you mean 'source'?)"


def test_input_wired_to_an_output_the_producer_lacks_lists_its_outputs(tmp_path):
    err = reject(tmp_path, "input_from_missing_output_port")
    assert err.detail == "node 'source' (synthetic) has no output port 'image'; outputs: frame"


def test_input_wired_to_a_sink_says_it_has_no_outputs(tmp_path):
    err = reject(tmp_path, "input_from_a_sink")
    assert err.line == 12
    assert err.detail == "node 'sink' (null) has no output port 'frame'; outputs: none"


@pytest.mark.parametrize("key, ref", [("reference_without_slash", "source"), ("reference_with_two_slashes", "source/frame/0")])
def test_malformed_reference_must_be_producer_slash_port(tmp_path, key, ref):
    assert reject(tmp_path, key).detail == f"{ref!r} must be producer_id/output_port (or a list of them)"


def test_required_input_wired_to_nothing_points_at_the_node(tmp_path):
    err = reject(tmp_path, "required_input_wired_to_nothing")
    assert err.line == 6
    assert err.detail == "input port 'frame' is wired to nothing (add inputs: {frame: producer/port})"


def test_self_loop_is_rejected_as_a_cycle(tmp_path):
    err = reject(tmp_path, "self_loop")
    assert err.detail == "a node cannot take its own output as input (cycle)"


def test_cycle_names_the_cycle_path_and_its_first_node(tmp_path):
    err = reject(tmp_path, "cycle")
    assert err.line == 8
    assert err.detail == "the graph has a cycle: left -> right -> left"


# --- queues ---------------------------------------------------------------------------------

def test_queue_for_an_unwired_port_suggests_the_wired_one(tmp_path):
    err = reject(tmp_path, "queue_for_unwired_port")
    assert err.line == 10
    assert err.detail == "queue for 'frames', which is not a wired input (did you mean 'frame'?)"


def test_bad_queue_policy_lists_the_policies(tmp_path):
    err = reject(tmp_path, "bad_queue_policy")
    assert err.line == 11
    assert err.detail == "policy must be one of block, latest, got 'newest'"


@pytest.mark.parametrize("key, shown", [("zero_queue_size", "0"), ("queue_size_as_text", "'many'")])
def test_queue_size_must_be_an_integer_in_range(tmp_path, key, shown):
    assert reject(tmp_path, key).detail == f"size must be an integer in 1..1024, got {shown}"


def test_unknown_queue_field_suggests_size(tmp_path):
    assert reject(tmp_path, "unknown_queue_field").detail == "unknown queue field (did you mean 'size'?)"


def test_queue_entry_that_is_not_a_mapping_is_rejected(tmp_path):
    assert reject(tmp_path, "queue_not_a_mapping").detail == "must be a mapping {size: N, policy: block|latest}"


# --- --set overrides --------------------------------------------------------------------------

def test_set_on_an_unknown_node_suggests_the_closest_id(tmp_path):
    err = reject(tmp_path, "set_unknown_node")
    assert err.detail == "'sorce.width=320': no node 'sorce' (did you mean 'source'?)"


def test_set_of_an_unknown_param_suggests_the_closest_param(tmp_path):
    err = reject(tmp_path, "set_unknown_param")
    assert err.detail == "unknown param (did you mean 'width'?); this kind takes: count, fps, height, live, width"


def test_set_with_a_value_of_the_wrong_type_is_rejected(tmp_path):
    assert reject(tmp_path, "set_bad_value").detail == "expected int, got str 'big'"


def test_set_with_an_out_of_range_value_is_rejected(tmp_path):
    assert reject(tmp_path, "set_out_of_range_value").detail == "-5 is below the minimum 0"


@pytest.mark.parametrize("key, item", [("set_without_equals", "source.width"), ("set_without_param_name", "width=320")])
def test_malformed_set_item_shows_the_expected_shape(tmp_path, key, item):
    assert reject(tmp_path, key).detail == f"{item!r} must look like ID.PARAM=VALUE"


# --- valid graphs ---------------------------------------------------------------------------

def test_shipped_synthetic_graph_is_valid():
    spec = load_graph(ROOT / "graphs" / "synthetic.yaml")
    assert list(spec.nodes) == ["source", "hop1", "hop2", "sink"]
    assert spec.topological_order() == ["source", "hop1", "hop2", "sink"]
    assert spec.nodes["source"].params == {"width": 1280, "height": 720, "count": 300, "fps": 0.0, "live": True}
    assert spec.nodes["sink"].uses == "null"


def test_uses_null_means_the_null_sink_kind(tmp_path):
    path = tmp_path / "graph.yaml"
    path.write_text(SOURCE + "  - id: sink\n    uses: null\n    inputs: {frame: source/frame}\n")
    spec = load_graph(path)
    from posegraph.nodes.null import Null

    assert spec.nodes["sink"].uses == "null"
    assert spec.nodes["sink"].kind is Null
    assert spec.nodes["sink"].params == {"record": "", "delay_ms": 0.0}


def test_valid_graph_gets_defaults_queues_and_replicas(tmp_path):
    path = tmp_path / "graph.yaml"
    path.write_text(g("""
        name: fan
        nodes:
          - id: sink
            uses: "null"
            inputs: {frame: hop/frame}
            queue: {frame: {policy: latest}}
          - id: hop
            uses: passthrough
            replicas: 4
            restart: never
            inputs: {frame: source/frame}
            queue: {frame: {size: 8}}
          - id: source
            uses: synthetic
            params: {width: 64}
        """))
    spec = load_graph(path)
    assert spec.topological_order() == ["source", "hop", "sink"]  # producers may come later in the file
    assert spec.nodes["hop"].replicas == 4 and spec.nodes["hop"].restart == "never"
    assert (spec.nodes["hop"].inputs["frame"].policy, spec.nodes["hop"].inputs["frame"].size) == ("block", 8)
    assert (spec.nodes["sink"].inputs["frame"].policy, spec.nodes["sink"].inputs["frame"].size) == ("latest", 1)
    assert spec.nodes["source"].params == {"width": 64, "height": 480, "count": 100, "fps": 0.0, "live": True}
    assert spec.nodes["sink"].line == 3 and spec.nodes["source"].line == 13


def test_set_override_replaces_a_param_after_checking_it(tmp_path):
    path = tmp_path / "graph.yaml"
    path.write_text(SOURCE)
    spec = load_graph(path, ["source.width=320", "source.fps=2.5"])
    assert spec.nodes["source"].params["width"] == 320
    assert spec.nodes["source"].params["fps"] == 2.5


def test_user_node_file_resolves_relative_to_the_graph_file(tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "graphs").mkdir()
    (tmp_path / "lib" / "mynode.py").write_text(MYNODE)
    path = tmp_path / "graphs" / "graph.yaml"
    path.write_text(SOURCE + "  - id: mine\n    uses: ../lib/mynode.py:MyNode\n    params: {gain: 2}\n"
                    "    inputs: {frame: source/frame}\n")
    monkeypatch.chdir(tmp_path)  # run from the project's folder, which holds both graphs/ and lib/
    spec = load_graph(path)
    assert spec.nodes["mine"].kind.__name__ == "MyNode"
    assert spec.nodes["mine"].params == {"gain": 2.0}


# --- malformed files: the loader's limits (one line each, fast, small) ----------------------------

def check_in_process(*args) -> tuple[int, str, str]:
    """`runner.py check ARGS` through the CLI's main in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from posegraph.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


def one_error_line(code: int, out: str, err: str) -> str:
    assert code == 2, (out, err)
    assert out == ""
    assert err.endswith("\n") and len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    return err.rstrip("\n")


def test_a_second_nodes_key_is_refused_instead_of_replacing_the_first(tmp_path):
    err = reject(tmp_path, "duplicate_nodes_key")
    assert (err.line, err.field) == (6, "nodes")
    assert err.detail == "'nodes' is given twice (first on line 2); YAML would keep only the last"


def test_a_key_given_twice_in_a_node_names_the_node_and_field(tmp_path):
    err = reject(tmp_path, "duplicate_param_key")
    assert str(err) == f"{err.file}:7: node 'source' field 'params.width': 'width' is given twice (first on line 6); YAML would keep only the last"


def test_an_id_with_a_trailing_newline_is_refused(tmp_path):
    err = reject(tmp_path, "id_with_a_trailing_newline")
    assert err.detail == r"id 'source\n' must start with a letter and hold only letters, digits, '_' or '-'"
    assert "\n" not in str(err)


@pytest.mark.parametrize("key", ["anchor_and_alias", "alias_bomb_in_a_param"])
def test_aliases_are_refused_before_anything_expands(tmp_path, key):
    import time

    started = time.monotonic()
    err = reject(tmp_path, key)
    assert time.monotonic() - started < 5
    assert err.detail == "YAML anchors and aliases (&name, *name) are not allowed in a graph file; write the value out"


def test_twenty_thousand_levels_of_nesting_is_one_line_not_a_recursion_error(tmp_path):
    err = reject(tmp_path, "nesting_too_deep")
    assert err.detail == "YAML nested more than 64 levels deep"
    path = tmp_path / "block.yaml"  # block style, one level per line
    path.write_text("name: t\nnodes:\n" + "".join("  " * i + "- \n" for i in range(300)))
    with pytest.raises(SpecError, match="nested more than 64 levels"):
        load_graph(path)


def test_an_integer_beyond_64_bits_is_refused_where_it_is_written(tmp_path):
    assert reject(tmp_path, "integer_beyond_64_bits").line == 6
    err = reject(tmp_path, "integer_of_five_thousand_digits")
    assert len(str(err)) < 400


def test_more_values_than_a_graph_could_hold_are_refused(tmp_path):
    path = tmp_path / "graph.yaml"
    path.write_text("name: t\nnodes: [" + ", ".join(["1"] * 60_000) + "]\n")
    with pytest.raises(SpecError) as info:
        load_graph(path)
    assert info.value.detail == "more than 50000 YAML values; a graph file this large is not a graph"


def test_a_graph_file_over_one_megabyte_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "graph.yaml"
    path.write_text(SOURCE + "#" * 1_000_001 + "\n")
    with pytest.raises(SpecError) as info:
        load_graph(path)
    assert info.value.detail == "graph file is larger than 1000000 bytes; a graph file is a page of YAML"


@pytest.mark.parametrize("what", ["directory", "fifo", "dev_zero"])
def test_a_graph_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, what):
    import os

    if what == "directory":
        path, kind = tmp_path, "a directory"
    elif what == "fifo":
        path, kind = tmp_path / "graph.yaml", "a FIFO"
        os.mkfifo(path)  # opened for reading, it would block until a writer comes
    else:
        path, kind = Path("/dev/zero"), "a character device"
        if not path.exists():
            pytest.skip("no /dev/zero here")
    line = one_error_line(*check_in_process(path))
    assert line == f"error: {path}: cannot read graph file: it is {kind}, not a regular file"


def test_a_huge_value_is_cut_short_in_the_error(tmp_path):
    path = tmp_path / "graph.yaml"
    path.write_text(SOURCE + '    queue: {}\n' + "" if False else SOURCE.replace("width: 64", "width: '" + "x\\n" * 300_000 + "'"))
    line = one_error_line(*check_in_process(path))
    assert "field 'params.width': expected int, got str 'x\\\\nx\\\\n" in line
    assert len(line) < len(str(path)) + 250


def test_a_set_value_with_aliases_is_plain_text_not_a_bomb(tmp_path):
    path = tmp_path / "graph.yaml"
    path.write_text(SOURCE)
    bomb = "[&a [1, 1, 1, 1, 1, 1, 1, 1, 1], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a], [*b, *b, *b, *b, *b, *b, *b, *b, *b]]"
    with pytest.raises(SpecError) as info:
        load_graph(path, [f"source.width={bomb}"])
    assert info.value.detail.startswith("expected int, got str '[&a [1,")
    assert len(info.value.detail) < 200


# --- params: nan and inf, numbers a float cannot hold, checks that fail -------------------------

def test_a_float_param_refuses_nan_and_inf_unless_its_param_allows_them():
    import math

    from posegraph import Param

    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="is not a finite number"):
            Param(1.0, min=0.0, max=10.0).coerce(value)
    assert math.isnan(Param(1.0, finite=False).coerce(math.nan))
    with pytest.raises(ValueError, match="too large for a float"):
        Param(1.0).coerce(10 ** 400)


def test_a_param_check_that_raises_is_a_param_error_not_a_traceback():
    from posegraph import Node, Param
    from posegraph.node import ParamError, check_param

    class Picky(Node):
        PARAMS = {"path": Param("", check=lambda value: value.nope)}

    with pytest.raises(ParamError, match="'x' was refused: AttributeError"):
        check_param(Picky, "path", "x")


# --- kinds: what a class must declare --------------------------------------------------------

@pytest.mark.parametrize("attrs, message", [
    ({"INPUTS": ["frame"]}, "class K: INPUTS must be a dict {port: description}, got list ['frame']"),
    ({"OUTPUTS": {"two words": ""}}, "class K: OUTPUTS port 'two words' must be a name of letters, digits, '_' or '-'"),
    ({"OUTPUTS": {"frame\n": ""}}, "class K: OUTPUTS port 'frame\\n' must be a name of letters, digits, '_' or '-'"),
    ({"PARAMS": [1]}, "class K: PARAMS must be a dict {name: Param(...)}, got list [1]"),
    ({"PARAMS": {"x": 5}}, "class K: param 'x' must be declared as Param(default, ...), got int 5"),
    ({"OPTIONAL_INPUTS": {"nope"}}, "class K: OPTIONAL_INPUTS must be a set of its INPUTS ports, got {'nope'}"),
    ({"STATEFUL": "yes"}, "class K: STATEFUL must be True or False, got 'yes'"),
    ({"KEYS": 5}, "class K: KEYS must be None or a posegraph.Keys (split and merge), got 5"),
    ({"KEY_TIMEOUT": 0}, "class K: KEY_TIMEOUT must be a whole number of frames, 1 or more, got 0"),
    ({"process": None}, "class K does not implement process(self, inputs, ctx)"),
])
def test_malformed_kind_declarations_are_one_kind_error(attrs, message):
    from posegraph import Node
    from posegraph.kinds import KindError, check_declarations

    base = {"INPUTS": {"frame": ""}, "OUTPUTS": {"frame": ""}, "process": lambda self, inputs, ctx: {}}
    kind = type("K", (Node,), {**base, **attrs})
    if attrs.get("process", 1) is None:
        del kind.process  # inherits Node.process, which only raises NotImplementedError
    with pytest.raises(KindError) as info:
        check_declarations(kind)
    assert str(info.value) == message


# --- every field, every wrong type ------------------------------------------------------------

NODE_LEVEL = "nodes:\n  - id: source\n    uses: synthetic\n  - id: hop\n    uses: passthrough\n    inputs: {frame: source/frame}\n"

WRONG_TYPES: dict[tuple[str, str], tuple[str, ...]] = {
    # (level, field): YAML texts of values the field must refuse
    ("graph", "name"): ("5", "1.5", "[1]", "{}", "{a: 1}", "true", ".nan", "''", '"a\\nb"', "'" + "n" * 201 + "'"),
    ("graph", "description"): ("5", "1.5", "[1]", "{}", "true"),
    ("graph", "nodes"): ("5", "x", "[1]", "{}", "{a: 1}", "true", "~", "[]", "[[]]", "[~]"),
    ("graph", "transport"): ("5", "x", "[1]", "{}", "true", "~"),
    ("graph", "host"): ("5", "[1]", "{}", "true", "~", "''", "'a b'", '"a\\n"'),
    ("graph", "base_port"): ("5", "-1", "1.5", "x", "[1]", "{}", "true", "~", "70000", "9223372036854775807"),
    ("graph", "machines"): ("5", "x", "[1]", "{}", "true", "[]", "[a.b]", "[a, a]", "[[a]]"),
    ("graph", "security"): ("5", "x", "[1]", "{}", "{a: 1}", "true", "{curve: 5}", "{curve: ''}", '{curve: "a\\0b"}'),
    ("node", "id"): ("5", "x y", "[1]", "{}", "true", "~", "2a", '"a\\n"', "'" + "a" * 65 + "'"),
    ("node", "uses"): ("5", "[1]", "{}", "true", "''", "x", "x.py:X", '"x\\0y.py:X"'),
    ("node", "params"): ("5", "x", "[1]", "true", "0", "''", "[]", "{a: 1}"),
    ("node", "inputs"): ("5", "x", "[1]", "true", "0", "''", "[]", "{a: 1}", "{frame: 5}", "{frame: [1]}", "{frame: []}"),
    ("node", "queue"): ("5", "x", "[1]", "true", "3", "0", "[]", "{a: 1}", "{frame: 3}", "{frame: {size: x}}"),
    ("node", "replicas"): ("0", "-1", "1.5", "x", "[1]", "{}", "true", "~", "65", "9223372036854775807", ".nan"),
    ("node", "restart"): ("5", "x", "[1]", "{}", "true", "~"),
    ("node", "max_restarts"): ("-1", "1.5", "x", "[1]", "{}", "true", "~", "101"),
    ("node", "transport"): ("5", "x", "[1]", "{}", "true", "~"),
    ("node", "port"): ("5", "-1", "1.5", "x", "[1]", "{}", "true", "70000"),
    ("node", "cpus"): ("a", "5", "[]", "[1.5]", "[a]", "{}", "true", "[9999]", "[true]"),
    ("node", "cpus_shared"): ("5", "x", "[1]", "{}", "~"),
    ("node", "machine"): ("{}", "[1]", "5", "x", "true"),
    ("node", "resources"): ("5", "x", "[1]", "true", "{cpu: -1}", "{cpu: x}", "{'a b': 1}", "{cpu: true}", "{gpu: 2000}", "{cpu: .nan}"),
    ("node", "colocate"): ("5", "x", "{}", "true", "[1]", "[nosuch]", "[[a]]"),
}
WRONG_TYPE_CASES = [(level, name, value) for (level, name), values in WRONG_TYPES.items() for value in values]


def wrong_type_graph(level: str, name: str, value: str) -> str:
    """A small valid graph with `name` set to `value` at the graph's or the second node's level."""
    if level == "graph":
        if name == "nodes":
            return f"nodes: {value}\n"
        return f"{name}: {value}\n" + NODE_LEVEL
    lines = NODE_LEVEL.splitlines()
    own = [i for i, line in enumerate(lines) if i >= 3 and line.strip().lstrip("- ").startswith(f"{name}:")]
    if own:
        lines[own[0]] = lines[own[0]].split(f"{name}:")[0] + f"{name}: {value}"
    else:
        lines.append(f"    {name}: {value}")
    return "\n".join(lines) + "\n"


def test_the_wrong_type_table_covers_every_field():
    from posegraph.spec import GRAPH_FIELDS, NODE_FIELDS

    assert {n for level, n in WRONG_TYPES if level == "graph"} == GRAPH_FIELDS
    assert {n for level, n in WRONG_TYPES if level == "node"} == NODE_FIELDS
    assert len(WRONG_TYPE_CASES) >= 150


def test_every_field_with_every_wrong_type_is_one_line_and_exit_2(tmp_path):
    """Fault 8: each field of the graph and of a node, given each value of the wrong type,
    is refused with exit 2 and one line naming that field (in-process, through the CLI)."""
    import time

    path = tmp_path / "graph.yaml"
    path.write_text(wrong_type_graph("graph", "description", "'a valid graph'"))
    assert check_in_process(path)[0] == 0
    for level, name, value in WRONG_TYPE_CASES:
        path.write_text(wrong_type_graph(level, name, value))
        started = time.monotonic()
        code, out, err = check_in_process(path)
        assert time.monotonic() - started < 5, (name, value)
        line = one_error_line(code, out, err)
        assert line.startswith(f"error: {path}:"), (name, value, line)
        assert f"field '{name}" in line, (name, value, line)
        if level == "node" and name != "id":
            assert "node 'hop'" in line, (name, value, line)


# --- user node files: where they may be, how often they are imported ----------------------------

COUNTING = MYNODE + """
import os

with open(os.path.join(os.path.dirname(__file__), "imports.log"), "a") as log:
    log.write("imported\\n")
"""


def test_a_node_file_outside_the_graph_folder_and_cwd_is_refused_before_it_runs(tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "graphs").mkdir()
    (tmp_path / "lib" / "mynode.py").write_text(COUNTING)
    path = tmp_path / "graphs" / "graph.yaml"
    path.write_text(SOURCE + "  - id: mine\n    uses: ../lib/mynode.py:MyNode\n    inputs: {frame: source/frame}\n")
    monkeypatch.chdir(tmp_path / "graphs")
    with pytest.raises(SpecError) as info:
        load_graph(path)
    err = info.value
    assert (err.line, err.node, err.field) == (7, "mine", "uses")
    assert err.detail == (f"node file {tmp_path / 'lib' / 'mynode.py'} is outside the graph file's folder and the current "
                          "directory; node files are code that check and run import: pass --allow-outside to use it")
    assert not (tmp_path / "lib" / "imports.log").exists()  # refused without running it
    assert load_graph(path, allow_outside=True).nodes["mine"].kind.__name__ == "MyNode"
    line = one_error_line(*check_in_process(path))
    assert "pass --allow-outside" in line
    code, out, err_text = check_in_process(path, "--allow-outside")
    assert (code, out, err_text) == (0, f"{path}: ok (2 nodes, 2 processes)\n", "")
    assert (tmp_path / "lib" / "imports.log").read_text() == "imported\n"


def test_a_node_file_is_imported_once_however_often_and_however_it_is_named(tmp_path):
    (tmp_path / "mynode.py").write_text(COUNTING)
    path = tmp_path / "graph.yaml"
    path.write_text(SOURCE + "".join(f"  - id: mine{i}\n    uses: {uses}:MyNode\n    inputs: {{frame: source/frame}}\n"
                                     for i, uses in enumerate(["mynode.py", "./mynode.py", str(tmp_path / "mynode.py"),
                                                               f"../{tmp_path.name}/mynode.py"])))
    spec = load_graph(path)
    assert len({spec.nodes[f"mine{i}"].kind for i in range(4)}) == 1
    load_graph(path)
    assert (tmp_path / "imports.log").read_text() == "imported\n"


def test_no_node_file_runs_while_another_node_has_a_mistake(tmp_path):
    (tmp_path / "mynode.py").write_text(COUNTING)
    path = tmp_path / "graph.yaml"
    path.write_text(SOURCE + "  - id: mine\n    uses: mynode.py:MyNode\n    inputs: {frame: source/frame}\n"
                    "  - id: sink\n    uses: null\n    inputs: {frame: mine/frame}\n    replicas: 0\n")
    with pytest.raises(SpecError, match="replicas must be an integer"):
        load_graph(path)
    assert not (tmp_path / "imports.log").exists()


# --- through the real CLI -----------------------------------------------------------------------

CLI_CASES = ["yaml_syntax_error", "unknown_kind", "unknown_param", "input_from_missing_node", "cycle",
             "replicas_on_stateful_null"]


@pytest.mark.parametrize("key", CLI_CASES)
def test_check_command_rejects_with_one_line_on_stderr_and_exit_2(tmp_path, key):
    case = CASES[key]
    path = write_case(tmp_path, case)
    message = assert_one_line_error(run_cli("check", path))
    assert f"error: {path}:{expected_line(case)}: " in message
    if case.node:
        assert f"node '{case.node}'" in message
    if case.field:
        assert f"field '{case.field}'" in message
    for word in case.words:
        assert word in message


def test_check_command_rejects_a_bad_set_value_with_exit_2(tmp_path):
    path = write_case(tmp_path, CASES["set_bad_value"])
    message = assert_one_line_error(run_cli("check", path, "--set", "source.width=big"))
    assert message == "error: --set: node 'source' field 'params.width': expected int, got str 'big'"


def test_run_command_rejects_a_malformed_graph_before_starting_anything(tmp_path):
    path = write_case(tmp_path, CASES["unknown_kind"])
    message = assert_one_line_error(run_cli(path, "--max-frames", "1"))
    assert message.startswith(f"error: {path}:7: node 'hop' field 'uses': unknown kind 'pasthrough'")


def test_a_node_whose_inputs_are_all_optional_still_needs_one_wired(tmp_path):
    path = tmp_path / "graph.yaml"
    path.write_text("name: g\nnodes:\n  - id: source\n    uses: synthetic\n  - id: records\n    uses: jsonl\n")
    with pytest.raises(SpecError) as info:
        load_graph(path)
    err = info.value
    assert (err.line, err.node, err.field) == (5, "records", "inputs")
    assert err.detail.startswith("no input is wired; kind 'jsonl' takes: ")


def test_cpus_must_name_cpus_of_this_machine(tmp_path):
    import os

    path = tmp_path / "graph.yaml"
    path.write_text(f"name: g\nnodes:\n  - id: source\n    uses: synthetic\n    cpus: [{os.cpu_count()}]\n")
    with pytest.raises(SpecError) as info:
        load_graph(path)
    assert (info.value.line, info.value.node, info.value.field) == (5, "source", "cpus")
    assert f"this machine has {os.cpu_count()}" in info.value.detail
    path.write_text("name: g\nnodes:\n  - id: source\n    uses: synthetic\n    cpus: [-1]\n")
    assert load_graph(path).nodes["source"].cpus == [os.cpu_count() - 1]


@pytest.mark.parametrize("lines, detail", [
    ("    cpus_shared: true\n", "cpus_shared needs `cpus:` (the CPUs it would share)"),
    ("    cpus: [0]\n    cpus_shared: yes please\n", "cpus_shared must be true or false, got 'yes please'"),
])
def test_cpus_shared_needs_cpus_and_a_boolean(tmp_path, lines, detail):
    path = tmp_path / "graph.yaml"
    path.write_text("name: g\nnodes:\n  - id: source\n    uses: synthetic\n" + lines)
    with pytest.raises(SpecError) as info:
        load_graph(path)
    assert (info.value.node, info.value.field, info.value.detail) == ("source", "cpus_shared", detail)


def test_every_shipped_graph_passes_check(tmp_path):
    """The graphs in graphs/ are examples users copy: each must validate as shipped."""
    import subprocess
    import sys

    from conftest import ROOT

    keys = tmp_path / "keys"
    subprocess.run([sys.executable, str(ROOT / "runner.py"), "keys", str(keys)], check=True, capture_output=True, cwd=ROOT)
    graphs = sorted((ROOT / "graphs").glob("*.yaml"))
    assert len(graphs) >= 10
    for graph in graphs:
        extra = ["--keys", str(keys)] if "security:" in graph.read_text() else []
        done = subprocess.run([sys.executable, str(ROOT / "runner.py"), "check", str(graph), *extra],
                              capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, (graph.name, done.stderr)


def test_a_lone_dash_on_the_command_line_is_the_string_stdout_not_a_yaml_list():
    from posegraph.spec import parse_value

    assert parse_value("-") == "-" and parse_value("- 1") == [1] and parse_value("5") == 5
