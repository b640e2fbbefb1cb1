"""The command line itself: each command's own --help, --version, the program's name as
it was called, installed commands, verbosity flags, unknown commands and a reader that
goes away. Real subprocesses (`runner.py`, `.venv/bin/posegraph`, `python -m posegraph`)."""
from __future__ import annotations

import signal
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import ROOT

POSEGRAPH = Path(sys.executable).with_name("posegraph")  # the installed console script beside this Python


def cli(*args, via: str = "runner.py") -> subprocess.CompletedProcess:
    command = {"runner.py": [sys.executable, "runner.py"], "posegraph": [str(POSEGRAPH)],
               "-m": [sys.executable, "-m", "posegraph"]}[via]
    return subprocess.run([*command, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_check_help_prints_checks_own_usage():
    result = cli("check", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: runner.py check ")
    assert "GRAPH.yaml" in result.stdout and "--set" in result.stdout
    assert "--max-frames" not in result.stdout and "--no-live" not in result.stdout  # those are run's


def test_kinds_help_is_kinds_usage_not_an_unknown_kind():
    result = cli("kinds", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: runner.py kinds ")
    assert "unknown kind" not in result.stdout + result.stderr


def test_run_help_tells_of_graphs_and_of_sources_and_a_source_has_its_own_help():
    result = cli("run", "--help")
    assert result.returncode == 0, result.stderr
    assert "runner.py run GRAPH.yaml" in result.stdout and "runner.py run SOURCE" in result.stdout
    assert "--max-frames" in result.stdout
    source = cli("run", "data/google_pose_reference/pose_squats.mp4", "--help")
    assert source.returncode == 0, source.stderr
    assert source.stdout.startswith("usage: runner.py run ") and "--classifier" in source.stdout


@pytest.mark.parametrize("via, prog", [("posegraph", "posegraph"), ("-m", "python -m posegraph"), ("runner.py", "runner.py")])
def test_help_names_the_program_as_it_was_called_and_lists_every_command(via, prog):
    result = cli("--help", via=via)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {prog} ")
    if via != "runner.py":
        assert "runner.py" not in result.stdout
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ") and line.split()}
    installed = {ep.name for ep in metadata.entry_points(group="posegraph.commands")} - {"run-source"}
    assert {"run", "check", "draw", "kinds"} | installed <= listed, listed


def test_version_is_the_installed_packages():
    result = cli("--version", via="posegraph")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"posegraph {metadata.version('posegraph')}\n"


def test_an_installed_command_keeps_its_own_arguments_and_help():
    result = cli("keys", "--help", via="posegraph")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "keys" in result.stdout.splitlines()[0]


def test_verbosity_flags_go_before_or_after_the_command():
    for args in (("-q", "check", "graphs/synthetic.yaml"), ("check", "graphs/synthetic.yaml", "-v")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "graphs/synthetic.yaml: ok (4 nodes, 4 processes)\n"
    both = cli("-q", "-v", "check", "graphs/synthetic.yaml")
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_an_unknown_command_or_none_is_exit_2_with_a_hint():
    result = cli("chek", "graphs/synthetic.yaml")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown command 'chek' (did you mean 'check'?)")
    assert len(result.stderr.splitlines()) == 1
    nothing = cli()
    assert nothing.returncode == 2 and "usage: runner.py" in nothing.stderr and "Traceback" not in nothing.stderr


def test_a_graph_file_alone_still_runs_it():
    result = cli("graphs/synthetic.yaml", "--max-frames", "5", "--no-live", "--set", "source.width=64", "--set",
                 "source.height=48")
    assert result.returncode == 0, result.stderr
    assert "synthetic" in result.stderr and "Traceback" not in result.stderr


def test_kinds_into_a_closed_pipe_exits_quietly():
    """`posegraph kinds | head -3`: the reader goes away; no traceback, and the exit code
    of a program killed by SIGPIPE. (Here the reader is gone before the first write, so
    that the write surely fails; through the shell, whether `head` leaves before the last
    write is a matter of timing, and either way nothing may be said.)"""
    proc = subprocess.Popen([str(POSEGRAPH), "kinds"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert stderr == "", stderr
    assert code == 128 + signal.SIGPIPE
    shell = subprocess.run(f"set -o pipefail; '{POSEGRAPH}' kinds pose | head -3", shell=True, executable="/bin/bash",
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert len(shell.stdout.splitlines()) == 3 and shell.stderr == "", shell.stderr
