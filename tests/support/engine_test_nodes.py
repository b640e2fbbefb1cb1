"""Small user node kinds the engine tests wire into real graphs (`uses: engine_test_nodes.py:Pair`)."""
import json
import random
import time

from posegraph.nodes.synthetic import read_stamp
from posegraph import Node, NodeOpenError, Param


class Pair(Node):
    """Joins two inputs and records which frames met, to prove joins pair by (stream, seq)."""

    INPUTS = {"left": "frame", "right": "frame"}
    OUTPUTS = {"frame": "the left frame"}
    PARAMS = {"record": Param("")}
    STATEFUL = True

    def open(self, ctx):
        self.out = open(self.params["record"], "a", buffering=1)

    def process(self, inputs, ctx):
        self.out.write(json.dumps({"seq": ctx.seq, "left": read_stamp(inputs["left"]), "right": read_stamp(inputs["right"])}) + "\n")
        return {"frame": inputs["left"]}

    def close(self):
        self.out.close()


class Jitter(Node):
    """A stateless hop with a random delay per frame, so replicas finish out of order."""

    INPUTS = {"frame": "frame"}
    OUTPUTS = {"frame": "frame"}
    PARAMS = {"max_ms": Param(5.0, min=0.0)}

    def process(self, inputs, ctx):
        time.sleep(random.uniform(0, self.params["max_ms"]) / 1000.0)
        return {"frame": inputs["frame"]}


class Crash(Node):
    """Raises on every frame from `at` on: a node that cannot get past a packet."""

    INPUTS = {"frame": "frame"}
    OUTPUTS = {"frame": "frame"}
    PARAMS = {"at": Param(5, min=0)}

    def process(self, inputs, ctx):
        if ctx.seq >= self.params["at"]:
            raise RuntimeError(f"cannot handle frame {ctx.seq}")
        return {"frame": inputs["frame"]}


class NoCamera(Node):
    """A source whose device is missing, as a webcam capture would find it."""

    OUTPUTS = {"frame": "frame"}
    PARAMS = {"source": Param(7)}
    STATEFUL = True

    def open(self, ctx):
        raise NodeOpenError(f"cannot open camera {self.params['source']}", field="params.source")

    def process(self, inputs, ctx):
        raise AssertionError("never opened")


class StreamLog(Node):
    """Stateful: records which process saw which (stream, seq) and the frame's size, to
    prove stream-sharded replicas keep a stream in one process and streams apart."""

    INPUTS = {"frame": "frame"}
    OUTPUTS = {"frame": "the same frame"}
    PARAMS = {"record": Param("")}
    STATEFUL = True

    def open(self, ctx):
        import os

        self.pid = os.getpid()
        self.out = open(self.params["record"], "a", buffering=1)
        self.last_seq = {}

    def process(self, inputs, ctx):
        frame = inputs["frame"]
        in_order = ctx.seq == self.last_seq.get(ctx.stream, -1) + 1  # state per stream
        self.last_seq[ctx.stream] = ctx.seq
        self.out.write(json.dumps({"pid": self.pid, "stream": ctx.stream_name, "seq": ctx.seq, "shape": list(frame.shape),
                                   "stamp": read_stamp(frame), "in_order": in_order}) + "\n")
        return {"frame": frame}

    def close(self):
        self.out.close()
