"""The namespace harness itself: real addresses work, loopbacks are separate, nothing is left behind."""
import json
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import zmq

from netns import ThreeHosts, netns_unavailable_reason, three_hosts  # noqa: F401  (fixture)

SUPPORT = Path(__file__).resolve().parents[1] / "support"
PORT = 5599  # every namespace is fresh, so a fixed port cannot clash


@pytest.fixture(autouse=True)
def _needs_netns():
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)


def _netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True, timeout=10).returncode == 0


PULL = textwrap.dedent("""
    import json, sys, zmq
    sock = zmq.Context().socket(zmq.PULL)
    sock.setsockopt(zmq.RCVTIMEO, 8000)
    sock.bind(f"tcp://{sys.argv[1]}:{sys.argv[2]}")
    print("ready", flush=True)
    got = [sock.recv().decode() for _ in range(int(sys.argv[3]))]
    print(json.dumps(sorted(got)), flush=True)
""")

PUSH = textwrap.dedent("""
    import sys, zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 8000)
    sock.setsockopt(zmq.SNDTIMEO, 8000)
    sock.connect(sys.argv[1])
    sock.send(sys.argv[2].encode())
    sock.close()
    ctx.term()  # waits (up to LINGER) until the message is really out
""")


def test_three_hosts_reach_each_other_over_tcp(three_hosts):
    """edge and sink push to gpu's real address over ZeroMQ; the root namespace can too (via the bridge)."""
    gpu = three_hosts["gpu"]
    assert three_hosts.inventory() == {name: three_hosts[name].addr for name in ("edge", "gpu", "sink")}
    assert gpu.addr.endswith(".2") and three_hosts.root_addr.endswith(".254")
    server = gpu.popen([sys.executable, "-c", PULL, gpu.addr, str(PORT), "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready", server.stderr.read() if server.poll() is not None else ""
    endpoint = f"tcp://{gpu.addr}:{PORT}"
    for name in ("edge", "sink"):
        done = three_hosts[name].run([sys.executable, "-c", PUSH, endpoint, f"from-{name}"], capture_output=True, text=True, timeout=15)
        assert done.returncode == 0, done.stderr
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 8000)
        sock.connect(endpoint)
        sock.send(b"from-root")
        sock.close()
    finally:
        ctx.term()
    out, err = server.communicate(timeout=15)
    assert server.returncode == 0, err
    assert json.loads(out) == ["from-edge", "from-root", "from-sink"]


def test_namespaces_are_removed_after_use():
    """Teardown removes namespaces, veths and bridge and kills leftover processes, also when the body raised."""
    for fail in (False, True):
        with pytest.raises(RuntimeError, match="body failed") if fail else _nothing():
            with ThreeHosts() as hosts:
                names = [h.netns for h in hosts]
                links = [h.iface for h in hosts] + [hosts.bridge]
                assert set(names) <= _netns_list() and all(map(_link_exists, links))
                sleeper = hosts["sink"].popen(["sleep", "60"])
                # a process we did not start ourselves (no Popen handle): found via `ip netns pids`
                subprocess.run(["ip", "netns", "exec", hosts["edge"].netns, "sh", "-c", "sleep 60 >/dev/null 2>&1 &"], timeout=10, check=True)
                if fail:
                    raise RuntimeError("body failed")
        assert not set(names) & _netns_list()
        assert not any(map(_link_exists, links))
        assert sleeper.poll() == -signal.SIGKILL
        assert hosts._record_path is None


def test_a_host_cannot_reach_loopback_of_another(three_hosts):
    """A server on gpu's 127.0.0.1 answers inside gpu only: each host has its own loopback."""
    server_code = textwrap.dedent("""
        import socket, sys
        s = socket.create_server(("127.0.0.1", int(sys.argv[1])))
        print("ready", flush=True)
        s.settimeout(8)
        conn, _ = s.accept()
        conn.sendall(b"hello")
        conn.close()
    """)
    client_code = textwrap.dedent("""
        import socket, sys
        try:
            with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3) as c:
                print(c.recv(5).decode())
        except ConnectionRefusedError:
            print("refused")
    """)
    server = three_hosts["gpu"].popen([sys.executable, "-c", server_code, str(PORT)], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"

    for name in ("edge", "sink"):
        done = three_hosts[name].run([sys.executable, "-c", client_code, str(PORT)], capture_output=True, text=True, timeout=10)
        assert done.stdout.strip() == "refused", (name, done.stdout, done.stderr)
    with pytest.raises(ConnectionRefusedError):  # nor is it the root namespace's loopback
        socket.create_connection(("127.0.0.1", PORT), timeout=3).close()

    done = three_hosts["gpu"].run([sys.executable, "-c", client_code, str(PORT)], capture_output=True, text=True, timeout=10)
    assert done.stdout.strip() == "hello"  # control: it is reachable where it lives
    server.wait(timeout=10)


def test_leftovers_of_a_killed_run_are_cleaned_by_the_next():
    """A run killed with SIGKILL cannot tear down; the next ThreeHosts removes its namespaces."""
    code = textwrap.dedent("""
        import json, sys, time
        sys.path.insert(0, sys.argv[1])
        from netns import ThreeHosts
        hosts = ThreeHosts().__enter__()
        print(json.dumps([[h.netns for h in hosts], hosts.bridge]), flush=True)
        time.sleep(60)
    """)
    crashed = subprocess.Popen([sys.executable, "-c", code, str(SUPPORT)], stdout=subprocess.PIPE, text=True)
    try:
        names, bridge = json.loads(crashed.stdout.readline())
    finally:
        crashed.kill()
        crashed.wait(timeout=10)
    assert set(names) <= _netns_list() and _link_exists(bridge)
    with ThreeHosts():
        pass
    assert not set(names) & _netns_list()
    assert not _link_exists(bridge)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
