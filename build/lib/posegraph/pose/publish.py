"""JSON records published on a ZeroMQ socket, for programs that read results live (the
`zmq` sink, posegraph.nodes.publish).

`Publisher` binds an XPUB socket (a PUB socket that also hears its subscribers) and sends
each record as one single-part message: UTF-8 JSON text, strict (no NaN), never pickled.
Any SUB socket reads it (`json.loads(sub.recv())`). Hearing the subscriptions is what
beats PUB's "slow joiner" problem: a subscriber that connects while records are already
being sent misses them, so `wait_for(n, seconds)` holds until n subscriptions have
arrived, and a record sent afterwards reaches them. Sends that cannot go out are never
dropped in silence: the socket is XPUB_NODROP, so when a subscriber's queue (`hwm`
messages, on both sides) is full a send waits up to `send_timeout_ms` and then reports the
record as dropped, for every subscriber alike.

With `curve` ({"secret_file", "public_dir"}, as posegraph.security.Keys.worker_config
gives) the socket is a CURVE server: traffic is encrypted and only clients whose public
key is in `public_dir` are let in (a ZAP handler in this publisher's own ZeroMQ context,
so it never meets one the process already runs).
"""
from __future__ import annotations

import json
import time

DEFAULT_ADDRESS = "tcp://127.0.0.1:5560"
SUBSCRIBE, UNSUBSCRIBE = 1, 0


class PublishError(Exception):
    """The publisher cannot work as asked; `param` names the setting at fault."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def address_problem(address: str) -> str | None:
    """Why `address` cannot be bound (None when its form is right): tcp://HOST:PORT or ipc://PATH."""
    if not isinstance(address, str) or not address.startswith(("tcp://", "ipc://")):
        return f"{address!r} is not a ZeroMQ address to bind: give tcp://HOST:PORT (e.g. {DEFAULT_ADDRESS}) or ipc://PATH"
    if address.startswith("tcp://"):
        host, _, port = address[len("tcp://"):].rpartition(":")
        if not host or not (port.isdigit() and 0 < int(port) < 65536):
            return f"{address!r} has no host and port: give tcp://HOST:PORT (e.g. {DEFAULT_ADDRESS})"
    return None


def encode(record: dict) -> bytes:
    """A record as the message it travels in: compact, strict JSON in UTF-8."""
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()


class Publisher:
    """An XPUB socket bound to `address` that sends JSON records (module doc)."""

    def __init__(self, address: str, hwm: int = 100_000, send_timeout_ms: int = 1000, linger_ms: int = 2000,
                 curve: dict | None = None):
        import zmq

        self.zmq = zmq
        self.address = address
        self.subscriptions = 0  # subscriptions heard minus unsubscriptions (one per plain subscriber)
        problem = address_problem(address)
        if problem:
            raise PublishError(problem, "address")
        self.zctx = zmq.Context()  # its own: a ZAP handler here never meets the engine's
        self.auth = None
        self.sock = None
        try:
            if curve:
                self._start_authenticator(curve)
            sock = self.sock = self.zctx.socket(zmq.XPUB)
            sock.setsockopt(zmq.XPUB_VERBOSER, 1)    # every subscribe and unsubscribe reaches us
            sock.setsockopt(zmq.XPUB_NODROP, 1)      # a full queue is an error, never a silent drop
            sock.setsockopt(zmq.SNDHWM, int(hwm))
            sock.setsockopt(zmq.SNDTIMEO, int(send_timeout_ms))
            sock.setsockopt(zmq.LINGER, int(linger_ms))  # what was sent before close still goes out
            if curve:
                self._curve_server(curve)
            sock.bind(address)
        except zmq.ZMQError as exc:
            self.close(linger_ms=0)
            raise PublishError(f"cannot bind {address!r}: {exc.strerror}", "address") from None
        except PublishError:
            self.close(linger_ms=0)
            raise

    def _start_authenticator(self, curve: dict) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self.auth = ThreadAuthenticator(self.zctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(curve["public_dir"]))

    def _curve_server(self, curve: dict) -> None:
        import zmq.auth

        try:
            public, secret = zmq.auth.load_certificate(str(curve["secret_file"]))
        except (OSError, ValueError) as exc:
            raise PublishError(f"cannot read the secret key {str(curve['secret_file'])!r}: {exc}", "curve") from None
        if secret is None:
            raise PublishError(f"{str(curve['secret_file'])!r} holds no secret key", "curve")
        self.sock.curve_publickey, self.sock.curve_secretkey = public, secret
        self.sock.curve_server = True

    def hear(self, timeout_ms: int = 0) -> None:
        """Take the (un)subscriptions that arrived, waiting up to `timeout_ms` for the first."""
        zmq = self.zmq
        while self.sock.poll(timeout_ms, zmq.POLLIN):
            timeout_ms = 0
            message = self.sock.recv()
            if message[:1] == bytes([SUBSCRIBE]):
                self.subscriptions += 1
            elif message[:1] == bytes([UNSUBSCRIBE]):
                self.subscriptions = max(0, self.subscriptions - 1)

    def wait_for(self, count: int, seconds: float, stop=lambda: False) -> bool:
        """Wait until `count` subscriptions have arrived (True), or `seconds` passed or
        `stop()` said so (False)."""
        deadline = time.monotonic() + seconds
        while self.subscriptions < count:
            left = deadline - time.monotonic()
            if left <= 0 or stop():
                return False
            self.hear(int(min(left, 0.1) * 1000) + 1)
        return True

    def send(self, record: dict) -> str:
        """Publish one record: "sent", "unheard" (sent while nobody subscribed: nobody got
        it, by design of publish-subscribe) or "dropped" (a subscriber's queue stayed full
        for `send_timeout_ms`: nobody got it)."""
        self.hear()
        data = encode(record)
        try:
            self.sock.send(data)
        except self.zmq.Again:
            return "dropped"
        return "sent" if self.subscriptions > 0 else "unheard"

    def close(self, linger_ms: int | None = None) -> None:
        """Close the socket; records sent before still go out for up to the linger time."""
        if self.sock is not None:
            self.sock.close(linger_ms)
            self.sock = None
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        if self.zctx is not None:
            self.zctx.term()
            self.zctx = None
