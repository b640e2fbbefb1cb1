"""The process shell of a node: sets up, owns the loop, and calls the node's code.

One shell runs in each node process. It builds the two halves of the data path (Inputs:
receive, reorder, join; Outputs: links, credit, resend, slots), opens the node, then runs
one of two loops: a source's (capture only when the frame can go out at once) or a
consumer's (fire the next ready key whose stream has credit downstream). It reports to
the supervisor over the control channel (ready, metrics once a second, error, done) and
hears `go` and the live table back. Node code sees only `ctx` and its own state.
"""
from __future__ import annotations

import os
import signal
import time
import traceback

import zmq

from .. import control, wire
from ..config import InstanceConfig
from ..context import Context
from ..keyed import KeyedState
from ..metrics import Meter
from ..node import EndOfStream
from ..shm import PoolReader
from .inputs import Inputs
from .checkpoints import Checkpoints
from .links import InLink, OutLink
from .marks import StreamMarks
from .outputs import Outputs
from .slots import Slots
from .sockets import Sockets

METRICS_PERIOD = 1.0
POLL_MS = 100


class StopNow(Exception):
    """The runner asked this node to stop without draining."""


class NodeProcess:
    def __init__(self, config: InstanceConfig, incarnation: int, node_class: type):
        self.config = config
        self.inc = incarnation
        self.name = config.name
        # seq-routed replicas see every replicas-th seq of a stream; stream-sharded ones see all of theirs
        self.stride = 1 if config.route == "stream" else config.replicas
        self.node = node_class(dict(config.params))
        self.keyed = KeyedState(self.node)
        self.ctx = Context(config.node, self, replica=config.replica, replicas=config.replicas, stream=config.stream,
                           stream_names=config.stream_names, wired_inputs=config.inputs, graph_file=config.graph)
        self.meter = Meter()
        self.marks = StreamMarks(config.state_file)
        self.checkpoints = Checkpoints(config.state_file, self.keyed, self.ctx.log)
        self.reader = PoolReader(config.run_id)
        self.stop_requested = False
        self.go = False                 # the supervisor said every node is open
        self.progress = None            # (done, total) of a finite source
        self.graph_table: dict = {}     # the supervisor's live table, for ctx.graph_metrics()
        self.next_metrics = 0.0
        self.sockets: Sockets | None = None
        self.control: control.ControlClient | None = None
        self.inbox = self.back = None
        self.inputs: Inputs | None = None
        self.outputs: Outputs | None = None
        self.producer_backs: list = []

    # ----- services for ctx (posegraph.context.Services) ------------------------------------------
    def alloc(self, port: str, name: str, shape: tuple, dtype):
        return self.outputs.alloc(port, name, shape, dtype)

    def set_progress(self, done: int, total: int | None) -> None:
        self.progress = (done, total)

    def graph_metrics(self) -> dict:
        return self.graph_table

    # ----- set-up ------------------------------------------------------------------------------------
    def _setup(self) -> None:
        """Sockets, and the input and output halves around them."""
        cfg = self.config
        identity = (self.name, self.inc, cfg.replica)
        self.sockets = sockets = Sockets(cfg.security, any(str(a or "").startswith("tcp://") for a in (cfg.inbox, cfg.back)))
        self.control = control.ControlClient(sockets.zctx, cfg.control, cfg.node, cfg.replica, self.inc)
        self.inbox = sockets.make(zmq.PULL, cfg.inbox, bind=True) if cfg.inbox else None
        self.back = sockets.make(zmq.PULL, cfg.back, bind=True) if cfg.back else None
        self.outputs = Outputs(identity, self._out_links(), self.back,
                               Slots(cfg.run_id, self.name, self.inc, cfg.pool_slots, cfg.max_pool_bytes, self._pump),
                               self.meter, self._pump)
        self.inputs = Inputs(identity, self._in_links(), cfg.streams, self.stride, self.marks, self.reader, self.meter,
                             on_skipped=self.outputs.note_done_below)
        self.outputs.on_released = self._released

    def _in_links(self) -> dict[int, InLink]:
        """One InLink per input link; a back socket per producer replica, shared by links."""
        backs: dict[str, object] = {}
        links = {}
        for specs in self.config.inputs.values():
            for spec in specs:
                socks = []
                for r, address in enumerate(spec.producers):
                    if address not in backs:
                        remote = spec.machine != self.config.machine
                        backs[address] = self.sockets.make(zmq.PUSH, address, bind=False, server_key=spec.server_key,
                                                           peer=f"{spec.machine}: {spec.producer}.{r}" if remote else None)
                    socks.append(backs[address])
                links[spec.link] = InLink(spec, socks)
        self.producer_backs = list(backs.values())
        return links

    def _out_links(self) -> dict[str, list[OutLink]]:
        """One OutLink per output link; a socket per consumer inbox, shared by links."""
        inboxes: dict[str, object] = {}
        by_port: dict[str, list[OutLink]] = {}
        for port, specs in self.config.outputs.items():
            by_port[port] = []
            for spec in specs:
                if spec.inbox not in inboxes:
                    remote = spec.machine != self.config.machine
                    inboxes[spec.inbox] = self.sockets.make(zmq.PUSH, spec.inbox, bind=False, server_key=spec.server_key,
                                                            peer=f"{spec.machine}: {spec.consumer}" if remote else None)
                by_port[port].append(OutLink(spec, inboxes[spec.inbox]))
        return by_port

    # ----- the supervisor ------------------------------------------------------------------------------
    def _report(self, kind: str, **fields) -> None:
        if self.control is not None:
            self.control.report(kind, **fields)

    def _tick(self, force: bool = False) -> None:
        """Once a second: report metrics, and take what the supervisor said (go, the live table)."""
        now = time.monotonic()
        if not force and now < self.next_metrics:
            return
        self.next_metrics = now + METRICS_PERIOD
        self._hear_supervisor()
        self._report(control.METRICS, counters=self.ctx.counters, progress=self.progress,
                     peers=self.sockets.peer_states(), status=self.ctx.status_text, **self.meter.report())

    def _hear_supervisor(self) -> None:
        for message in self.control.receive():
            if message.get("t") == control.GO:
                self.go = True
            elif message.get("t") == control.GRAPH and isinstance(message.get("table"), dict):
                self.graph_table = message["table"]
            elif message.get("t") == control.MOVE and isinstance(message.get("old"), str) and isinstance(message.get("new"), str):
                if self.sockets.move(message["old"], message["new"]) and isinstance(message.get("machine"), str):
                    self.inputs.moved(message["machine"])
                    self.outputs.moved(message["machine"])

    def _pump(self, timeout: float) -> None:
        """Serve the back channel (and the supervisor) for up to `timeout` seconds."""
        if self.stop_requested and not self.config.is_source:
            raise StopNow
        self.inputs.acks.flush()
        if self.back is not None and self.back.poll(int(timeout * 1000)):
            self.outputs.drain_back()
        elif self.back is None and timeout:
            time.sleep(timeout)
        self._tick()

    # ----- running ----------------------------------------------------------------------------------------
    def run(self) -> int:
        """Set up, open, run the loop, close; the process's exit code."""
        try:
            self._setup()
        except zmq.ZMQError as exc:  # e.g. the port is taken: say which, do not crash-loop
            self._report(control.ERROR, phase="open", exc="NodeOpenError", field="port", msg=f"cannot set up its sockets: {exc}")
            self._teardown()
            return 3
        if not self._open():
            self._teardown()
            return 3
        self._restore_state()
        code = self._run_opened()
        self._tick(force=True)
        try:
            self.keyed.close()
            self.node.close()
        except Exception:
            traceback.print_exc()
        self._teardown()
        return code

    def _open(self) -> bool:
        try:
            self.node.open(self.ctx)
            return True
        except Exception as exc:
            try:
                self.node.close()  # the contract: close is called once, also after a failed open
            except Exception:
                pass
            self._report(control.ERROR, phase="open", msg=str(exc) or type(exc).__name__, field=getattr(exc, "field", None),
                         exc=type(exc).__name__)
            return False

    def _restore_state(self) -> None:
        """A restarted instance takes back the keyed state an earlier one kept (checkpoints)."""
        for stream in self.config.streams:
            resume = self.checkpoints.restore(stream)
            if resume is not None:
                self.marks.advance(stream, resume)
                self.ctx.log(f"restarted with its state of stream {stream} as it was before seq {resume}")

    def _run_opened(self) -> int:
        try:
            self.outputs.announce()
            hints = self.inputs.hints()
            for sock in self.producer_backs:
                sock.send(wire.encode_hello(self.name, self.inc, self.config.replica, hints))
            self._report(control.READY)
            if self.config.is_source:
                self._run_source()
            else:
                self._run_consumer()
            self._finish()
            self._report(control.DONE)
            return 0
        except StopNow:
            return 0
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" ({os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
            self._report(control.ERROR, phase="process", msg=f"{type(exc).__name__}: {exc}{where}")
            traceback.print_exc()
            return 1

    def _process(self, inputs: dict, stream: int, seq: int, t: int) -> dict:
        """The node's process() for one packet (once per key for a keyed kind), timed."""
        ctx = self.ctx
        ctx.stream, ctx.seq, ctx.capture_ns = stream, seq, t
        self.meter.starting()
        start = time.perf_counter()
        results = self.keyed.call(inputs, ctx)
        self.meter.processed(stream, time.perf_counter() - start)
        if results.keys() - self.outputs.by_port.keys():
            unknown = sorted(results.keys() - self.outputs.by_port.keys())
            raise ValueError(f"process returned undeclared output port(s) {unknown}; OUTPUTS declares {sorted(self.outputs.by_port)}")
        return results

    def _start_seq(self, stream: int) -> int:
        """Where a source starts: the first seq any consumer still lacks (their hellos say,
        from what they have or, restarted too, from their own marks; the lowest, so nothing
        is skipped: what they already have comes again and is dropped as a duplicate). What
        the source itself emitted last may have died with it in its socket, so its own
        marks count only when nobody consumes its stream."""
        links = self.outputs.links.values()
        if not links:
            return self.marks[stream]
        return min(link.resume_hint.get(stream, 0) for link in links)

    def _run_source(self) -> None:
        stream, limit, outputs = self.config.stream, self.config.max_frames, self.outputs
        self.meter.count_sleeps()  # a source's pacing sleep is not its work: proc ms leaves it out
        while not (self.go and outputs.all_ready()) and not self.stop_requested:  # every node is open
            self._pump(0.02)
            self._hear_supervisor()
        seq = self.ctx.resume_seq = self._start_seq(stream)
        while not self.stop_requested and not (limit and seq >= limit):
            for link in outputs.links.values():  # capture only when the frame can go out at once,
                if link.carries(stream, seq):     # so its timestamp is fresh
                    outputs.wait_for_credit(link, stream)
            try:
                results = self._process({}, stream, seq, 0)
            except EndOfStream:
                outputs.slots.release_own()  # a buffer taken for a frame that never came
                break
            t = self.ctx.capture_ns or time.time_ns()
            self.meter.frames_in += 1
            outputs.emit(stream, seq, t, results, track=False, live=self.ctx.live)
            self.meter.latency(t)
            seq += 1
            self.marks[stream] = seq
            if self.back is not None:
                outputs.drain_back()
            self._tick()
        outputs.emit_eos(stream, seq)

    def _run_consumer(self) -> None:
        inputs, outputs = self.inputs, self.outputs
        poller = zmq.Poller()
        poller.register(self.inbox, zmq.POLLIN)
        if self.back is not None:
            poller.register(self.back, zmq.POLLIN)
        while not inputs.all_finished():
            if self.stop_requested:
                raise StopNow
            if not inputs.any_fireable(outputs.has_credit):  # nothing to do until a frame or an acknowledgement comes
                inputs.acks.flush()
                poller.poll(POLL_MS)
            inputs.drain(self.inbox)  # frames first: acknowledgements are off the latency path
            key = inputs.take_fireable(outputs.has_credit)
            if key is not None:
                self._fire(key)
            elif not inputs.ready:
                self._finish_streams()
            if self.back is not None:
                outputs.drain_back()
            self._tick()

    def _fire(self, key) -> None:
        """Process `key` (or pass on its drop), send the results, acknowledge its inputs."""
        taken = self.inputs.take(key)
        if taken is None:
            return  # discarded meanwhile (an earlier incarnation finished it)
        entry, dropped, t = taken
        recs = list(entry.values())
        results = {}
        if not dropped:
            forwardable = self.outputs.slots.forwardable
            for rec in recs:
                for array, ref in rec.refs:
                    forwardable[id(array)] = (array, ref)
            results = self._process(Inputs.values(entry), key[0], key[1], t)
            self.checkpoints.take(*key)
            stale = self.inputs.stale_reads(recs)
            if stale:
                self.ctx.count("stale_slot_reads", stale)
        live = any(rec.flags & wire.FLAG_LIVE for rec in recs)  # what comes of a live frame is live too
        self._send_results(key, recs, results, wire.FLAG_DROPPED if dropped else 0, t, live)
        self.inputs.fired(key)

    def _send_results(self, key, recs, results: dict, flags: int, t: int, live: bool = False) -> None:
        outputs = self.outputs
        if outputs.links:
            outputs.emit(key[0], key[1], t, results, flags, live=live)
        outputs.slots.forwardable.clear()
        if t and not flags:
            self.meter.latency(t)
        self.inputs.consumed(key, recs, results_pending=bool(outputs.links))
        if outputs.links:
            outputs.settle(key)  # drop this call's hold: inputs go when every result is released
        else:
            self._done_below(key[0], key[1] + self.stride)  # a sink: done once processed

    def _released(self, key) -> None:
        """Everything sent for `key` was released downstream: release its inputs, and move
        the stream's mark to the first seq not finished here. Only a released seq is done:
        what this node sent last may die with it in its socket, and a restarted instance
        must make it again."""
        self.inputs.released(key)
        stream = key[0]
        pending = [seq for s, seq in self.outputs.pending if s == stream]
        self._done_below(stream, min(pending) if pending else max(self.inputs.next_fire.get(stream, 0), key[1] + self.stride))

    def _done_below(self, stream: int, seq: int) -> None:
        """Seqs of `stream` below `seq` are finished: keep the state as it was there, then
        move the mark (in that order, so a restart never finds a mark ahead of its state)."""
        if seq > self.marks[stream]:
            self.checkpoints.commit(stream, seq)
            self.marks.advance(stream, seq)

    def _finish_streams(self) -> None:
        for stream in self.inputs.ended_streams():
            for key in self.inputs.incomplete(stream):
                self._fire(key)
            end_seq = self.inputs.finish(stream)
            self.keyed.end_stream(stream)
            self.outputs.emit_eos(stream, end_seq)

    def _finish(self) -> None:
        """Wait until everything sent was released, so no consumer reads a dead pool."""
        self.inputs.acks.flush()
        deadline = None
        while not self.outputs.all_released():
            if self.stop_requested and self.config.is_source:
                deadline = deadline or time.monotonic() + 2.0
                if time.monotonic() > deadline:
                    return
            self._pump(0.05)

    def _teardown(self) -> None:
        if self.inputs is not None:
            self.inputs.acks.flush()
        if self.outputs is not None:
            self.outputs.close()
        self.reader.close()
        if self.control is not None:
            self.control.close()
        if self.sockets is not None:
            self.sockets.close()


def install_signal_handlers(shell: NodeProcess) -> None:
    def on_term(signum, frame):
        shell.stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle
