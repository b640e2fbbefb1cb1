"""`zmq`: every frame's record published live on a ZeroMQ socket, for your own program.

The record is the one the `jsonl` sink writes (posegraph.pose.records.frame_record; every
field in docs/records.md), sent as one message of JSON text on an XPUB socket bound to
`address` (posegraph.pose.publish.Publisher); any SUB socket reads it. When a stream
ends, one more message says so: {"stream", "source", "end": true, "records": how many
frame records of that stream this process published}, so a subscriber knows when to stop.
Messages begin with `{"stream":ID,`, so a SUB socket subscribed to that prefix gets one
stream only.

Publish-subscribe loses what is sent before a subscriber has joined ("slow joiner"). With
`wait_for: N` the sink, at open, waits for N subscriptions before the graph starts (the
sources begin only once every node has opened), up to `wait_s` seconds, then stops the
graph with one line naming the node and `params.wait_for`; every record then reaches
them. With `wait_for: 0` (the default) the graph does not wait: records sent while
nobody listens are counted as `unheard`, not lost. A subscriber whose queue (`hwm`
messages) stays full for `send_timeout_ms` makes that record go to nobody: it is counted
as `lost` (the run then ends with a warning and exit code 1, as for any sink).

`curve: KEYS_DIR` (keys from `runner.py keys KEYS_DIR`; a path relative to the working
directory) makes the socket a CURVE server with the shared `graph` key pair: encrypted,
and only subscribers whose public key is in KEYS_DIR/public get in; they need the server's
public key, KEYS_DIR/public/graph.key. Node code does not see the graph's own
`security:`, so the sink takes the folder as its own param (give it the same one).

A sink restarted mid-stream binds again and goes on at the first record not yet
finished; a subscriber reconnects by itself. Records its predecessor published just
before it died may come twice (tell them by `stream` and `seq`), and ones still queued in
the dead process are gone.
"""
from __future__ import annotations

from posegraph import Node, NodeOpenError, Param
from posegraph.pose.publish import DEFAULT_ADDRESS, PublishError, address_problem
from posegraph.pose.records import frame_record
from posegraph.nodes.sinks import RECORD_INPUTS, RECORD_PORT_TYPES


class StreamEnd:
    """A stream's keyed state: how many records went out; its close (the stream ended, or
    the node closes) publishes the end-of-stream message. `publisher` is the node's own,
    so a checkpoint refers to it by name and the state survives a restart."""

    def __init__(self, publisher, stream: int, source: str):
        self.publisher = publisher
        self.stream = stream
        self.source = source
        self.records = 0

    def close(self) -> None:
        if self.publisher is not None and self.publisher.sock is not None:
            self.publisher.send({"stream": self.stream, "source": self.source, "end": True, "records": self.records})


class Publish(Node):
    """Publishes each frame's JSON record (the `jsonl` one) live on a ZeroMQ socket.

    An XPUB socket any SUB socket reads; one {"end": true} message when a stream ends;
    `wait_for` subscribers before the graph starts (module doc)."""

    INPUTS = RECORD_INPUTS
    OPTIONAL_INPUTS = frozenset(INPUTS)
    PORT_TYPES = RECORD_PORT_TYPES
    PARAMS = {
        "address": Param(DEFAULT_ADDRESS, check=address_problem,
                         help="where to bind the publishing socket: tcp://HOST:PORT or ipc://PATH"),
        "wait_for": Param(0, min=0, max=1000, help="subscriptions to wait for at open before the graph starts "
                                                    "(0: do not wait; records sent while nobody listens are missed)"),
        "wait_s": Param(30.0, min=0.0, max=86400.0, help="how long to wait for them before stopping the graph"),
        "hwm": Param(100_000, min=1, max=10_000_000, help="records queued per subscriber before a send waits"),
        "send_timeout_ms": Param(1000, min=0, max=600_000, help="how long a send waits for a full subscriber "
                                                                "before the record counts as lost"),
        "curve": Param("", help="CURVE keys folder (runner.py keys DIR): encrypt, and let in only subscribers "
                                "whose public key is in DIR/public; empty: plain"),
    }
    STATEFUL = True

    def open(self, ctx):
        from posegraph.pose.publish import Publisher

        params = self.params
        curve = self._curve() if params["curve"] else None
        try:
            self.publisher = Publisher(params["address"], params["hwm"], params["send_timeout_ms"], curve=curve)
        except PublishError as exc:
            raise NodeOpenError(str(exc), field=f"params.{exc.param}") from None
        wanted = params["wait_for"]
        if wanted:
            ctx.log(f"waiting for {wanted} subscriber(s) on {params['address']} (up to {params['wait_s']:g} s)")
            if not self.publisher.wait_for(wanted, params["wait_s"]):
                heard = self.publisher.subscriptions
                self.publisher.close(linger_ms=0)
                raise NodeOpenError(f"{heard} of {wanted} subscriber(s) connected to {params['address']} within "
                                    f"{params['wait_s']:g} s (params.wait_s)", field="params.wait_for")
            ctx.log(f"{self.publisher.subscriptions} subscriber(s) on {params['address']}")

    def _curve(self) -> dict:
        from posegraph.security import Keys, KeysError

        try:
            keys = Keys(self.params["curve"])
            keys.check_machine(None)
        except KeysError as exc:
            raise NodeOpenError(str(exc), field="params.curve") from None
        return keys.worker_config(None)

    def new_state(self):
        return StreamEnd(getattr(self, "publisher", None), 0, "")

    def process(self, inputs, ctx):
        held = ctx.state
        held.stream, held.source = ctx.stream, ctx.stream_name
        outcome = self.publisher.send(frame_record(ctx.stream, ctx.stream_name, ctx.seq, inputs))
        if outcome == "dropped":
            ctx.count("lost")
            ctx.warn_once("dropped", f"a subscriber's queue stayed full for {self.params['send_timeout_ms']} ms: "
                                     "records went to nobody (counted as lost)")
            return None
        held.records += 1
        if outcome == "unheard":
            ctx.count("unheard")
        return None

    def close(self):
        publisher = getattr(self, "publisher", None)
        if publisher is not None:
            publisher.close()
