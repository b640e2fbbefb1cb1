"""The output side of a node process: links to every consumer replica, credit, resending.

A consumer acknowledges a packet twice: `consumed` when it has processed it (frees one
credit of that stream on the link, so `block` inputs push back on this node) and
`released` once everything it sent for that seq has itself been released downstream
(frees the packet's slots and the copy kept here for resending). So a frame's slot, and
the packet kept for resending, live until the whole graph below is done with that seq;
a consumer that restarts says hello and gets everything it never released again, and
a SYNC per stream telling it where the stream stands.

State, declared in __init__:
  links, by_port, by_consumer   the out-links (posegraph.runtime.links.OutLink)
  pending     key -> results of that key not yet released (+1 while this node still sends)
  next_out    stream -> one past the last seq emitted (what a SYNC tells a new consumer)
  done_below  stream -> seqs below were finished by an earlier incarnation of this node
"""
from __future__ import annotations

import collections

import numpy as np
import zmq

from .. import wire
from .links import Entry, OutLink


class Outputs:
    def __init__(self, identity: tuple[str, int, int], out_links: dict[str, list[OutLink]], back, slots, meter, pump,
                 on_released=lambda key: None):
        self.name, self.inc, self.replica = identity
        self.by_port = out_links
        self.links: dict[int, OutLink] = {link.id: link for links in out_links.values() for link in links}
        self.by_consumer: dict[str, list[OutLink]] = {}
        for link in self.links.values():
            self.by_consumer.setdefault(link.consumer, []).append(link)
        self.shm_ports = {port for port, links in out_links.items() if any(link.shm for link in links)}
        self.back = back              # where consumers' hellos and acks arrive (None: no consumers)
        self.slots = slots            # shared-memory slots (posegraph.runtime.slots.Slots)
        self.meter = meter
        self.pump = pump              # serve the back channel for a while (the process shell's)
        self.on_released = on_released
        self.pending: dict[tuple[int, int], int] = {}
        self.next_out: dict[int, int] = {}
        self.done_below: dict[int, int] = {}

    # ----- what node code allocates --------------------------------------------------------
    def alloc(self, port: str, name: str, shape: tuple, dtype) -> np.ndarray:
        if port not in self.by_port:
            raise KeyError(f"alloc for unknown output port {port!r}")
        if port not in self.shm_ports:
            return np.empty(shape, dtype)
        return self.slots.alloc(port, name, shape, dtype)

    # ----- credit ----------------------------------------------------------------------------
    def has_credit(self, key) -> bool:
        """Whether every link that carries `key` can take it now (OutLink.has_room)."""
        stream, seq = key
        return all(link.has_room(stream) for link in self.links.values() if link.carries(stream, seq))

    def wait_for_credit(self, link: OutLink, stream: int) -> None:
        """Block until the link may take one more packet of `stream`; a `latest` link never
        drops the newest here, its consumer drops the oldest."""
        while not link.has_room(stream):
            self.pump(0.05)

    def all_ready(self) -> bool:
        return all(link.ready for link in self.links.values())

    def all_released(self) -> bool:
        return not any(link.outstanding for link in self.links.values())

    # ----- sending -----------------------------------------------------------------------------
    def _send(self, link: OutLink, frames: list) -> None:
        try:
            link.socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass  # the consumer is gone; it gets this again when it says hello

    def emit(self, stream: int, seq: int, t: int, results: dict, flags_all: int = 0, track: bool = True,
             live: bool = False) -> None:
        """Send one packet per link for (stream, seq). With `track`, the results are counted
        in `pending` (plus this call's own hold, dropped by `settle`), so `on_released`
        says when every one of them was released downstream. `live`: the packets come from a
        live source, so a `latest` consumer may drop them.

        Each packet sent is counted at once, not after the loop: waiting for credit on a
        later link serves acknowledgements, and a release that arrived for an earlier
        packet must find its count."""
        key = (stream, seq)
        if track:
            self.pending[key] = 1
        if stream not in self.next_out and self.done_below.get(stream):
            for link in self.links.values():  # joined mid-stream: consumers that said hello
                self._send_sync(link, stream, self.done_below[stream])  # before now must skip what is done
        for port, links in self.by_port.items():
            value = None if flags_all else results.get(port)
            flags = (flags_all or (wire.FLAG_EMPTY if value is None else 0)) | (wire.FLAG_LIVE if live else 0)
            self._emit_port(port, links, key, t, value, flags, track)
        self.slots.release_own()
        self.next_out[stream] = seq + 1  # only now: a SYNC sent while waiting above must not claim this seq

    def _emit_port(self, port: str, links: list[OutLink], key, t: int, value, flags: int, track: bool) -> None:
        stream, seq = key
        bare, arrays, meta = wire.split_value(value)
        encoded = {}
        for link in links:
            if not link.carries(stream, seq):
                continue
            self.wait_for_credit(link, stream)
            if link.shm not in encoded:
                slots: list = []
                specs, buffers = self.slots.encode(port, arrays, link.shm, slots)
                encoded[link.shm] = (specs, buffers, slots)
            specs, buffers, slots = encoded[link.shm]
            frames = [wire.encode_data(link.id, self.replica, self.inc, stream, seq, t, flags, bare, meta, specs)] + buffers
            for pool, slot in slots:
                pool.retain(slot)
            if flags & wire.FLAG_LIVE:
                link.live_streams.add(stream)
            link.outstanding[key] = Entry(frames, slots)
            link.unconsumed[stream] += 1
            if track:
                self.pending[key] += 1
            self._send(link, frames)

    def settle(self, key) -> None:
        """One more result of `key` was released (or this node's own hold ended); when all
        are, `on_released(key)`."""
        count = self.pending.get(key)
        if count is None:
            return
        if count <= 1:
            del self.pending[key]
            self.on_released(key)
        else:
            self.pending[key] = count - 1

    def emit_eos(self, stream: int, end_seq: int) -> None:
        for link in self.links.values():
            while not link.ready:
                self.pump(0.05)
            frames = [wire.encode_eos(link.id, self.replica, self.inc, stream, end_seq)]
            link.eos[stream] = frames
            self._send(link, frames)

    def announce(self) -> None:
        """This instance (re)started: consumers answer with hello."""
        for link in self.links.values():
            self._send(link, [wire.encode_announce(link.id, self.replica, self.inc)])

    def note_done_below(self, stream: int, seq: int) -> None:
        """A fresh instance joining mid-stream found seqs below `seq` finished before it."""
        if stream not in self.next_out:
            self.done_below[stream] = seq

    # ----- the back channel: hellos and acknowledgements from consumers ---------------------------
    def drain_back(self) -> None:
        back = self.back
        while back.get(zmq.EVENTS) & zmq.POLLIN:
            try:
                message = wire.decode_back(back.recv(zmq.NOBLOCK))
            except wire.WireError:
                self.meter.bad += 1
                continue
            if isinstance(message, wire.Hello):
                self._on_hello(message)
            else:
                for ack in message.acks:
                    self._on_ack(*ack)

    def _on_hello(self, hello: wire.Hello) -> None:
        links = self.by_consumer.get(hello.consumer)
        if not links:
            self.meter.bad += 1
            return
        for link in links:
            link.resume_hint = {stream: seq for stream, seq in hello.hints}
            restarted = link.consumer_inc is not None and link.consumer_inc != hello.incarnation
            link.consumer_inc = hello.incarnation
            link.ready = True
            self._send_syncs(link)
            if restarted:  # the consumer lost what it held: send it all again, in order
                self._resend_unreleased(link)

    def moved(self, machine: str) -> None:
        """The consumers on `machine` are now at another address (the socket reconnected):
        what was queued for the old one is gone, so send again everything they have not
        released, after the SYNCs; they drop by seq what they already have."""
        for link in self.links.values():
            if link.config.machine != machine or not link.ready:
                continue
            self._send_syncs(link)
            self._resend_unreleased(link)

    def _resend_unreleased(self, link: OutLink) -> None:
        """Everything the link's consumer has not released, in order, then the ends of
        stream sent on it: all of it counts as unconsumed again (credit)."""
        link.unconsumed = collections.Counter(stream for stream, _ in link.outstanding)
        for entry in link.outstanding.values():
            entry.consumed = False
            self._send(link, entry.frames)
        for frames in link.eos.values():
            self._send(link, frames)

    def _send_syncs(self, link: OutLink) -> None:
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
            self._send_sync(link, stream, seq)

    def _send_sync(self, link: OutLink, stream: int, seq: int) -> None:
        self._send(link, [wire.encode_sync(link.id, self.replica, self.inc, stream, seq)])

    def _on_ack(self, link_id: int, stream: int, seq: int, flags: int, producer_inc: int) -> None:
        link = self.links.get(link_id)
        if link is None:
            self.meter.bad += 1
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
            self.settle((stream, seq))

    def close(self) -> None:
        for link in self.links.values():
            link.outstanding.clear()
        self.slots.close()
