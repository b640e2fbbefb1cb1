"""The input side of a node process: from the inbox socket to keys ready to fire.

Top to bottom for a packet: check (wire) -> reorder and dedupe per (port, stream) ->
queue policy (`latest` drops the oldest) -> join by (stream, seq) -> a key ready to fire,
strictly in seq order per stream. Around it: SYNC (what a producer says was finished by
an earlier incarnation of this node), end of stream per port, and the acknowledgements
that flow back to the producers (`consumed` frees their credit, `released` their slots).

State, all declared in __init__:
  next_seq   port -> stream -> the next seq expected on that port
  reorder    port -> stream -> {seq: packet} that came early
  keys       (stream, seq) -> {port: packet} joined so far
  waiting    port -> keys holding a packet of that port, oldest first (the `latest` queue)
  ready      keys complete and next in their stream, to fire in this order
  next_fire  stream -> the seq to fire next
  doomed     keys marked dropped, fired (as a drop marker) in their turn
  dropped    key -> ports whose packets, still to come, are to be let go at once
  holding    key -> packets delivered and not yet consumed (duplicates of them wait)
  unreleased key -> packets consumed whose results are not yet released downstream
  sync       link -> stream -> producer replica -> first seq not released there
  producer_incs (link, producer replica) -> its live incarnation (acks go to it)
  ended, eos_from, end_seq, finished   end of stream per port, and per stream
"""
from __future__ import annotations

import collections

import zmq

from .. import wire
from .links import InLink

Received = wire.Header  # a data packet as received: its header, views and frames

REORDER_LIMIT = 4096
CONSUMED_AND_RELEASED = wire.ACK_CONSUMED | wire.ACK_RELEASED


class UpstreamAcks:
    """Acknowledgements owed to producers, sent in batches (one message per producer)."""

    def __init__(self):
        self.queued: dict[object, list] = {}  # producer back socket -> acks not sent yet

    def queue(self, link: InLink, rec: Received, flags: int) -> None:
        if rec.producer < len(link.producers):
            self.queued.setdefault(link.producers[rec.producer], []).append([rec.link, rec.stream, rec.seq, flags, rec.incarnation])

    def flush(self) -> None:
        for sock, acks in self.queued.items():
            for start in range(0, len(acks), 1000):
                try:
                    sock.send(wire.encode_acks(acks[start:start + 1000]), zmq.NOBLOCK)
                except zmq.Again:
                    pass  # that producer is gone; its next incarnation resends and we ack again
        self.queued.clear()


class Inputs:
    """Everything between the inbox socket and a key ready to fire (see the module doc)."""

    def __init__(self, identity: tuple[str, int, int], in_links: dict[int, InLink], streams: list[int],
                 stride: int, marks, reader, meter, on_skipped=lambda stream, seq: None):
        self.name, self.inc, self.replica = identity
        self.links = in_links
        self.streams = streams
        self.stride = stride          # seq-routed replicas see every stride-th seq of a stream
        self.marks = marks            # per-stream progress that survives a restart (StreamMarks)
        self.reader = reader          # shared-memory pools of producers (PoolReader)
        self.meter = meter
        self.on_skipped = on_skipped  # a fresh instance skipped seqs finished before it: tell consumers
        self.acks = UpstreamAcks()
        self.ports = list(dict.fromkeys(link.port for link in in_links.values()))
        self.port_links = {link.port: link for link in in_links.values()}
        self.next_seq: dict[str, dict[int, int]] = {p: {} for p in self.ports}
        self.reorder: dict[str, dict[int, dict]] = {p: {} for p in self.ports}
        self.eos_from: dict[str, dict[int, set]] = {p: {} for p in self.ports}
        self.ended: dict[str, set] = {p: set() for p in self.ports}
        self.end_seq: dict[int, int] = {}
        self.finished: set[int] = set()
        self.keys: dict[tuple[int, int], dict] = {}
        self.waiting: dict[str, collections.deque] = {p: collections.deque() for p in self.ports}
        self.ready: collections.deque = collections.deque()
        self.next_fire: dict[int, int] = {}
        self.doomed: set[tuple[int, int]] = set()
        self.dropped: dict[tuple[int, int], set] = {}
        self.holding: dict[tuple[int, int], list] = {}
        self.unreleased: dict[tuple[int, int], list] = {}
        self.sync: dict[int, dict] = {}
        self.producer_incs: dict[tuple[int, int], int] = {}

    # ----- receiving ---------------------------------------------------------------------
    def drain(self, inbox) -> None:
        """Take up to 256 waiting messages; a malformed one is counted and dropped."""
        for _ in range(256):
            if not inbox.get(zmq.EVENTS) & zmq.POLLIN:
                return
            frames = inbox.recv_multipart(zmq.NOBLOCK, copy=False)
            try:
                self._on_message(frames)
            except (wire.WireError, ValueError, KeyError, IndexError, TypeError, OSError):
                self.meter.bad += 1

    def _on_message(self, frames) -> None:
        header = wire.decode_header(frames[0].bytes)
        link = self.links.get(header.link)
        if link is None or header.producer >= len(link.producers):
            raise wire.WireError("message for a link this node does not have")
        kind = header.kind
        if kind == wire.KIND_ANNOUNCE:
            self._on_announce(link, header)
        elif kind == wire.KIND_EOS:
            self._check_live(link, header)
            self._on_eos(link, header)
        elif kind == wire.KIND_SYNC:
            self._check_live(link, header)
            self._on_sync(link, header)
        else:
            live = self.producer_incs.setdefault((link.id, header.producer), header.incarnation)
            if header.incarnation != live:  # sent by a dead incarnation before it died: the live one owns it now
                header.incarnation = live
            self._accept(link.port, self._receive(link, header, frames))

    def _check_live(self, link: InLink, header: wire.Header) -> None:
        """An end of stream or a SYNC changes what this node waits for, so it must come from
        the producer's live incarnation (random, from its announce or first message): one
        from a dead incarnation, or forged by anyone who can reach a plain tcp port, is
        refused (and counted), never obeyed."""
        live = self.producer_incs.setdefault((link.id, header.producer), header.incarnation)
        if header.incarnation != live:
            raise wire.WireError("an end of stream or sync from an incarnation that is not the producer's live one")

    def _on_announce(self, link: InLink, header: wire.Header) -> None:
        """A producer (re)started. Packets of its earlier incarnation that this node still
        holds are now the new one's (it resends the same seqs, and the acks must reach it),
        and it hears where each stream stands here."""
        self.producer_incs[link.id, header.producer] = header.incarnation
        for rec in self._held_from(link.id, header.producer):
            rec.incarnation = header.incarnation
        hints = [[stream, self._next_expected(link.port, stream)] for stream in self.streams]
        link.producers[header.producer].send(wire.encode_hello(self.name, self.inc, self.replica, hints), zmq.NOBLOCK)

    def moved(self, machine: str) -> None:
        """The producers on `machine` are now at another address: say hello again there
        (one sent to the old address may be lost), so they know where each stream stands."""
        for link in self.links.values():
            if link.config.machine != machine:
                continue
            hints = [[stream, self._next_expected(link.port, stream)] for stream in self.streams]
            for sock in link.producers:
                try:
                    sock.send(wire.encode_hello(self.name, self.inc, self.replica, hints), zmq.NOBLOCK)
                except zmq.Again:
                    pass

    def _held_from(self, link_id: int, producer: int):
        """Every packet of (link, producer replica) this node keeps: reordering, joined, held or unreleased."""
        groups = [recs for recs in self.holding.values()] + [recs for recs in self.unreleased.values()]
        groups += [list(buffer.values()) for by_stream in self.reorder.values() for buffer in by_stream.values()]
        for recs in groups:
            for rec in recs:
                if rec.link == link_id and rec.producer == producer:
                    yield rec

    def hints(self) -> list[list[int]]:
        """[[stream, the first seq this instance still needs]] for every stream reaching it
        (its marks when it has seen nothing yet): what a hello tells a (re)started producer."""
        if not self.ports:
            return []
        return [[stream, min(self._next_expected(port, stream) for port in self.ports)] for stream in self.streams]

    def _receive(self, link: InLink, header: wire.Header, frames) -> Received:
        """The packet's arrays, as views of its inline buffers or of a producer's slots."""
        arrays, refs = [], []
        inline = iter(frames[1:])
        for spec in header.arrays:
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
        header.views, header.frames, header.refs = arrays, frames, refs
        return header

    def _first_seq(self, stream: int) -> int:
        """Where this instance starts in a stream: where it left off, or its replica's first."""
        done = self.marks[stream]
        return done if done else (self.replica if self.stride > 1 else 0)

    def _next_expected(self, port: str, stream: int) -> int:
        expected = self.next_seq[port].get(stream)
        if expected is None:
            expected = self.next_seq[port][stream] = self._first_seq(stream)
        return expected

    def _accept(self, port: str, rec: Received) -> None:
        """Reorder and dedupe per (port, stream), then hand packets to the join in seq order."""
        stream, seq = rec.stream, rec.seq
        expected = self._next_expected(port, stream)
        if seq < expected:
            if not self._keeps((stream, seq), rec):
                self._ack(rec, CONSUMED_AND_RELEASED)  # a duplicate after a restart
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

    def _keeps(self, key, rec: Received) -> bool:
        """Whether this node still keeps `key`'s packet from the same producer, held or sent
        on and not yet released downstream. A restarted producer resends such a seq; the
        kept packet's acknowledgement is the one that answers it. Releasing the duplicate
        at once would free the slot the kept packet (and whatever this node sent on from
        it) still reads, and the producer's producer could write the next frame there."""
        for group in (self.holding.get(key), self.unreleased.get(key)):
            if group and any(r.link == rec.link and r.producer == rec.producer for r in group):
                return True
        return False

    def _advance(self, port: str, stream: int) -> None:
        """Deliver what the reorder buffer holds in order, stepping over seqs known done."""
        expected = self._next_expected(port, stream)
        buffer = self.reorder[port].get(stream)
        while True:
            if self.sync and self._known_done(stream, expected):
                if buffer and expected in buffer:
                    self._ack(buffer.pop(expected), CONSUMED_AND_RELEASED)
            elif buffer and expected in buffer:
                self._deliver(port, buffer.pop(expected))
            else:
                break
            expected += self.stride
        self.next_seq[port][stream] = expected

    # ----- SYNC: what an earlier incarnation finished -----------------------------------------
    def _known_done(self, stream: int, seq: int) -> bool:
        """A producer said this seq was released: an earlier incarnation finished it."""
        for link_id, streams in self.sync.items():
            firsts = streams.get(stream)
            if firsts:
                first = firsts.get(self.links[link_id].producer_of(stream, seq))
                if first is not None and seq < first:
                    return True
        return False

    def _on_sync(self, link: InLink, header: wire.Header) -> None:
        stream = header.stream
        if stream not in self.streams:
            raise wire.WireError("sync for a stream that does not reach this node")
        firsts = self.sync.setdefault(link.id, {}).setdefault(stream, {})
        firsts[header.producer] = max(firsts.get(header.producer, 0), header.seq)
        for port in self.ports:
            self._advance(port, stream)
        self._next_fire(stream)

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

    # ----- the join and the order of firing ---------------------------------------------------
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
        if skipped:
            self.on_skipped(stream, seq)
        self.next_fire[stream] = seq
        if self.sync:
            self._forget_spent_syncs(stream, seq)
        entry = self.keys.get((stream, seq))
        if entry is not None and (stream, seq) not in self.ready and ((stream, seq) in self.doomed or len(entry) == len(self.ports)):
            self.ready.append((stream, seq))
        return seq

    def _deliver(self, port: str, rec: Received) -> None:
        key = (rec.stream, rec.seq)
        if port == self.ports[0] and not rec.flags & wire.FLAG_DROPPED:
            self.meter.frames_in += 1
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
        if link.policy == "latest" and len(waiting) > link.size and rec.flags & wire.FLAG_LIVE:
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
            setattr(self.meter, counter, getattr(self.meter, counter) + 1)
        self.doomed.add(key)
        if key not in self.ready:
            self._queue_if_next(key)

    # ----- firing: the process shell takes keys from here ----------------------------------------
    def take_fireable(self, has_credit):
        """The first ready key whose stream has credit downstream (`has_credit(key)`), taken
        off `ready`; None when there is none.

        Why not simply the first ready key: this process is one thread, so blocking on one
        stream's credit stops every other stream here too. With a consumer fed by two
        replicas of this node, replica 0 blocked on stream B (its consumer holds B waiting
        for a seq replica 1 has) and replica 1 blocked on stream A (held waiting for
        replica 0) never move again. Taking a stream that can go keeps both moving; each
        stream still fires strictly in seq order (`ready` holds one key per stream)."""
        for index, key in enumerate(self.ready):
            if has_credit(key):
                del self.ready[index]
                return key
        return None

    def any_fireable(self, has_credit) -> bool:
        return any(has_credit(key) for key in self.ready)

    def take(self, key) -> tuple[dict[str, Received], bool, int] | None:
        """Off the join: `key`'s packets by port, whether the key is a drop, and its capture
        time (0 for a key dropped here); None when the key is gone (discarded meanwhile)."""
        if key not in self.keys:
            return None
        entry = self.keys.pop(key)
        if key in self.doomed:
            self.doomed.discard(key)
            return entry, True, 0
        for port in entry:
            waiting = self.waiting[port]
            if waiting[0] == key:
                waiting.popleft()
            else:
                waiting.remove(key)
        recs = entry.values()
        return entry, any(r.flags & wire.FLAG_DROPPED for r in recs), min(r.t for r in recs)

    @staticmethod
    def values(entry: dict[str, Received]) -> dict:
        """{port: value} of a key's packets, as node code receives them."""
        return {port: wire.join_value(r.bare, r.views, r.meta, r.flags & wire.FLAG_EMPTY) for port, r in entry.items()}

    def stale_reads(self, recs) -> int:
        """How many of these packets' slots their producer reused while the node read them."""
        stale = 0
        for rec in recs:
            if rec.refs:
                stale += sum(not self.reader.generation_ok(ref) for _, ref in rec.refs)
        return stale

    def fired(self, key) -> None:
        """`key` went out: the next seq of its stream may fire."""
        stream, seq = key
        self.next_fire[stream] = seq + self.stride
        self._next_fire(stream)

    def consumed(self, key, recs: list[Received], results_pending: bool) -> None:
        """The node is done with `key`'s packets. Their producers get `consumed` now, and
        `released` now too when nothing was sent on, else once `released(key)` says so."""
        for rec in recs:
            rec.drop_views()
        if results_pending:
            for rec in recs:
                self._ack(rec, wire.ACK_CONSUMED)
            self.holding.pop(key, None)
            self.unreleased[key] = recs
        else:
            self._release_held(key, recs)

    def released(self, key) -> None:
        """Everything sent for `key` was released downstream: release its inputs too."""
        for rec in self.unreleased.pop(key, ()):
            self._ack(rec, wire.ACK_RELEASED)

    def _release_held(self, key, recs) -> None:
        held = self.holding.get(key, [])
        for rec in recs:
            if rec in held:
                held.remove(rec)
        if not held:
            self.holding.pop(key, None)
        for rec in recs:
            self._ack(rec, CONSUMED_AND_RELEASED)

    def _ack(self, rec: Received, flags: int) -> None:
        self.acks.queue(self.links[rec.link], rec, flags)

    # ----- end of stream -------------------------------------------------------------------------
    def _on_eos(self, link: InLink, header: wire.Header) -> None:
        port, stream = link.port, header.stream
        senders = self.eos_from[port].setdefault(stream, set())
        senders.add(header.producer)
        self.end_seq[stream] = max(self.end_seq.get(stream, 0), header.seq)
        if len(senders) < len(link.producers) or stream in self.ended[port]:
            return
        buffer = self.reorder[port].pop(stream, {})
        for seq in sorted(buffer):  # gaps left at the end were lost upstream
            self.meter.lost += 1
            self._deliver(port, buffer[seq])
        self.ended[port].add(stream)

    def ended_streams(self) -> list[int]:
        """Streams every port has seen the end of, not yet finished here."""
        return [s for s in self.streams if s not in self.finished and all(s in self.ended[p] for p in self.ports)]

    def incomplete(self, stream: int):
        """The keys of an ended stream that never completed, in seq order, each marked lost
        and made the next to fire (the shell fires them, as drop markers)."""
        for key in sorted(k for k in self.keys if k[0] == stream):
            if key not in self.doomed:
                self._drop_key(key, "lost")
            self.next_fire[stream] = key[1]  # past any seq that never came at all
            yield key

    def finish(self, stream: int) -> int:
        """Close `stream` here; the end seq its producers announced."""
        self.ready = collections.deque(k for k in self.ready if k in self.keys)
        self.finished.add(stream)
        return self.end_seq.get(stream, 0)

    def all_finished(self) -> bool:
        return len(self.finished) >= len(self.streams)
