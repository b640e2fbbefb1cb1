"""Running a graph on a Ray cluster (`posegraph run GRAPH --cluster ray://HOST:PORT`).

Ray places and starts; it is not the data path. The driver groups the graph's nodes into
actor groups (posegraph.cluster.groups: `colocate:` and `resources:`), asks Ray for one
actor per group with the group's resources, and each actor reports where it landed. The
driver then builds the inventory of the static multi-machine mode in memory (group ->
the actor's address), makes CURVE keys for this run alone and hands them to the actors
through Ray, and every actor runs its group as `--machine GROUP` runs a machine
(docs/machines.md). Frames go over PoseGraph's own ZeroMQ links: ipc/shm inside a group,
CURVE tcp between groups; restarts and SYNC are the engine's.

Only this package imports Ray, and only when a run asks for --cluster.
"""
from __future__ import annotations


def run_on_cluster(spec, args) -> int:
    from .driver import run

    return run(spec, args)
