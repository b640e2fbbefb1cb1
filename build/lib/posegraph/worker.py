"""Entry point of one node process: `python -m posegraph.worker CONFIG.json INCARNATION`.

A fresh interpreter per node keeps heavy libraries (MediaPipe, TensorFlow) out of every
process that does not need them, and dies with the runner so nothing is left behind.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

from .config import InstanceConfig


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the runner goes, however it goes."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent_pid:  # the runner died before prctl took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle
    for stream in (sys.stdout, sys.stderr):  # pipes the runner reads (posegraph.logs.WorkerOutput): each line as it is said
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    config_path, incarnation = argv[0], int(argv[1])
    config = InstanceConfig.load(config_path)
    _die_with_parent(config.runner_pid)
    if config.cpus:
        os.sched_setaffinity(0, config.cpus)  # the graph placed this node on these CPUs
    from . import logs
    from .kinds import resolve_kind
    from .runtime import NodeProcess, install_signal_handlers

    logs.setup()
    node_class = resolve_kind(config.uses, Path(config.base_dir))
    shell = NodeProcess(config, incarnation, node_class)
    install_signal_handlers(shell)
    profile_dir = os.environ.get("POSEGRAPH_PROFILE")  # developer aid: cProfile each node process
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        code = profiler.runcall(shell.run)
        profiler.dump_stats(os.path.join(profile_dir, f"{config.name}.{incarnation}.prof"))
        return code
    return shell.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
