"""PoseGraph: streaming pose and action recognition as a graph of processes over ZeroMQ.

From Python: `run(source)` yields the records of a video's graph, `run_graph(path)` runs a
graph file (posegraph.api); `posegraph.pose.estimate(image)` finds the landmarks of one
image with no graph; `Node` and `Param` write a node kind (README, "Writing a node").
"""
from .api import RunError, RunResult, run, run_graph
from .node import EndOfStream, Keys, Node, NodeOpenError, Param

__all__ = ["EndOfStream", "Keys", "Node", "NodeOpenError", "Param", "RunError", "RunResult", "run", "run_graph"]
