"""The one control channel between the supervisor and its node processes.

The supervisor binds a ROUTER on ipc in the run's private folder; each node process
connects a DEALER whose identity is its instance and incarnation. Both ways carry msgpack
maps, never pickles:

    node -> supervisor   ready      the node opened (its sockets are bound)
                         metrics    its counters and percentiles, once a second
                         error      why it could not open, or what its process raised
                         done       it finished its streams
    supervisor -> node   go         every node is open: sources may start
                         graph      the live table of every node, once a second (ctx.graph_metrics)
"""
from __future__ import annotations

import os

import msgpack
import zmq

READY, METRICS, ERROR, DONE = "ready", "metrics", "error", "done"
GO, GRAPH, MOVE = "go", "graph", "move"  # MOVE: a machine is now at another address


def _pack(message: dict) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def _unpack(raw: bytes) -> dict | None:
    try:
        message = msgpack.unpackb(raw, raw=False, max_bin_len=0, max_ext_len=0)
    except Exception:
        return None
    return message if isinstance(message, dict) else None


def _waiting(socket) -> list[list[bytes]]:
    """Every multipart message waiting on `socket` now."""
    got = []
    while True:
        try:
            got.append(socket.recv_multipart(zmq.NOBLOCK))
        except zmq.Again:
            return got


class ControlServer:
    """The supervisor's end: receive every process's reports, answer one, or tell all."""

    def __init__(self, zctx: zmq.Context, address: str):
        self.socket = zctx.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(address)
        self.address = address

    def poll(self, timeout_ms: int) -> bool:
        return bool(self.socket.poll(timeout_ms))

    def receive(self) -> list[tuple[bytes, dict]]:
        """Every report waiting now: [(sender identity, message)]; malformed ones are skipped."""
        got = []
        for frames in _waiting(self.socket):
            message = _unpack(frames[-1]) if len(frames) == 2 else None
            if message is not None:
                got.append((frames[0], message))
        return got

    def send(self, identity: bytes, kind: str, **fields) -> None:
        try:
            self.socket.send_multipart([identity, _pack(dict(fields, t=kind))], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # that process is gone; its next incarnation asks again

    def close(self) -> None:
        self.socket.close(0)


class ControlClient:
    """A node process's end: report to the supervisor, hear go and the live table."""

    def __init__(self, zctx: zmq.Context, address: str, node: str, replica: int, incarnation: int):
        self.socket = zctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, f"{node}.{replica}.{incarnation}".encode())
        self.socket.setsockopt(zmq.LINGER, 1000)  # the last report (done, error) must reach the supervisor
        self.socket.connect(address)
        self.origin = {"n": node, "r": replica, "i": incarnation, "pid": os.getpid()}

    def report(self, kind: str, **fields) -> None:
        try:
            self.socket.send(_pack(dict(fields, t=kind, **self.origin)), zmq.NOBLOCK)
        except zmq.Again:
            pass

    def receive(self) -> list[dict]:
        """Every message from the supervisor waiting now."""
        messages = [_unpack(frames[-1]) for frames in _waiting(self.socket)]
        return [message for message in messages if message is not None]

    def close(self) -> None:
        self.socket.close()
