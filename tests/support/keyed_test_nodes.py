"""A user's keyed node, written only against the documented contract (posegraph.Node):
`KEYS` splits a packet into items by key, `new_state` makes each key's running total."""
import json

from posegraph import EndOfStream, Keys, Node, Param

CLOSED = []  # keys whose state the engine retired, in this process (for in-process tests)


class ByItem(Keys):
    """{"items": {"key": value}} -> one part per key."""

    def split(self, value):
        if value is None:
            return []
        return [(int(k), v) for k, v in value["items"].items()]

    def merge(self, parts):
        items = {str(k): v for k, v in parts if v is not None}
        return {"items": items} if items else None


class Total:
    def __init__(self):
        self.sum = 0
        self.calls = 0
        self.key = None

    def close(self):
        CLOSED.append(self.key)


class RunningTotal(Node):
    """Per key of each stream: the sum of the values seen so far, and how often it was called."""

    INPUTS = {"items": "{'items': {key: int}}"}
    OUTPUTS = {"totals": "{'items': {key: [sum, calls]}}"}
    KEYS = ByItem()
    KEY_TIMEOUT = 3

    def new_state(self):
        return Total()

    def process(self, inputs, ctx):
        total = ctx.state
        total.key = ctx.key
        total.calls += 1
        if inputs["items"] is not None:
            total.sum += inputs["items"]
        return {"totals": [total.sum, total.calls]}


class Items(Node):
    """A source of item packets: `plan` lists, per frame, {key: value} (an empty map: nobody)."""

    OUTPUTS = {"items": "{'items': {key: int}}"}
    PARAMS = {"plan": Param([], type=list)}

    def open(self, ctx):
        self.frames = list(self.params["plan"])

    def process(self, inputs, ctx):
        if ctx.seq >= len(self.frames):
            raise EndOfStream
        items = self.frames[ctx.seq]
        return {"items": {"items": {str(k): v for k, v in items.items()}} if items else None}


class Record(Node):
    """Writes each packet's totals as one JSON line."""

    INPUTS = {"totals": "totals"}
    PARAMS = {"path": Param("")}

    def open(self, ctx):
        self.file = open(self.params["path"], "w")

    def process(self, inputs, ctx):
        totals = inputs["totals"]
        self.file.write(json.dumps({"seq": ctx.seq, "stream": ctx.stream_name, "items": totals and totals["items"]}) + "\n")
        self.file.flush()
        return {}

    def close(self):
        if hasattr(self, "file"):
            self.file.close()
