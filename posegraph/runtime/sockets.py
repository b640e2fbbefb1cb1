"""The sockets of a node process: made with the graph's security, and watched when the
peer is on another machine (the live table's "peers" part)."""
from __future__ import annotations

import functools
import operator

import zmq

from ..security import configure_socket, start_authenticator

SEND_HWM = 100_000

_PEER_EVENTS = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "connected",
    zmq.EVENT_DISCONNECTED: "disconnected",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused: key not accepted",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed",
}


class Sockets:
    """Makes this process's data sockets; owns the ZeroMQ context, the CURVE
    authenticator and the monitors of links to other machines."""

    def __init__(self, security: dict | None, binds_tcp: bool):
        self.zctx = zmq.Context.instance()
        self.security = security
        self.auth = start_authenticator(self.zctx, security) if binds_tcp else None  # before any bind
        self.peers: dict[str, list] = {}  # remote endpoint -> [label, state]
        self.monitors: list = []
        self.connected: list[list] = []  # [socket, address] of every connecting tcp socket

    def make(self, kind, address: str, bind: bool, server_key: str | None = None, peer: str | None = None):
        """A PUSH or PULL socket bound or connected to `address`; `peer` labels a link to
        another machine, whose connection state is then watched."""
        sock = self.zctx.socket(kind)
        configure_socket(sock, address, bind, self.security, server_key)
        # what was sent before close (EOS, the last acks) must still reach a live peer
        sock.setsockopt(zmq.LINGER, 1000 if kind == zmq.PUSH else 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 20)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        sock.setsockopt(zmq.SNDHWM if kind == zmq.PUSH else zmq.RCVHWM, SEND_HWM)
        if peer is not None:
            self.peers[address] = [peer, "waiting"]
            self.monitors.append((sock.get_monitor_socket(functools.reduce(operator.or_, _PEER_EVENTS)), address))
        (sock.bind if bind else sock.connect)(address)
        if not bind and address.startswith("tcp://"):
            self.connected.append([sock, address])
        return sock

    def move(self, old_host: str, new_host: str) -> int:
        """A machine came back at another address (a cluster group rescheduled on another
        node): connect every socket that pointed at `old_host` to the same port on
        `new_host`. What was queued for the old peer is resent by the engine (the new
        processes announce, producers resend what was not released). Returns how many moved."""
        moved = 0
        for entry in self.connected:
            sock, address = entry
            host, _, port = address[len("tcp://"):].rpartition(":")
            if host != old_host:
                continue
            new = f"tcp://{new_host}:{port}"
            try:
                sock.disconnect(address)
            except zmq.ZMQError:
                pass
            sock.connect(new)
            entry[1] = new
            if address in self.peers:
                self.peers[new] = self.peers.pop(address)
                self.peers[new][1] = "waiting"
                self.monitors = [(m, new if a == address else a) for m, a in self.monitors]
            moved += 1
        return moved

    def peer_states(self) -> dict[str, str]:
        """"machine: node" -> connected / waiting / disconnected / refused, as the monitors last saw."""
        if self.monitors:
            from zmq.utils.monitor import parse_monitor_message

            for monitor, address in self.monitors:
                while True:
                    try:
                        event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    if event["event"] in _PEER_EVENTS:
                        self.peers[address][1] = _PEER_EVENTS[event["event"]]
        return {label: state for label, state in self.peers.values()}

    def close(self) -> None:
        for monitor, _ in self.monitors:
            monitor.close(0)
        if self.auth is not None:
            self.auth.stop()
        self.zctx.destroy()  # each socket's own linger: PUSH sockets flush, PULL ones do not wait
