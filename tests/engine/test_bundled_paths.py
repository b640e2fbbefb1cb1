"""Bundled graphs, models and data are found from any folder: a graph path that is not
here is the package's; a relative path param is looked for in the current directory, the
graph file's folder, then the package, and a missing one is named with every place tried."""
import subprocess
import sys

import pytest

from conftest import ROOT


def test_a_bundled_graph_checks_and_runs_from_another_folder(tmp_path):
    checked = subprocess.run([sys.executable, str(ROOT / "runner.py"), "check", "graphs/demo.yaml"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0 and "ok (9 nodes" in checked.stdout, checked.stderr
    ran = subprocess.run([sys.executable, str(ROOT / "runner.py"), "graphs/video_dtw.yaml", "--no-live", "--max-frames", "12",
                          "--set", "records.path=r.jsonl", "--set", "video.path=v.mp4"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=240)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 12  # the bundled clip, models and reps model were found


def test_a_missing_relative_graph_names_the_package_copy_it_also_looked_for(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "runner.py"), "check", "graphs/nowhere.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == f"error: graphs/nowhere.yaml: graph file not found (nor in the package: {ROOT / 'graphs' / 'nowhere.yaml'})\n"


def test_a_path_param_is_looked_for_here_then_beside_the_graph_then_in_the_package(tmp_path, monkeypatch):
    from posegraph.pose.paths import PROJECT_ROOT, find_path

    here, beside = tmp_path / "here", tmp_path / "graphs"
    here.mkdir(), beside.mkdir()
    graph = beside / "g.yaml"
    (beside / "mine.npz").write_bytes(b"x")
    monkeypatch.chdir(here)
    assert find_path("mine.npz", str(graph)) == beside / "mine.npz"
    (here / "mine.npz").write_bytes(b"y")
    assert find_path("mine.npz", str(graph)) == here / "mine.npz"
    assert find_path("models/dtw_exercises.npz", str(graph)) == PROJECT_ROOT / "models" / "dtw_exercises.npz"
    with pytest.raises(FileNotFoundError) as missing:
        find_path("models/none.npz", str(graph))
    assert str(missing.value) == (f"no such file: 'models/none.npz' (looked in {here / 'models/none.npz'}, "
                                  f"{beside / 'models/none.npz'}, {PROJECT_ROOT / 'models/none.npz'})")


def test_setup_cfg_packages_every_python_folder_so_a_wheel_holds_the_whole_engine():
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    options = config["options"]
    mapped = dict(line.split(" = ") for line in options["package_dir"].strip().splitlines())
    listed = set(options["packages"].split())
    folders = {}
    for package, folder in mapped.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            folders[".".join((package, *relative))] = init.parent
    missing = sorted(set(folders) - listed)
    assert not missing, f"setup.cfg [options] packages lacks {missing}: a wheel would not hold them"
    data = config["options.package_data"]
    assert {"posegraph.models", "posegraph.graphs", "posegraph.data"} <= set(data) <= listed
