"""`null`: a sink that counts what arrives and checks synthetic frames' sequence stamps.

With `record` it appends one JSON line per packet (stream, seq, empty), which is how tests
prove ordering and loss without reaching into the engine; a restarted null sink first cuts
a line its killed predecessor left half-written.
"""
import json
import os
import time

from posegraph.nodes.synthetic import read_stamp
from posegraph.pose.records import last_whole_record

from posegraph import Node, Param


class Null(Node):
    INPUTS = {"frame": "any packet"}
    PORT_TYPES = {"in:frame": "any"}
    PARAMS = {
        "record": Param("", help="file to append one JSON line per packet to; empty for none"),
        "delay_ms": Param(0.0, min=0.0, max=60000.0, help="simulated work per frame, for tests"),
    }
    STATEFUL = True

    def open(self, ctx):
        path = self.params["record"]
        if path and os.path.exists(path):
            last_whole_record(path)
        self.record = open(path, "a", buffering=1) if path else None

    def process(self, inputs, ctx):
        frame = inputs["frame"]
        if self.params["delay_ms"]:
            time.sleep(self.params["delay_ms"] / 1000.0)
        stamp = read_stamp(frame)
        stamp_ok = None if stamp is None else stamp == ctx.seq
        if stamp_ok is False:
            ctx.count("stamp_mismatch")
        if self.record:
            self.record.write(json.dumps({"stream": ctx.stream, "seq": ctx.seq, "empty": frame is None, "stamp_ok": stamp_ok}) + "\n")
        return None

    def close(self):
        if self.record:
            self.record.close()
