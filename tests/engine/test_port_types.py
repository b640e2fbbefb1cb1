"""Port types (Node.PORT_TYPES): `check` and a run warn, in one line and with exit code 0,
when a node reads a port whose producer declares a type it does not take; matching and
undeclared ports say nothing, and no bundled graph gets a warning."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

NODES = '''
from posegraph import Node


class ImageOnly(Node):
    """The README's first Brightness: it read its input as a bare image."""
    INPUTS = {"frame": "uint8 image"}
    OUTPUTS = {"frame": "uint8 image"}
    PORT_TYPES = {"in:frame": "image", "out:frame": "image"}

    def process(self, inputs, ctx):
        return {"frame": inputs["frame"]}


class FrameOnly(Node):
    INPUTS = {"frame": "frame packet"}
    PORT_TYPES = {"in:frame": "frame"}

    def process(self, inputs, ctx):
        return {}


class Both(Node):
    INPUTS = {"frame": "frame packet or image"}
    OUTPUTS = {"frame": "the same"}
    PORT_TYPES = {"in:frame": ("frame", "image"), "out:frame": "in:frame"}

    def process(self, inputs, ctx):
        return {"frame": inputs["frame"]}


class Undeclared(Node):
    INPUTS = {"frame": "anything"}
    OUTPUTS = {"frame": "anything"}

    def process(self, inputs, ctx):
        return {"frame": inputs["frame"]}


class BadKey(Node):
    INPUTS = {"frame": "anything"}
    PORT_TYPES = {"in:frames": "image"}

    def process(self, inputs, ctx):
        return {}
'''

CAPTURE = """
name: t
nodes:
  - id: camera
    uses: capture
    params: {source: data/google_pose_reference/pose_squats.mp4}
"""


def graph(tmp_path: Path, nodes: str) -> Path:
    (tmp_path / "kinds.py").write_text(NODES)
    path = tmp_path / "g.yaml"
    path.write_text(textwrap.dedent(CAPTURE).lstrip() + textwrap.indent(textwrap.dedent(nodes).lstrip(), "  "))
    return path


def check(path: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "runner.py"), "check", str(path), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_an_image_input_wired_to_a_frame_packet_is_one_warning_line_and_exit_0(tmp_path):
    path = graph(tmp_path, """
        - id: bright
          uses: kinds.py:ImageOnly
          inputs: {frame: camera/frame}
        - id: sink
          uses: null
          inputs: {frame: bright/frame}
        """)
    done = check(path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{path}: ok (3 nodes, 3 processes)\n"
    assert done.stderr == (f"warning: {path}:8: node 'bright' input 'frame' takes an image (uint8 array) but "
                           "'camera/frame' gives a frame packet {'image', 'pts_ms', 'index'}\n")


def test_a_mismatch_between_built_in_kinds_names_both_types(tmp_path):
    path = graph(tmp_path, """
        - id: pose
          uses: pose
          inputs: {frame: camera/frame}
        - id: smooth
          uses: smooth
          inputs:
            votes: pose/landmarks
        """)
    from posegraph.spec import load_graph

    spec = load_graph(path)
    assert spec.warnings == [(f"{path}:12: node 'smooth' input 'votes' takes a votes packet {{'votes', 'label', ...}} but "
                              "'pose/landmarks' gives a landmarks packet {'px', 'norm', 'world', 'layout', ...}")]


def test_a_type_passes_through_a_kind_whose_output_is_what_its_input_got(tmp_path):
    # synthetic gives a bare image; passthrough and Both give on what they got
    (tmp_path / "kinds.py").write_text(NODES)
    path = tmp_path / "g.yaml"
    path.write_text(textwrap.dedent("""
        name: t
        nodes:
          - {id: source, uses: synthetic, params: {count: 1}}
          - {id: hop, uses: passthrough, inputs: {frame: source/frame}}
          - {id: both, uses: kinds.py:Both, inputs: {frame: hop/frame}}
          - {id: strict, uses: kinds.py:FrameOnly, inputs: {frame: both/frame}}
        """).lstrip())
    from posegraph.spec import load_graph

    spec = load_graph(path)
    assert spec.warnings == [(f"{path}:6: node 'strict' input 'frame' takes a frame packet {{'image', 'pts_ms', 'index'}} "
                              "but 'both/frame' gives an image (uint8 array)")]


def test_matching_and_undeclared_ports_say_nothing(tmp_path):
    path = graph(tmp_path, """
        - id: both
          uses: kinds.py:Both
          inputs: {frame: camera/frame}
        - id: strict
          uses: kinds.py:FrameOnly
          inputs: {frame: both/frame}
        - id: loose
          uses: kinds.py:Undeclared
          inputs: {frame: camera/frame}
        - id: after
          uses: kinds.py:ImageOnly
          inputs: {frame: loose/frame}
        - id: render
          uses: render
          inputs: {frame: camera/frame}
        - id: video
          uses: video
          inputs: {frame: render/frame}
        """)
    done = check(path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_a_malformed_port_types_is_an_error_naming_the_class(tmp_path):
    path = graph(tmp_path, """
        - id: bad
          uses: kinds.py:BadKey
          inputs: {frame: camera/frame}
        """)
    done = check(path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert (f"error: {path}:7: node 'bad' field 'uses': class BadKey: PORT_TYPES key 'in:frames' must be 'in:PORT' "
            "or 'out:PORT' for one of its INPUTS") in done.stderr


def test_a_run_says_the_warning_before_it_starts_and_still_exits_0(tmp_path):
    (tmp_path / "kinds.py").write_text(NODES)
    path = tmp_path / "g.yaml"
    path.write_text(textwrap.dedent("""
        name: t
        nodes:
          - {id: source, uses: synthetic, params: {width: 64, height: 48, count: 3, live: false}}
          - {id: strict, uses: kinds.py:FrameOnly, inputs: {frame: source/frame}}
        """).lstrip())
    done = subprocess.run([sys.executable, str(ROOT / "runner.py"), str(path), "--no-live"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == (f"warning: {path}:4: node 'strict' input 'frame' takes a frame packet {{'image', 'pts_ms', 'index'}} "
                        "but 'source/frame' gives an image (uint8 array)")
    assert sum("warning:" in line for line in lines) == 1


def bundled_graphs() -> list[Path]:
    return sorted((ROOT / "graphs").glob("*.yaml"))


@pytest.mark.parametrize("path", bundled_graphs(), ids=lambda p: p.name)
def test_every_bundled_graph_checks_without_a_warning(path):
    from posegraph.spec import build_spec, load_yaml

    doc = load_yaml(path.read_text())
    doc.pop("security", None)  # spread.yaml's keys are made by `runner.py keys`; types do not depend on them
    spec = build_spec(doc, str(path), path.parent, [])
    assert spec.warnings == []


@pytest.mark.parametrize("classifier", ["dtw", "tcn", "knn", "lstm"])
def test_the_graphs_posegraph_run_builds_check_without_a_warning(classifier, tmp_path):
    from posegraph.pose.recipes import build_graph, graph_yaml

    from posegraph.spec import build_spec, load_yaml

    for people in (1, 2):
        doc = build_graph(str(ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"), classifier, people,
                          out_dir=str(tmp_path), stem="clip")
        spec = build_spec(load_yaml(graph_yaml(doc)), "<run>", ROOT, [])
        assert spec.warnings == [], (classifier, people)


@pytest.mark.parametrize("types, says", [
    ({"in:frame": ()}, "PORT_TYPES['in:frame'] must be a type name or a tuple of them"),
    ({"in:frame": {"type": "image"}}, "PORT_TYPES['in:frame'] must be a type name or a tuple of them"),
    ({"out:frame": ("frame", "image")}, "PORT_TYPES['out:frame'] must be a type name or 'in:PORT'"),
    ({"out:frame": "in:nope"}, "PORT_TYPES['out:frame'] = 'in:nope' names no input of the kind"),
    ({"frame": "image"}, "PORT_TYPES key 'frame' must be 'in:PORT' or 'out:PORT'"),
    (["in:frame"], "PORT_TYPES must be a dict"),
])
def test_malformed_port_types_are_refused_with_the_reason(types, says):
    from posegraph import Node
    from posegraph.kinds import KindError, check_declarations

    kind = type("Kind", (Node,), {"INPUTS": {"frame": ""}, "OUTPUTS": {"frame": ""}, "PORT_TYPES": types,
                                  "process": lambda self, inputs, ctx: {}})
    with pytest.raises(KindError) as refused:
        check_declarations(kind)
    assert says in str(refused.value) and str(refused.value).startswith("class Kind: ")


def test_every_built_in_kind_declares_the_types_of_all_its_ports():
    from posegraph.kinds import builtin_kinds, resolve_kind

    for name in builtin_kinds():
        kind = resolve_kind(name, ROOT)
        for port in kind.INPUTS:
            assert kind.takes(port), (name, "in", port)
        for port in kind.OUTPUTS:
            assert kind.gives(port), (name, "out", port)
