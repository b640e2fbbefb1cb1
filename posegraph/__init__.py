"""PoseGraph: streaming pose and action recognition as a graph of processes over ZeroMQ."""
from .node import EndOfStream, Keys, Node, NodeOpenError, Param

__all__ = ["EndOfStream", "Keys", "Node", "NodeOpenError", "Param"]
