"""CURVE keys on tcp links: only holders of the graph's keys can connect, send or receive.

Machines are loopback addresses here (see test_machines.py); the attacker is a plain
pyzmq socket, with no keys or with a key pair of its own.
"""
import time

import zmq
import zmq.auth
from zmq.utils.monitor import parse_monitor_message

from machine_runs import MachineRun, read_records, wait_for_lines, write_hosts
from test_machines import LOOPBACK, run_cli, spread_graph

HOP1_INBOX = 2  # port offsets from base_port: 2 * the node's index in the file
SINK_INBOX = 6


def make_keys(folder, *names):
    done = run_cli("keys", folder, *names)
    assert done.returncode == 0, done.stderr
    return folder


class Attacker:
    """A hostile peer in its own ZeroMQ context, with a monitor on its connection."""

    def __init__(self, kind, address, curve_server_key=None):
        self.context = zmq.Context()
        self.sock = self.context.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve_server_key is not None:  # a CURVE client with a key pair the graph never saw
            self.sock.curve_publickey, self.sock.curve_secretkey = zmq.curve_keypair()
            self.sock.curve_serverkey = curve_server_key
        self.monitor = self.sock.get_monitor_socket()
        self.sock.connect(address)

    def events(self) -> set:
        events = set()
        while self.monitor.poll(0):
            events.add(parse_monitor_message(self.monitor.recv_multipart())["event"])
        return events

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(0)
        self.sock.close(0)
        self.context.term()


def inject(attacker: Attacker) -> None:
    """What a hostile peer sends: a packet header for link 0 plus a frame, and garbage."""
    header = zmq.utils.jsonapi.dumps({"k": "d", "e": 0})
    for _ in range(20):
        try:
            attacker.sock.send_multipart([header, b"\0" * 1000], zmq.NOBLOCK)
            attacker.sock.send(b"\x93garbage", zmq.NOBLOCK)
        except zmq.Again:
            pass
        time.sleep(0.02)


def test_keys_command_writes_a_pair_and_never_overwrites_it(tmp_path):
    make_keys(tmp_path / "keys", "edge", "gpu")
    public, secret = zmq.auth.load_certificate(str(tmp_path / "keys/private/gpu.key_secret"))
    assert zmq.auth.load_certificate(str(tmp_path / "keys/public/gpu.key"))[0] == public and secret
    assert (tmp_path / "keys/private").stat().st_mode & 0o077 == 0  # secrets readable by the owner only
    again = run_cli("keys", tmp_path / "keys", "gpu")
    assert again.returncode == 2 and "keys for 'gpu' already exist" in again.stderr
    assert zmq.auth.load_certificate(str(tmp_path / "keys/public/gpu.key"))[0] == public


def test_curve_links_carry_every_frame_between_machines_with_a_key_pair_each(tmp_path):
    keys = make_keys(tmp_path / "keys", "edge", "gpu", "sink")
    graph = spread_graph(tmp_path, 47620, count=200, extra=f"security: {{curve: {keys}}}\n")
    hosts = write_hosts(tmp_path / "hosts.yaml", LOOPBACK)
    runs = [MachineRun(tmp_path, graph, m, hosts) for m in ("sink", "gpu", "edge")]
    assert [r.wait() for r in runs] == [0, 0, 0], "\n".join(r.output for r in runs)
    records = read_records(tmp_path / "sink.jsonl")
    assert [r["seq"] for r in records] == list(range(200)) and all(r["stamp_ok"] for r in records)


def test_a_machine_without_its_secret_key_is_refused_before_starting(tmp_path):
    keys = make_keys(tmp_path / "keys", "edge")  # no graph-wide pair and none for gpu
    graph = spread_graph(tmp_path, 47640, extra=f"security: {{curve: {keys}}}\n")
    done = run_cli(graph, "--machine", "gpu", "--hosts", write_hosts(tmp_path / "hosts.yaml", LOOPBACK))
    assert done.returncode == 2
    assert f"field 'security': no secret key for machine 'gpu' in {keys}/private" in done.stderr


def _run_while_attacked(tmp_path, port, keys, attack):
    """Run the spread graph (slowly) on three machines while `attack()` runs; return the
    sink's records, hop1's metrics and what the attack returned."""
    extra = f"security: {{curve: {keys}}}\n" if keys else ""
    graph = spread_graph(tmp_path, port, count=150, fps=50, extra=extra)
    hosts = write_hosts(tmp_path / "hosts.yaml", LOOPBACK)
    runs = [MachineRun(tmp_path, graph, m, hosts) for m in ("sink", "gpu", "edge")]
    try:
        wait_for_lines(tmp_path / "sink.jsonl", 10, runs)
        result = attack()
        assert [r.wait() for r in runs] == [0, 0, 0], "\n".join(r.output for r in runs)
    finally:
        for r in runs:
            r.kill()
    return read_records(tmp_path / "sink.jsonl"), runs[1].metrics["nodes"]["hop1"], result


def test_a_peer_without_the_keys_can_inject_nothing(tmp_path):
    keys = make_keys(tmp_path / "keys")
    server_key = zmq.auth.load_certificate(str(keys / "public/graph.key"))[0]
    address = f"tcp://127.0.0.2:{47660 + HOP1_INBOX}"

    def attack():
        plain = Attacker(zmq.PUSH, address)
        curve = Attacker(zmq.PUSH, address, curve_server_key=server_key)
        inject(plain)
        inject(curve)
        time.sleep(0.5)
        events = (plain.events(), curve.events())
        plain.close()
        curve.close()
        return events

    records, hop1, (plain_events, curve_events) = _run_while_attacked(tmp_path, 47660, keys, attack)
    assert [r["seq"] for r in records] == list(range(150)) and all(r["stamp_ok"] for r in records)
    assert hop1["bad_messages"] == 0  # nothing the attacker sent ever reached the node
    assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in plain_events | curve_events
    assert zmq.EVENT_HANDSHAKE_FAILED_AUTH in curve_events  # its key was refused by the node's authenticator


def test_without_keys_the_same_injection_does_reach_the_node(tmp_path):
    """The control for the test above: on plain tcp the garbage arrives (and is counted and dropped)."""
    address = f"tcp://127.0.0.2:{47680 + HOP1_INBOX}"

    def attack():
        plain = Attacker(zmq.PUSH, address)
        inject(plain)
        time.sleep(0.3)
        plain.close()

    records, hop1, _ = _run_while_attacked(tmp_path, 47680, None, attack)
    assert [r["seq"] for r in records] == list(range(150))
    assert hop1["bad_messages"] >= 20


def _impostor_receives(tmp_path, port, keys) -> tuple[list, dict]:
    """An impostor holds the sink machine's address before the real sink starts: what does
    it get from the gpu machine in 3 s?"""
    extra = f"security: {{curve: {keys}}}\n" if keys else ""
    graph = spread_graph(tmp_path, port, count=100, extra=extra)
    hosts = write_hosts(tmp_path / "hosts.yaml", LOOPBACK)
    impostor = zmq.Context.instance().socket(zmq.PULL)
    impostor.setsockopt(zmq.LINGER, 0)
    if keys:  # a CURVE server, with a key pair of its own
        impostor.curve_publickey, impostor.curve_secretkey = zmq.curve_keypair()
        impostor.curve_server = True
    impostor.bind(f"tcp://127.0.0.3:{port + SINK_INBOX}")
    runs = [MachineRun(tmp_path, graph, m, hosts) for m in ("gpu", "edge")]
    received = []
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            if impostor.poll(100):
                received.append(impostor.recv_multipart())
        gpu_peers = {}
        time.sleep(1.2)  # one more metrics report reaches the gpu runner
    finally:
        for r in runs:
            r.kill()
        impostor.close(0)
    for line in runs[0].output.splitlines():
        if line.startswith("peer: hop2 -> sink: sink.0: "):
            gpu_peers["sink"] = line.rsplit(": ", 1)[1]
    return received, gpu_peers


def test_a_peer_without_the_keys_gets_nothing(tmp_path):
    received, peers = _impostor_receives(tmp_path, 47700, make_keys(tmp_path / "keys"))
    assert received == []
    assert peers.get("sink") != "connected"


def test_without_keys_an_impostor_does_get_packets(tmp_path):
    """The control: on plain tcp whoever holds the address hears the graph."""
    received, _ = _impostor_receives(tmp_path, 47720, None)
    assert received  # at least the announce of hop2
