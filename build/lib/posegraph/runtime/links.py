"""The two ends of a link as a node process holds them."""
from __future__ import annotations

import collections

from ..config import InLinkConfig, OutLinkConfig

LATEST_SLACK = 16  # packets a `latest` link may run ahead of its consumer: memory stays finite


class _LinkEnd:
    """What both ends of a link read on the hot path, copied out of its configuration."""

    def __init__(self, config: InLinkConfig | OutLinkConfig):
        self.config = config
        self.id = config.link
        self.port = config.port  # this node's port: an input port, or an output port
        self.policy = config.policy
        self.size = config.size
        self.shm = config.shm  # False: another machine's packets; slot references are refused


class InLink(_LinkEnd):
    """An input link: its configuration and one back socket per producer replica."""

    def __init__(self, config: InLinkConfig, back_sockets: list):
        super().__init__(config)
        self.producers = back_sockets

    def producer_of(self, stream: int, seq: int) -> int:
        return self.config.producer_of(stream, seq)


class Entry:
    """A packet sent on an out-link and kept until the consumer releases it (for resending)."""

    __slots__ = ("frames", "slots", "consumed")

    def __init__(self, frames, slots):
        self.frames = frames
        self.slots = slots
        self.consumed = False


class OutLink(_LinkEnd):
    """An output link: its socket, the consumer's state as its hellos and acks tell it,
    and what was sent and not yet released."""

    def __init__(self, config: OutLinkConfig, socket):
        super().__init__(config)
        self.consumer = config.consumer
        self.replica = config.replica
        self.replicas = config.replicas
        self.by_stream = config.route == "stream"  # a stateful consumer: each replica owns whole streams
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
        self.live_streams: set[int] = set()  # streams whose packets come from a live source

    def has_room(self, stream: int) -> bool:
        """Whether the consumer said hello and may take one more packet of `stream`. A `block`
        link holds at most `size` unprocessed packets per stream; a `latest` consumer drops
        the oldest of a live stream itself, so such a stream gets a generous slack that only
        keeps memory finite. Packets of a stream that is not live (a file) are never dropped:
        a `latest` link holds them back like a `block` link."""
        limit = self.size + (LATEST_SLACK if self.policy == "latest" and stream in self.live_streams else 0)
        return self.ready and self.unconsumed[stream] < limit

    def carries(self, stream: int, seq: int) -> bool:
        """Whether (stream, seq) goes to this link's consumer replica (OutLinkConfig.carries, inlined: hot path)."""
        if self.replicas == 1:
            return True
        return (stream if self.by_stream else seq) % self.replicas == self.replica
