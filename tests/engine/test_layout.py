"""The house rules, checked: the engine imports no application code, and the pose library
imports no engine runtime and no node kind, so a notebook can use it alone."""
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import posegraph

APPLICATION = ("posegraph.nodes", "posegraph.pose", "posegraph.commands", "posegraph.webapp")
ENGINE_DIR = Path(posegraph.__file__).parent


def modules_loaded_by(code: str) -> list[str]:
    """The module names a fresh interpreter holds after running `code`."""
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def engine_modules() -> list[str]:
    """Every module of the engine's own folder (posegraph/ and posegraph/runtime/)."""
    names = ["posegraph"]
    for info in pkgutil.walk_packages([str(ENGINE_DIR)], prefix="posegraph."):
        if not info.name.startswith(APPLICATION) and info.name != "posegraph.__main__":
            names.append(info.name)
    return names


def test_the_engine_imports_nothing_of_the_application():
    names = engine_modules()
    assert "posegraph.runtime.process" in names and "posegraph.supervisor" in names
    loaded = modules_loaded_by("\n".join(f"import {name}" for name in names))
    application = [m for m in loaded if m.startswith(APPLICATION)]
    heavy = [m for m in loaded if m.split(".")[0] in ("cv2", "mediapipe", "tensorflow", "ai_edge_litert")]
    assert application == [] and heavy == [], (application, heavy)


def test_the_pose_library_imports_without_the_engine_runtime_or_any_node_kind():
    import posegraph.pose

    library = [info.name for info in pkgutil.walk_packages(posegraph.pose.__path__, prefix="posegraph.pose.")
               if not info.name.startswith("posegraph.pose.training")]  # training imports TensorFlow: tested apart
    assert "posegraph.pose.features" in library and "posegraph.pose.people" in library
    loaded = modules_loaded_by("\n".join(f"import {name}" for name in library))
    engine = [m for m in loaded if m.startswith(("posegraph.runtime", "posegraph.supervisor", "posegraph.spec", "posegraph.nodes"))]
    assert engine == [] and "zmq" not in loaded, engine


def test_installed_kinds_and_commands_are_found_by_entry_point():
    from posegraph import registry

    kinds, commands = registry.kinds(), registry.commands()
    assert {"capture", "pose", "embed", "knn", "smooth", "reps", "lstm", "dtw", "render", "jsonl", "video"} <= set(kinds)
    assert {"train-lstm", "extract", "serve", "keys", "dtw-templates", "train-keypoints", "label-keypoints"} <= set(commands)
    assert all(ref.startswith("posegraph.nodes.") for ref in kinds.values())
    assert all(ref.startswith("posegraph.commands.") for ref in commands.values())
