"""PoseGraph: streaming pose and action recognition as a graph of processes over ZeroMQ."""
from .node import EndOfStream, Node, NodeOpenError, Param

__all__ = ["EndOfStream", "Node", "NodeOpenError", "Param"]
