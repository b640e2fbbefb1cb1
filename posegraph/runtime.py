"""The node runtime: everything between the sockets and a node kind's `process`.

One runtime runs in each node process. Top to bottom for a packet:
  receive -> check (wire) -> reorder and dedupe per (port, stream) -> queue policy ->
  join by (stream, seq) -> process -> send on every link -> acknowledge upstream.

Flow control is credit based, per (link, stream); a node fires the next ready seq of a
stream that has credit, so one stream held up downstream never stalls the others. A
consumer acknowledges a packet twice: `consumed` when
it has processed it (frees a queue credit, so `block` inputs push back on the producer)
and `released` once everything it sent for that seq has itself been released downstream.
So a frame's slot, and the packet a producer keeps for resending, live until the whole
graph below is done with that seq. That is what lets a node killed mid-stream be
restarted with nothing lost: its producers resend what it never released, and receivers
drop the duplicates by seq.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import sys
import time
import traceback

import numpy as np
import zmq

from . import wire
from .metrics import Ring, rss_mb
from .context import Context
from .keyed import KeyedState
from .node import EndOfStream
from .security import configure_socket, start_authenticator
from .shm import MIN_SHM_BYTES, PoolReader, SlotPool

METRICS_PERIOD = 1.0
SEND_HWM = 100_000
REORDER_LIMIT = 4096
LATEST_SLACK = 16
POLL_MS = 100


class StopNow(Exception):
    """The runner asked this node to stop without draining."""


class Received:
    """One checked packet from a link; keeps the zmq frames alive while views exist."""

    __slots__ = ("link", "producer", "pinc", "stream", "seq", "t", "flags", "bare", "arrays", "meta", "frames", "refs")

    def __init__(self, header, link, arrays, frames, refs):
        self.link = link
        self.producer = header["f"]
        self.pinc = header["i"]
        self.stream = header["s"]
        self.seq = header["q"]
        self.t = header["t"]
        self.flags = header["x"]
        self.bare = header["b"]
        self.meta = header.get("m")
        self.arrays = arrays
        self.frames = frames
        self.refs = refs  # [(array, ref)] for arrays that live in another node's slots


class InLink:
    def __init__(self, port: str, spec: dict, back_sockets: list):
        self.port = port
        self.id = spec["link"]
        self.policy = spec["policy"]
        self.size = spec["size"]
        self.producers = back_sockets  # one back socket per producer replica
        self.producer_by_stream = spec.get("producer_route") == "stream"
        self.shm = spec.get("shm", True)  # False: another machine's packets; slot references are refused

    def producer_of(self, stream: int, seq: int) -> int:
        """Which producer replica sends (stream, seq) on this link."""
        return (stream if self.producer_by_stream else seq) % len(self.producers)


class OutLink:
    def __init__(self, port: str, spec: dict, socket):
        self.port = port
        self.id = spec["link"]
        self.consumer = spec["consumer"]
        self.consumer_port = spec["consumer_port"]
        self.replica = spec["replica"]
        self.replicas = spec["replicas"]
        self.by_stream = spec.get("route") == "stream"  # a stateful consumer: each replica owns whole streams
        self.policy = spec["policy"]
        self.size = spec["size"]
        self.shm = spec["shm"]
        self.socket = socket
        self.ready = False
        self.consumer_inc = None
        self.resume_hint: dict[int, int] = {}  # stream -> the seq the consumer expects next (from its hello)
        self.outstanding: collections.OrderedDict = collections.OrderedDict()  # (s, q) -> Entry
        # stream -> packets sent but not yet processed. Credit is per stream: a consumer fed by
        # several producer replicas holds a stream's packets until that stream's gap fills,
        # and one shared window per link lets two streams' held packets block each other's
        # replicas in a cycle (hop.0 full of stream B waiting for hop.1, hop.1 full of
        # stream A waiting for hop.0).
        self.unconsumed: collections.Counter = collections.Counter()
        self.eos: dict[int, list] = {}  # stream -> frames of the EOS message sent

    def has_room(self, stream: int) -> bool:
        """Whether the consumer said hello and may take one more packet of `stream`. A `block`
        link holds at most `size` unprocessed packets per stream; a `latest` consumer drops
        its oldest itself, so it gets a generous slack that only keeps memory finite."""
        limit = self.size + (LATEST_SLACK if self.policy == "latest" else 0)
        return self.ready and self.unconsumed[stream] < limit

    def carries(self, stream: int, seq: int) -> bool:
        """Whether (stream, seq) goes to this link's consumer replica."""
        if self.replicas == 1:
            return True
        return (stream if self.by_stream else seq) % self.replicas == self.replica


class Entry:
    __slots__ = ("frames", "slots", "consumed")

    def __init__(self, frames, slots):
        self.frames = frames
        self.slots = slots
        self.consumed = False


class Runtime:
    def __init__(self, config: dict, incarnation: int, node_class: type):
        self.config = config
        self.inc = incarnation
        self.name = f"{config['node']}.{config['replica']}"
        self.replica = config["replica"]
        self.replicas = config["replicas"]
        # seq-routed replicas see every replicas-th seq of a stream; stream-sharded ones see all of theirs
        self.stride = 1 if config.get("route") == "stream" else self.replicas
        self.node = node_class(dict(config["params"]))
        self.keyed = KeyedState(self.node)
        self.ctx = Context(config["node"], self, replica=config["replica"], replicas=config["replicas"],
                           stream=config["stream"], stream_names={int(k): v for k, v in config.get("stream_names", {}).items()},
                           wired_inputs=config["inputs"], graph_file=config["graph"])
        self.stop_requested = False
        self.zctx = zmq.Context.instance()
        self.reader = PoolReader(config["run_id"])
        self.pools: dict[tuple[str, str], SlotPool] = {}
        self.pool_count = 0
        # keyed by id(array); the array is kept in the value so the id stays its own
        self.allocated: dict[int, tuple[np.ndarray, SlotPool, int]] = {}
        self.forwardable: dict[int, tuple[np.ndarray, list]] = {}
        self.pending: dict[tuple[int, int], list] = {}  # (s, q) -> [outstanding entries, input packets]
        self.acks: dict[object, list] = {}  # producer back socket -> acks not sent yet
        # metrics
        self.frames_in = self.frames_out = self.drops = self.bad = self.lost = 0
        self.stream_out: dict[int, int] = {}  # frames processed per stream
        self.next_out: dict[int, int] = {}    # stream -> one past the last seq emitted (for SYNC)
        self.done_below: dict[int, int] = {}  # stream -> seqs below were finished by an earlier incarnation
        self.sync: dict[int, dict] = {}       # in-link -> stream -> producer replica -> first seq not released
        self.peers: dict[str, list] = {}      # remote endpoint -> [label, state]
        self.monitors: list = []
        self.t_first = self.t_last = 0.0
        self.proc = Ring()
        self.lat = Ring()
        self.next_metrics = 0.0
        self.progress = None
        self._last_rate = (0, time.monotonic())
        self._runner_files: dict[str, tuple[dict, float]] = {}  # name -> (content, read at)
        self.state = self._open_state(config["state_file"])

    # ----- set-up -------------------------------------------------------------------
    def _open_state(self, path: str) -> np.ndarray:
        """Per-stream 'next seq' that survives a restart (a SIGKILL loses nothing here)."""
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            if os.fstat(fd).st_size < 8 * 65536:
                os.ftruncate(fd, 8 * 65536)
            import mmap

            self._state_map = mmap.mmap(fd, 8 * 65536)
        finally:
            os.close(fd)
        return np.frombuffer(self._state_map, dtype=np.int64)

    def _socket(self, kind, address: str, bind: bool, server_key: str | None = None, peer: str | None = None):
        sock = self.zctx.socket(kind)
        configure_socket(sock, address, bind, self.config.get("security"), server_key)
        # what was sent before close (EOS, the last acks) must still reach a live peer
        sock.setsockopt(zmq.LINGER, 1000 if kind == zmq.PUSH else 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 20)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        if kind == zmq.PUSH:
            sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        else:
            sock.setsockopt(zmq.RCVHWM, SEND_HWM)
        if peer is not None:  # a node on another machine: watch the connection for the live table
            self.peers[address] = [peer, "waiting"]
            monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                              | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            self.monitors.append((monitor, address))
        (sock.bind if bind else sock.connect)(address)
        return sock

    def _watch_peers(self) -> None:
        from zmq.utils.monitor import parse_monitor_message

        states = {zmq.EVENT_HANDSHAKE_SUCCEEDED: "connected", zmq.EVENT_DISCONNECTED: "disconnected",
                  zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused: key not accepted",
                  zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed", zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed"}
        for monitor, address in self.monitors:
            while True:
                try:
                    event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
                if event["event"] in states:
                    self.peers[address][1] = states[event["event"]]

    def _setup_sockets(self) -> None:
        cfg = self.config
        binds_tcp = any(str(cfg.get(k) or "").startswith("tcp://") for k in ("inbox", "back"))
        self.auth = start_authenticator(self.zctx, cfg.get("security")) if binds_tcp else None  # before any bind
        here = cfg.get("machine")
        self.control = self._socket(zmq.PUSH, cfg["control"], bind=False)
        self.inbox = self._socket(zmq.PULL, cfg["inbox"], bind=True) if cfg["inbox"] else None
        self.back = self._socket(zmq.PULL, cfg["back"], bind=True) if cfg["back"] else None
        back_sockets: dict[str, object] = {}
        self.in_links: dict[int, InLink] = {}
        for port, specs in cfg["inputs"].items():
            for spec in specs:
                socks = []
                for r, address in enumerate(spec["producers"]):
                    if address not in back_sockets:
                        remote = spec.get("machine") != here
                        back_sockets[address] = self._socket(zmq.PUSH, address, bind=False, server_key=spec.get("server_key"),
                                                             peer=f"{spec['machine']}: {spec['producer']}.{r}" if remote else None)
                    socks.append(back_sockets[address])
                self.in_links[spec["link"]] = InLink(port, spec, socks)
        self.producer_backs = list(back_sockets.values())
        self.out_links: dict[int, OutLink] = {}
        self.links_by_port: dict[str, list[OutLink]] = {}
        self.links_by_consumer: dict[str, list[OutLink]] = {}
        inboxes: dict[str, object] = {}
        for port, specs in cfg["outputs"].items():
            self.links_by_port[port] = []
            for spec in specs:
                if spec["inbox"] not in inboxes:
                    remote = spec.get("machine") != here
                    inboxes[spec["inbox"]] = self._socket(zmq.PUSH, spec["inbox"], bind=False, server_key=spec.get("server_key"),
                                                          peer=f"{spec['machine']}: {spec['consumer']}" if remote else None)
                link = OutLink(port, spec, inboxes[spec["inbox"]])
                self.out_links[link.id] = link
                self.links_by_port[port].append(link)
                self.links_by_consumer.setdefault(link.consumer, []).append(link)
        self.shm_ports = {p for p, links in self.links_by_port.items() if any(l.shm for l in links)}

    def _report(self, message: dict) -> None:
        message.update(n=self.config["node"], r=self.replica, i=self.inc, pid=os.getpid())
        try:
            self.control.send(wire.pack(message), zmq.NOBLOCK)
        except zmq.Again:
            pass

    # ----- shared memory ----------------------------------------------------------------
    def _pool_for(self, port: str, name: str, nbytes: int) -> SlotPool:
        pool = self.pools.get((port, name))
        if pool is None or not pool.fits(nbytes):
            self.pool_count += 1
            safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in (name or "v"))[:40]
            pool_name = f"pg-{self.config['run_id']}-{self.name}.{port}.{safe}.{self.inc}.{self.pool_count}"
            slot_bytes = -(-(nbytes + 64) // 4096) * 4096
            slots = max(2, min(self.config["pool_slots"], self.config["max_pool_bytes"] // slot_bytes))
            pool = SlotPool(pool_name, nbytes, slots)
            self.pools[port, name] = pool
        return pool

    def _acquire_slot(self, pool: SlotPool) -> int:
        slot = pool.acquire()
        while slot is None:  # every slot is still read downstream: wait for releases
            self._pump(0.05)
            slot = pool.acquire()
        return slot

    def alloc(self, port: str, name: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
        if port not in self.links_by_port:
            raise KeyError(f"alloc for unknown output port {port!r}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if port not in self.shm_ports or nbytes < MIN_SHM_BYTES:
            return np.empty(shape, dtype)
        pool = self._pool_for(port, name, nbytes)
        slot = self._acquire_slot(pool)
        array = pool.view(slot, shape, dtype)
        self.allocated[id(array)] = (array, pool, slot)
        return array

    # ----- back channel: hellos and acknowledgements from consumers --------------------
    def _pump(self, timeout: float) -> None:
        """Serve the back channel (and metrics) for up to `timeout` seconds."""
        if self.stop_requested and not self.config["is_source"]:
            raise StopNow
        self._flush_acks()
        if self.back is not None and self.back.poll(int(timeout * 1000)):
            self._drain_back()
        elif self.back is None and timeout:
            time.sleep(timeout)
        self._maybe_report_metrics()

    def _drain_back(self) -> None:
        back = self.back
        while back.get(zmq.EVENTS) & zmq.POLLIN:
            try:
                msg = wire.decode_back(back.recv(zmq.NOBLOCK))
            except wire.WireError:
                self.bad += 1
                continue
            if msg[0] == wire.BACK_HELLO:
                self._on_hello(msg[1], msg[2], msg[4] if len(msg) > 4 else [])
            else:
                for ack in msg[1:]:
                    self._on_ack(*ack)

    def _on_hello(self, consumer: str, incarnation: int, hints: list) -> None:
        links = self.links_by_consumer.get(consumer)
        if not links:
            self.bad += 1
            return
        for link in links:
            link.resume_hint = {stream: seq for stream, seq in hints}
            restarted = link.consumer_inc is not None and link.consumer_inc != incarnation
            link.consumer_inc = incarnation
            link.ready = True
            self._send_sync(link)
            if restarted:  # the consumer lost what it held: send it all again, in order
                link.unconsumed = collections.Counter(stream for stream, _ in link.outstanding)
                for entry in link.outstanding.values():
                    entry.consumed = False
                    self._send(link, entry.frames)
                for frames in link.eos.values():
                    self._send(link, frames)

    def _send_sync(self, link: OutLink) -> None:
        """Tell a (re)started consumer, per stream, the first seq not yet released on this
        link: everything before it is done downstream, so it must neither wait for those
        seqs nor redo them. A consumer on a restarted machine starts with no state, and
        this is how it learns where the stream stands."""
        first: dict[int, int] = {}
        for stream, seq in link.outstanding:
            if seq < first.get(stream, seq + 1):
                first[stream] = seq
        for stream, seq in self.next_out.items():
            first.setdefault(stream, seq)
        for stream, seq in self.done_below.items():
            first.setdefault(stream, seq)
        for stream, seq in first.items():
            self._send_sync_one(link, stream, seq)

    def _send_sync_one(self, link: OutLink, stream: int, seq: int) -> None:
        self._send(link, [wire.pack({"k": wire.KIND_SYNC, "e": link.id, "f": self.replica, "i": self.inc, "s": stream, "q": seq})])

    def _on_ack(self, link_id: int, stream: int, seq: int, flags: int, producer_inc: int) -> None:
        link = self.out_links.get(link_id)
        if link is None:
            self.bad += 1
            return
        if producer_inc != self.inc:
            return  # meant for an earlier incarnation of this node
        entry = link.outstanding.get((stream, seq))
        if entry is None:
            return
        if flags & wire.ACK_CONSUMED and not entry.consumed:
            entry.consumed = True
            link.unconsumed[stream] -= 1
        if flags & wire.ACK_RELEASED:
            if not entry.consumed:
                link.unconsumed[stream] -= 1
            del link.outstanding[stream, seq]
            for pool, slot in entry.slots:
                pool.release(slot)
            self._settle((stream, seq))

    def _settle(self, key) -> None:
        """One more result of `key` was released; when all are, release its inputs."""
        pending = self.pending.get(key)
        if pending is None:
            return
        pending[0] -= 1
        if pending[0] <= 0:
            del self.pending[key]
            self._ack_inputs(pending[1], wire.ACK_RELEASED)

    def _ack_inputs(self, packets, flags: int) -> None:
        """Queue acks for the producers of `packets`; _flush_acks sends them in batches."""
        for rec in packets:
            link = self.in_links[rec.link]
            if rec.producer < len(link.producers):
                self.acks.setdefault(link.producers[rec.producer], []).append([rec.link, rec.stream, rec.seq, flags, rec.pinc])

    def _flush_acks(self) -> None:
        for sock, acks in self.acks.items():
            for start in range(0, len(acks), 1000):
                try:
                    sock.send(wire.pack([wire.BACK_ACK, *acks[start:start + 1000]]), zmq.NOBLOCK)
                except zmq.Again:
                    pass  # that producer is gone; its next incarnation resends and we ack again
        self.acks.clear()

    # ----- sending --------------------------------------------------------------------------
    def _send(self, link: OutLink, frames: list) -> None:
        try:
            link.socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass  # the consumer is gone; it gets this again when it says hello

    def _wait_for_credit(self, link: OutLink, stream: int) -> None:
        """Block until the link may take one more packet of `stream` (OutLink.has_room); a
        `latest` link never drops the newest here, its consumer drops the oldest."""
        while not link.has_room(stream):
            self._pump(0.05)

    def _encode_arrays(self, arrays, for_shm: bool, slots: list):
        specs, buffers = [], []
        for name, array in arrays:
            array_ref = None
            if for_shm and array.nbytes >= MIN_SHM_BYTES:
                array_ref = self._shm_ref(name, array, slots)
            if array_ref is None:
                buffers.append(np.ascontiguousarray(array))
            specs.append([name, array.dtype.str, list(array.shape), array_ref])
        return specs, buffers

    def _shm_ref(self, name, array, slots: list):
        forwarded = self.forwardable.get(id(array))
        if forwarded is not None and forwarded[0] is array:
            return forwarded[1]  # an input frame passed on: its producer's slot, no copy
        owned = self.allocated.get(id(array))
        if owned is None or owned[0] is not array:
            pool = self._pool_for(self._current_port, name, array.nbytes)
            slot = self._acquire_slot(pool)
            np.copyto(pool.view(slot, array.shape, array.dtype), array)
            owned = (array, pool, slot)
            self.allocated[id(array)] = owned
        slots.append(owned[1:])
        return owned[1].ref(owned[2])

    def _emit(self, stream: int, seq: int, t: int, results: dict, flags_all: int = 0, pending: list | None = None) -> None:
        """Send one packet per link for (stream, seq).

        Each packet sent is counted in `pending` at once, not after the loop: waiting for
        credit on a later link serves acknowledgements, and a release that arrived for an
        earlier packet must find its count.
        """
        if stream not in self.next_out and self.done_below.get(stream):
            for link in self.out_links.values():  # joined mid-stream: consumers that said hello
                self._send_sync_one(link, stream, self.done_below[stream])  # before now must skip what is done
        for port, links in self.links_by_port.items():
            value = None if flags_all else results.get(port)
            bare, arrays, meta = wire.split_value(value)
            flags = flags_all or (wire.FLAG_EMPTY if value is None else 0)
            base = {"k": wire.KIND_DATA, "f": self.replica, "i": self.inc, "s": stream, "q": seq, "t": t,
                    "x": flags, "b": bare, "m": meta}
            self._current_port = port
            encoded = {}
            for link in links:
                if not link.carries(stream, seq):
                    continue
                self._wait_for_credit(link, stream)
                if link.shm not in encoded:
                    slots = []
                    specs, buffers = self._encode_arrays(arrays, link.shm, slots)
                    encoded[link.shm] = (specs, buffers, slots)
                specs, buffers, slots = encoded[link.shm]
                frames = [wire.pack(dict(base, e=link.id, a=specs))] + buffers
                for pool, slot in slots:
                    pool.retain(slot)
                entry = Entry(frames, slots)
                link.outstanding[stream, seq] = entry
                link.unconsumed[stream] += 1
                if pending is not None:
                    pending[0] += 1
                self._send(link, frames)
        for _, pool, slot in list(self.allocated.values()):
            pool.release(slot)  # the node's own hold; links keep theirs
        self.allocated.clear()
        self.next_out[stream] = seq + 1  # only now: a SYNC sent while waiting above must not claim this seq

    def _emit_eos(self, stream: int, end_seq: int) -> None:
        for link in self.out_links.values():
            while not link.ready:
                self._pump(0.05)
            frames = [wire.pack({"k": wire.KIND_EOS, "e": link.id, "f": self.replica, "i": self.inc, "s": stream, "q": end_seq})]
            link.eos[stream] = frames
            self._send(link, frames)

    def _announce(self) -> None:
        for link in self.out_links.values():
            self._send(link, [wire.pack({"k": wire.KIND_ANNOUNCE, "e": link.id, "f": self.replica, "i": self.inc})])

    # ----- metrics ------------------------------------------------------------------------------
    def _maybe_report_metrics(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self.next_metrics:
            return
        self.next_metrics = now + METRICS_PERIOD
        last_count, last_time = self._last_rate
        fps_now = (self.frames_out - last_count) / (now - last_time) if now > last_time else 0.0
        self._last_rate = (self.frames_out, now)
        self._report({"t": "metrics", "frames_in": self.frames_in, "frames_out": self.frames_out, "fps_now": round(fps_now, 2),
                      "drops": self.drops, "bad": self.bad, "lost": self.lost,
                      "proc": self.proc.percentiles(), "lat": self.lat.percentiles(),
                      "rss_mb": rss_mb(), "t_first": self.t_first, "t_last": self.t_last,
                      "counters": self.ctx.counters, "progress": self.progress,
                      "streams": {str(s): n for s, n in self.stream_out.items()}, "peers": self._peer_states()})

    def _peer_states(self) -> dict:
        if self.monitors:
            self._watch_peers()
        return {label: state for label, state in self.peers.values()}

    def _runner_file(self, name: str) -> dict:
        """A JSON file the runner rewrites once a second in the run folder, read at most
        once a second (again sooner while it holds nothing yet); the last good copy otherwise."""
        cached, read_at = self._runner_files.get(name, ({}, 0.0))
        now = time.monotonic()
        if now - read_at >= 1.0 or not any(cached.values()):
            try:
                with open(os.path.join(self.config["run_dir"], name)) as f:
                    cached = json.load(f)
            except (OSError, ValueError):
                pass
            self._runner_files[name] = (cached, now)
        return cached

    def set_progress(self, done: int, total: int | None) -> None:
        self.progress = (done, total)

    def graph_metrics(self) -> dict:
        return self._runner_file("metrics.live.json")

    def _timed_process(self, inputs: dict, stream: int, seq: int, t: int):
        ctx = self.ctx
        ctx.stream, ctx.seq, ctx.capture_ns = stream, seq, t
        start = time.perf_counter()
        if not self.t_first:
            self.t_first = time.time()
        results = self.keyed.call(inputs, ctx)
        end = time.perf_counter()
        if results.keys() - self.links_by_port.keys():
            unknown = sorted(results.keys() - self.links_by_port.keys())
            raise ValueError(f"process returned undeclared output port(s) {unknown}; OUTPUTS declares {sorted(self.links_by_port)}")
        self.t_last = time.time()
        self.proc.add((end - start) * 1000.0)
        self.frames_out += 1
        self.stream_out[stream] = self.stream_out.get(stream, 0) + 1
        return results

    # ----- the two loops: sources and everything else ------------------------------------
    def run(self) -> int:
        try:
            self._setup_sockets()
        except zmq.ZMQError as exc:  # e.g. the port is taken: say which, do not crash-loop
            self._report({"t": "error", "phase": "open", "exc": "NodeOpenError", "field": "port",
                          "msg": f"cannot set up its sockets: {exc}"})
            self._teardown()
            return 3
        try:
            self.node.open(self.ctx)
        except Exception as exc:
            try:
                self.node.close()  # the contract: close is called once, also after a failed open
            except Exception:
                pass
            field = getattr(exc, "field", None)
            self._report({"t": "error", "phase": "open", "msg": str(exc) or type(exc).__name__, "field": field,
                          "exc": type(exc).__name__})
            self._teardown()
            return 3
        try:
            self._announce()
            for sock in self.producer_backs:
                sock.send(wire.pack([wire.BACK_HELLO, self.name, self.inc, self.replica]))
            self._report({"t": "ready"})
            if self.config["is_source"]:
                self._run_source()
            else:
                self._run_consumer()
            self._finish()
            self._report({"t": "done"})
            code = 0
        except StopNow:
            code = 0
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" ({os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
            self._report({"t": "error", "phase": "process", "msg": f"{type(exc).__name__}: {exc}{where}"})
            traceback.print_exc()
            code = 1
        self._maybe_report_metrics(force=True)
        try:
            self.keyed.close()
            self.node.close()
        except Exception:
            traceback.print_exc()
        self._teardown()
        return code

    def _run_source(self) -> None:
        stream = self.config["stream"]
        limit = self.config["max_frames"]
        go = os.path.join(self.config["run_dir"], "go")
        while not os.path.exists(go) and not self.stop_requested:  # the runner: every node is open
            self._pump(0.02)
        for link in self.out_links.values():
            while not link.ready and not self.stop_requested:
                self._pump(0.02)
        # Where to start: where this source got to (its state file, kept across restarts
        # by this runner), or, on a machine whose runner was restarted, the first seq any
        # consumer still lacks (their hellos say; the lowest, so nothing is skipped).
        hints = [link.resume_hint.get(stream, 0) for link in self.out_links.values()]
        seq = max(int(self.state[stream]), min(hints) if hints else 0)
        self.ctx.resume_seq = seq
        while not self.stop_requested and not (limit and seq >= limit):
            for link in self.out_links.values():  # capture only when the frame can go out at once,
                if link.carries(stream, seq):  # so its timestamp is fresh
                    self._wait_for_credit(link, stream)
            self.ctx.capture_ns = 0
            try:
                results = self._timed_process({}, stream, seq, 0)
            except EndOfStream:
                for _, pool, slot in self.allocated.values():
                    pool.release(slot)  # a buffer taken for a frame that never came
                self.allocated.clear()
                break
            t = self.ctx.capture_ns or time.time_ns()
            self.frames_in += 1
            self._emit(stream, seq, t, results)
            self.lat.add((time.time_ns() - t) / 1e6)
            seq += 1
            self.state[stream] = seq
            if self.back is not None:
                self._drain_back()
            self._maybe_report_metrics()
        self._emit_eos(stream, seq)

    def _finish(self) -> None:
        """Wait until everything sent was released, so no consumer reads a dead pool."""
        self._flush_acks()
        while any(link.outstanding for link in self.out_links.values()):
            if self.stop_requested and self.config["is_source"]:
                deadline = getattr(self, "_finish_deadline", None) or time.monotonic() + 2.0
                self._finish_deadline = deadline
                if time.monotonic() > deadline:
                    return
            self._pump(0.05)

    # consumer side ------------------------------------------------------------------------------
    def _run_consumer(self) -> None:
        cfg = self.config
        self.ports = list(cfg["inputs"])
        self.port_links = {l.port: l for l in self.in_links.values()}
        streams = cfg["streams"]
        self.next_seq = {p: {} for p in self.ports}
        self.reorder = {p: {} for p in self.ports}
        self.eos_from = {p: {} for p in self.ports}
        self.ended = {p: set() for p in self.ports}
        self.end_seq: dict[int, int] = {}
        self.finished_streams: set[int] = set()
        self.keys: dict[tuple[int, int], dict] = {}
        self.waiting = {p: collections.deque() for p in self.ports}
        self.ready: collections.deque = collections.deque()  # keys to fire now, in seq order
        self.next_fire: dict[int, int] = {}  # stream -> the seq to fire next
        self.doomed: set[tuple[int, int]] = set()  # keys marked dropped, fired in their turn
        self.dropped: dict[tuple[int, int], set] = {}
        self.holding: dict[tuple[int, int], list] = {}
        poller = zmq.Poller()
        poller.register(self.inbox, zmq.POLLIN)
        if self.back is not None:
            poller.register(self.back, zmq.POLLIN)
        while len(self.finished_streams) < len(streams):
            if self.stop_requested:
                raise StopNow
            if not self._fireable():  # nothing to do until a frame or an acknowledgement comes
                self._flush_acks()
                poller.poll(POLL_MS)
            self._drain_inbox()  # frames first: acknowledgements are off the latency path
            key = self._take_fireable()
            if key is not None:
                self._fire(key)
            elif not self.ready:
                self._finish_streams()
            if self.back is not None:
                self._drain_back()
            self._maybe_report_metrics()

    def _has_credit(self, key) -> bool:
        """Whether every link that carries `key` can take it now (see _wait_for_credit)."""
        stream, seq = key
        return all(link.has_room(stream) for link in self.out_links.values() if link.carries(stream, seq))

    def _fireable(self) -> bool:
        return any(self._has_credit(key) for key in self.ready)

    def _take_fireable(self):
        """The first ready key whose stream has credit downstream, taken off `ready`.

        Why not simply the first ready key: this process is one thread, so blocking on one
        stream's credit stops every other stream here too. With a consumer fed by two
        replicas of this node, replica 0 blocked on stream B (its consumer holds B waiting
        for a seq replica 1 has) and replica 1 blocked on stream A (held waiting for
        replica 0) never move again. Taking a stream that can go keeps both moving; each
        stream still fires strictly in seq order (`ready` holds one key per stream)."""
        for index, key in enumerate(self.ready):
            if self._has_credit(key):
                del self.ready[index]
                return key
        return None

    def _first_seq(self, stream: int) -> int:
        """Where this instance starts in a stream: where it left off, or its replica's first."""
        done = int(self.state[stream])
        return done if done else (self.replica if self.stride > 1 else 0)

    def _next_expected(self, port: str, stream: int) -> int:
        expected = self.next_seq[port].get(stream)
        if expected is None:
            expected = self.next_seq[port][stream] = self._first_seq(stream)
        return expected

    def _drain_inbox(self) -> None:
        inbox = self.inbox
        for _ in range(256):
            if not inbox.get(zmq.EVENTS) & zmq.POLLIN:
                return
            frames = inbox.recv_multipart(zmq.NOBLOCK, copy=False)
            try:
                self._on_message(frames)
            except (wire.WireError, ValueError, KeyError, IndexError, TypeError, OSError):
                self.bad += 1

    def _on_message(self, frames) -> None:
        header = wire.decode_header(frames[0].bytes)
        link = self.in_links.get(header["e"])
        if link is None or header["f"] >= len(link.producers):
            raise wire.WireError("message for a link this node does not have")
        kind = header["k"]
        if kind == wire.KIND_ANNOUNCE:  # a producer (re)started: say where each of its streams stands here
            hints = [[stream, seq] for stream, seq in self.next_seq[link.port].items()]
            link.producers[header["f"]].send(wire.pack([wire.BACK_HELLO, self.name, self.inc, self.replica, hints]), zmq.NOBLOCK)
            return
        if kind == wire.KIND_EOS:
            self._on_eos(link, header)
            return
        if kind == wire.KIND_SYNC:
            self._on_sync(link, header)
            return
        arrays, refs = [], []
        inline = iter(frames[1:])
        for spec in header["a"]:
            if spec[3] is None:
                frame = next(inline, None)
                if frame is None:
                    raise wire.WireError("fewer buffers than the header lists")
                array = wire.inline_array(spec, frame.buffer)
            else:
                if not link.shm:
                    raise wire.WireError("a slot reference on a link from another machine")
                array = self.reader.view(spec[3], spec[1], spec[2])
                refs.append((array, spec[3]))
            arrays.append((spec[0], array))
        if next(inline, None) is not None:
            raise wire.WireError("more buffers than the header lists")
        rec = Received(header, link.id, arrays, frames, refs)
        self._accept(link.port, rec)

    def _accept(self, port: str, rec: Received) -> None:
        """Reorder and dedupe per (port, stream), then hand packets to the join in seq order."""
        stream, seq = rec.stream, rec.seq
        expected = self._next_expected(port, stream)
        if seq < expected:
            held = self.holding.get((stream, seq))
            if not (held and any(r.link == rec.link for r in held)):
                self._ack_inputs([rec], wire.ACK_CONSUMED | wire.ACK_RELEASED)  # a duplicate after a restart
            return
        if (seq - expected) % self.stride:
            raise wire.WireError("seq routed to the wrong replica")
        if seq > expected:
            buffer = self.reorder[port].setdefault(stream, {})
            if len(buffer) >= REORDER_LIMIT:
                raise wire.WireError("reorder buffer full")
            buffer[seq] = rec
            return
        self._deliver(port, rec)
        self.next_seq[port][stream] = expected + self.stride
        self._advance(port, stream)

    def _advance(self, port: str, stream: int) -> None:
        """Deliver what the reorder buffer holds in order, stepping over seqs known done."""
        expected = self._next_expected(port, stream)
        buffer = self.reorder[port].get(stream)
        while True:
            if self.sync and self._known_done(stream, expected):
                if buffer and expected in buffer:
                    self._ack_inputs([buffer.pop(expected)], wire.ACK_CONSUMED | wire.ACK_RELEASED)
            elif buffer and expected in buffer:
                self._deliver(port, buffer.pop(expected))
            else:
                break
            expected += self.stride
        self.next_seq[port][stream] = expected

    def _known_done(self, stream: int, seq: int) -> bool:
        """A producer said this seq was released: an earlier incarnation finished it."""
        for link_id, streams in self.sync.items():
            firsts = streams.get(stream)
            if firsts:
                first = firsts.get(self.in_links[link_id].producer_of(stream, seq))
                if first is not None and seq < first:
                    return True
        return False

    def _on_sync(self, link: InLink, header: dict) -> None:
        stream = header["s"]
        if stream not in self.config["streams"]:
            raise wire.WireError("sync for a stream that does not reach this node")
        firsts = self.sync.setdefault(link.id, {}).setdefault(stream, {})
        firsts[header["f"]] = max(firsts.get(header["f"], 0), header["q"])
        for port in self.ports:
            self._advance(port, stream)
        self._next_fire(stream)

    def _next_fire(self, stream: int) -> int:
        """The seq of `stream` to fire next, past any that are known done (dropped unseen)."""
        seq = self.next_fire.get(stream)
        if seq is None:
            seq = self._first_seq(stream)
        skipped = False
        while self.sync and self._known_done(stream, seq):
            self._discard_key((stream, seq))
            seq += self.stride
            skipped = True
        if skipped and stream not in self.next_out:  # a fresh node joining mid-stream: tell consumers too
            self.done_below[stream] = seq
        self.next_fire[stream] = seq
        if self.sync:
            self._forget_spent_syncs(stream, seq)
        entry = self.keys.get((stream, seq))
        if entry is not None and (stream, seq) not in self.ready and ((stream, seq) in self.doomed or len(entry) == len(self.ports)):
            self.ready.append((stream, seq))
        return seq

    def _forget_spent_syncs(self, stream: int, fire_seq: int) -> None:
        """Once every port and the join are past all a producer said was done, that news
        is spent: drop it, so the per-packet known-done checks end with the restart."""
        limit = max((q for streams in self.sync.values() for q in streams.get(stream, {}).values()), default=None)
        if limit is None or fire_seq < limit or any(self.next_seq[p].get(stream, 0) < limit for p in self.ports):
            return
        for link_id in list(self.sync):
            self.sync[link_id].pop(stream, None)
            if not self.sync[link_id]:
                del self.sync[link_id]

    def _discard_key(self, key) -> None:
        """Forget a key an earlier incarnation finished: its packets are duplicates."""
        entry = self.keys.pop(key, None)
        if entry is None:
            return
        for port in entry:
            if key in self.waiting[port]:
                self.waiting[port].remove(key)
        self.doomed.discard(key)
        self.dropped.pop(key, None)
        self._release_held(key, list(entry.values()))

    def _deliver(self, port: str, rec: Received) -> None:
        key = (rec.stream, rec.seq)
        if port == self.ports[0] and not rec.flags & wire.FLAG_DROPPED:
            self.frames_in += 1
        self.holding.setdefault(key, []).append(rec)
        expected_ports = self.dropped.get(key)
        if expected_ports is not None:  # the rest of this seq was dropped already
            expected_ports.discard(port)
            if not expected_ports:
                del self.dropped[key]
            self._release_held(key, [rec])
            return
        entry = self.keys.setdefault(key, {})
        entry[port] = rec
        waiting = self.waiting[port]
        waiting.append(key)
        if rec.flags & wire.FLAG_DROPPED:  # dropped upstream: pass the news on in its turn
            self._drop_key(key, None)
            return
        link = self.port_links[port]
        if link.policy == "latest" and len(waiting) > link.size:
            self._drop_key(waiting[0], "drops")
        if key not in self.doomed and len(entry) == len(self.ports):
            self._queue_if_next(key)

    def _queue_if_next(self, key) -> None:
        """Fire keys strictly in seq order per stream, so every output link carries its
        packets in order: a consumer's credits never fill up with packets it must hold
        back for an earlier one, which would deadlock a `block` link."""
        stream, seq = key
        if stream not in self.next_fire:
            self._next_fire(stream)  # appends key to `ready` when it is the one
        elif seq == self.next_fire[stream] and key not in self.ready:
            self.ready.append(key)

    def _fire(self, key) -> None:
        if key not in self.keys:
            return
        if key in self.doomed:
            self.doomed.discard(key)
            entry = self.keys.pop(key)
            self._finish_key(key, list(entry.values()), wire.FLAG_DROPPED, 0, {})
        else:
            self._process_key(key)
        stream, seq = key
        self.next_fire[stream] = seq + self.stride
        self._next_fire(stream)

    def _release_held(self, key, recs) -> None:
        held = self.holding.get(key, [])
        for rec in recs:
            if rec in held:
                held.remove(rec)
        if not held:
            self.holding.pop(key, None)
        self._ack_inputs(recs, wire.ACK_CONSUMED | wire.ACK_RELEASED)

    def _drop_key(self, key, counter: str | None) -> None:
        """Mark a seq dropped; downstream hears of it (a header-only marker) in its turn.

        `counter` says what it counts as: "drops" (a `latest` queue overflowed), "lost"
        (the stream ended before the seq was complete) or None (dropped, and counted,
        upstream)."""
        if key in self.doomed:
            return
        entry = self.keys[key]
        for port in entry:
            self.waiting[port].remove(key)
        missing = set(self.ports) - set(entry)
        if missing:
            self.dropped[key] = missing
        if counter:
            setattr(self, counter, getattr(self, counter) + 1)
        self.doomed.add(key)
        if key not in self.ready:
            self._queue_if_next(key)

    def _process_key(self, key) -> None:
        entry = self.keys.pop(key)
        for port in entry:
            waiting = self.waiting[port]
            if waiting[0] == key:
                waiting.popleft()
            else:
                waiting.remove(key)
        recs = list(entry.values())
        t = min(r.t for r in recs)
        if any(r.flags & wire.FLAG_DROPPED for r in recs):
            self._finish_key(key, recs, wire.FLAG_DROPPED, t, {})
            return
        inputs = {}
        self.forwardable.clear()
        for port, rec in entry.items():
            inputs[port] = wire.join_value(rec.bare, rec.arrays, rec.meta, rec.flags & wire.FLAG_EMPTY)
            for array, ref in rec.refs:
                self.forwardable[id(array)] = (array, ref)
        results = self._timed_process(inputs, key[0], key[1], t)
        for rec in recs:
            for array, ref in rec.refs:
                if not self.reader.generation_ok(ref):
                    self.ctx.count("stale_slot_reads")
        self._finish_key(key, recs, 0, t, results)
        self.forwardable.clear()

    def _finish_key(self, key, recs, flags: int, t: int, results: dict) -> None:
        """Send the results of `key`; its inputs are released once all results are."""
        if self.out_links:
            pending = self.pending[key] = [1, recs]  # 1: this call's own hold while it sends
            self._emit(key[0], key[1], t, results, flags, pending)
        if t and not flags:
            self.lat.add((time.time_ns() - t) / 1e6)
        for rec in recs:
            rec.arrays = rec.frames = rec.refs = None  # views die here; slots stay held upstream
        if self.out_links:
            self._ack_inputs(recs, wire.ACK_CONSUMED)
            self.holding.pop(key, None)
            self._settle(key)  # drop this call's hold: inputs go when every result is released
        else:
            self._release_held(key, recs)
        self.state[key[0]] = max(int(self.state[key[0]]), key[1] + self.stride)

    def _on_eos(self, link: InLink, header: dict) -> None:
        port, stream = link.port, header["s"]
        senders = self.eos_from[port].setdefault(stream, set())
        senders.add(header["f"])
        self.end_seq[stream] = max(self.end_seq.get(stream, 0), header["q"])
        if len(senders) < len(link.producers) or stream in self.ended[port]:
            return
        buffer = self.reorder[port].pop(stream, {})
        for seq in sorted(buffer):  # gaps left at the end were lost upstream
            self.lost += 1
            self._deliver(port, buffer[seq])
        self.ended[port].add(stream)

    def _finish_streams(self) -> None:
        for stream in self.config["streams"]:
            if stream in self.finished_streams or not all(stream in self.ended[p] for p in self.ports):
                continue
            for key in sorted(k for k in self.keys if k[0] == stream):  # never completed: lost
                if key not in self.doomed:
                    self._drop_key(key, "lost")
                self.next_fire[stream] = key[1]  # past any seq that never came at all
                self._fire(key)
            self.ready = collections.deque(k for k in self.ready if k in self.keys)
            self.finished_streams.add(stream)
            self.keyed.end_stream(stream)
            self._emit_eos(stream, self.end_seq.get(stream, 0))

    def _teardown(self) -> None:
        self._flush_acks()
        for link in getattr(self, "out_links", {}).values():
            link.outstanding.clear()
        for pool in self.pools.values():
            pool.close()
        self.reader.close()
        for monitor, _ in self.monitors:
            monitor.close(0)
        if getattr(self, "auth", None) is not None:
            self.auth.stop()
        self.zctx.destroy()  # each socket's own linger: PUSH sockets flush, PULL ones do not wait


def install_signal_handlers(runtime: Runtime) -> None:
    def on_term(signum, frame):
        runtime.stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle
