"""ZeroMQ CURVE keys for tcp links: who may connect, and encryption on the wire.

`runner.py keys DIR [NAME ...]` writes one key pair per name (default: one pair called
`graph`, shared by every machine):
    DIR/public/NAME.key            public keys: copy to every machine
    DIR/private/NAME.key_secret    secret keys: copy only to the machine NAME (or all, for `graph`)
With `security: {curve: DIR}` every tcp socket is a CURVE socket. A bound socket (a node's
inbox or back channel) is a CURVE server that accepts only clients whose public key is in
DIR/public; a connecting socket checks the server's key, so it never talks to an impostor.
A machine uses its own pair `NAME` when it has one, else `graph`.
"""
from __future__ import annotations

from pathlib import Path

SHARED = "graph"


class KeysError(Exception):
    pass


class Keys:
    """The key folder of a graph: public keys of every machine, this machine's secret."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.public_dir = self.folder / "public"
        self.private_dir = self.folder / "private"
        if not self.public_dir.is_dir():
            raise KeysError(f"no key folder {str(self.public_dir)!r} (make one with `runner.py keys {folder}`)")

    def _public_file(self, machine: str | None) -> Path:
        own = self.public_dir / f"{machine}.key"
        return own if machine and own.exists() else self.public_dir / f"{SHARED}.key"

    def secret_file(self, machine: str | None) -> Path:
        own = self.private_dir / f"{machine}.key_secret"
        return own if machine and own.exists() else self.private_dir / f"{SHARED}.key_secret"

    def server_public(self, machine: str | None) -> str:
        import zmq.auth

        path = self._public_file(machine)
        if not path.exists():
            raise KeysError(f"no public key for machine '{machine}' in {self.public_dir} ({machine}.key or {SHARED}.key)")
        public, _ = zmq.auth.load_certificate(str(path))
        return public.decode()

    def check_machine(self, machine: str | None) -> None:
        """This machine can take part: it holds a secret key (its own or the shared one)."""
        path = self.secret_file(machine)
        if not path.exists():
            raise KeysError(f"no secret key for machine '{machine or SHARED}' in {self.private_dir} "
                            f"({machine + '.key_secret or ' if machine else ''}{SHARED}.key_secret); copy it from where `runner.py keys` ran")
        self.server_public(machine)

    def worker_config(self, machine: str | None) -> dict:
        return {"secret_file": str(self.secret_file(machine)), "public_dir": str(self.public_dir)}


def configure_socket(sock, address: str, bind: bool, security: dict | None, server_key: str | None) -> None:
    """Make a tcp socket a CURVE server (bind) or client (connect) when the graph has keys."""
    if not security or not address.startswith("tcp://"):
        return
    import zmq.auth

    public, secret = zmq.auth.load_certificate(security["secret_file"])
    sock.curve_publickey, sock.curve_secretkey = public, secret
    if bind:
        sock.curve_server = True
    else:
        sock.curve_serverkey = server_key.encode()


def start_authenticator(zctx, security: dict | None):
    """A ZAP handler in this process: without one a CURVE server lets any key in."""
    if not security:
        return None
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(zctx)
    auth.start()
    auth.configure_curve(domain="*", location=security["public_dir"])
    return auth
