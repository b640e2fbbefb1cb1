"""Fake machines for multi-host tests: Linux network namespaces joined by a bridge.

Why: the ZeroMQ pipeline must work across machines (real addresses, no shared
loopback), and namespaces give that on one box in well under a second.

    with ThreeHosts(names=("edge", "gpu", "sink")) as hosts:
        hosts["gpu"].addr                     # "10.x.y.2"
        hosts["gpu"].popen([sys.executable, "-c", "..."])
        hosts.inventory()                     # {"edge": "10.x.y.1", ...}

Test modules use the fixture with `from netns import three_hosts` (tests/conftest.py puts
tests/support on sys.path).

Layout: one bridge `pg<hex>br` in the root namespace (address .254 unless
bridge_addr=False, so the root namespace can reach the hosts too); per host a
namespace `pg<hex>-<name>` holding `eth0` (a veth whose peer `pg<hex>h<i>` sits
on the bridge) with 10.a.b.<i+1>/24, plus loopback up.

Every run writes a record in /run/posegraph-netns/ *before* it creates anything,
so a later run can tell leftovers of a crashed (SIGKILLed) run from those of a
run still alive, and never touches names it did not create. /run is tmpfs, so
records vanish with the namespaces on reboot.

Note: with br_netfilter loaded and bridge-nf-call-iptables=1, a host firewall
that drops FORWARD traffic would also drop traffic between the hosts; the
reachability test shows this at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

STATE_DIR = Path("/run/posegraph-netns")
IP_TIMEOUT = 10  # s per `ip` call: nothing here may hang a test run
_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip() or done.returncode}")
    return done


@functools.cache
def netns_unavailable_reason() -> str | None:
    """None if namespaces, veths and bridges can be made here, else a one-line reason to skip."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` (iproute2) on PATH"
    token = secrets.token_hex(3)
    ns, br = f"pgprobe{token}", f"pg{token}pb"
    try:
        for args in (("netns", "add", ns), ("link", "add", br, "type", "bridge")):
            done = _ip(*args, check=False)
            if done.returncode != 0:
                return f"`ip {' '.join(args[:2])}` fails here: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip` unusable: {exc}"
    finally:
        with contextlib.suppress(Exception):
            _ip("link", "del", br, check=False)
            _ip("netns", "del", ns, check=False)
    return None


class Host:
    """One fake machine: a namespace name and its address; runs commands inside it."""

    def __init__(self, name: str, netns: str, addr: str, iface: str):
        self.name, self.netns, self.addr, self.iface = name, netns, addr, iface
        self._procs: list[subprocess.Popen] = []

    def _argv(self, argv) -> list[str]:
        argv = [argv] if isinstance(argv, (str, os.PathLike)) else list(argv)
        return ["ip", "netns", "exec", self.netns, *map(os.fspath, argv)]

    def popen(self, argv, **kw) -> subprocess.Popen:
        """subprocess.Popen inside the namespace (`ip netns exec` execs, so .pid is the program)."""
        proc = subprocess.Popen(self._argv(argv), **kw)
        self._procs.append(proc)
        return proc

    def run(self, argv, **kw) -> subprocess.CompletedProcess:
        """subprocess.run inside the namespace; pass timeout= so nothing can hang."""
        return subprocess.run(self._argv(argv), **kw)

    def __repr__(self):
        return f"Host({self.name!r}, netns={self.netns!r}, addr={self.addr!r})"


# ---- records of runs, for cleanup of crashed runs ---------------------------------------------

def _start_time(pid: int) -> str | None:
    """Process start time (field 22 of /proc/pid/stat), so a reused pid is not taken for the owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_alive(record: dict) -> bool:
    return _start_time(record.get("pid", -1)) == record.get("start")


def _records() -> list[tuple[Path, dict]]:
    found = []
    for path in STATE_DIR.glob("pg*.json"):
        try:
            found.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    return found


def _kill_netns_pids(netns: str, grace: float = 1.0) -> None:
    """TERM, then KILL, every process still in the namespace (servers a test forgot)."""
    def pids():
        done = _ip("netns", "pids", netns, check=False)
        return [int(p) for p in done.stdout.split() if p.isdigit() and int(p) != os.getpid()]

    sig, deadline = signal.SIGTERM, time.monotonic() + grace
    while (left := pids()):
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        if time.monotonic() > deadline:
            if sig == signal.SIGKILL:
                break
            sig, deadline = signal.SIGKILL, time.monotonic() + grace
        time.sleep(0.02)


def _remove(namespaces, bridge, veths) -> list[str]:
    """Best-effort teardown; returns what failed instead of raising.

    Veths go first and explicitly: a namespace's own links are destroyed asynchronously by the
    kernel after `ip netns del`, so relying on that would leave peers around for a moment."""
    errors = []
    existing = set(_ip("netns", "list", check=False).stdout.split())
    for ns in namespaces:
        if ns in existing:
            _kill_netns_pids(ns)
    for link in (*veths, bridge):
        if link and _ip("link", "show", link, check=False).returncode == 0:
            done = _ip("link", "del", link, check=False)
            if done.returncode != 0 and "Cannot find device" not in done.stderr:
                errors.append(f"link {link}: {done.stderr.strip()}")
    for ns in namespaces:
        if ns in existing:
            done = _ip("netns", "del", ns, check=False)
            if done.returncode != 0 and "No such file" not in done.stderr:
                errors.append(f"netns {ns}: {done.stderr.strip()}")
    return errors


def cleanup_stale() -> list[str]:
    """Remove what crashed runs left (their recorded owner is dead). Returns the namespaces removed.

    Only names listed in our own records are touched, never other `pg*` names."""
    removed = []
    for path, record in _records():
        if _owner_alive(record):
            continue
        if not _remove(record.get("namespaces", []), record.get("bridge", ""), record.get("veths", [])):
            path.unlink(missing_ok=True)
            removed += record.get("namespaces", [])
    return removed


@contextlib.contextmanager
def _state_lock():
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Subnets in use: root-namespace addresses and routes, plus those reserved by live runs."""
    nets = []
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        m = re.search(r"inet (\S+)", line)
        if m:
            nets.append(ipaddress.ip_interface(m.group(1)).network)
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("broadcast", "local", "unicast"):
            first = line.split()[1]
        with contextlib.suppress(ValueError):
            if first != "default":
                nets.append(ipaddress.ip_network(first, strict=False))
    for _, record in _records():
        with contextlib.suppress(ValueError, TypeError):
            nets.append(ipaddress.ip_network(record["subnet"]))
    return nets


def _pick_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free 10.200-250.x.0/24 subnet found")


# ---- the harness --------------------------------------------------------------------------------

class ThreeHosts:
    """Context manager making one namespace per name on a shared bridge; always torn down on exit."""

    def __init__(self, names=("edge", "gpu", "sink"), bridge_addr: bool = True):
        names = tuple(names)
        if not names or len(set(names)) != len(names) or len(names) > 200:
            raise ValueError(f"need 1-200 distinct host names, got {names!r}")
        for name in names:
            if not _NAME_OK.match(name):
                raise ValueError(f"host name {name!r}: use [a-z0-9_-], at most 32 chars")
        self.names, self.bridge_addr = names, bridge_addr
        self.token = self.bridge = self.subnet = None
        self.hosts: dict[str, Host] = {}
        self._record_path: Path | None = None

    # -- public API
    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __iter__(self):
        return iter(self.hosts.values())

    def inventory(self) -> dict[str, str]:
        """name -> address, e.g. for writing a hosts.yaml."""
        return {name: host.addr for name, host in self.hosts.items()}

    @property
    def root_addr(self) -> str | None:
        """The bridge's address (.254): how the root namespace is seen by the hosts, or None."""
        return str(self.subnet[254]) if self.bridge_addr and self.subnet else None

    # -- lifecycle
    def __enter__(self) -> "ThreeHosts":
        reason = netns_unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        with _state_lock():
            cleanup_stale()
            self.subnet = _pick_subnet()
            self.token = secrets.token_hex(3)
            self.bridge = f"pg{self.token}br"
            for i, name in enumerate(self.names):
                self.hosts[name] = Host(name, f"pg{self.token}-{name}", str(self.subnet[i + 1]), f"pg{self.token}h{i}")
            # the record comes first, so a crash at any later point leaves nothing unaccounted for
            self._record_path = STATE_DIR / f"pg{self.token}.json"
            self._record_path.write_text(json.dumps({
                "pid": os.getpid(), "start": _start_time(os.getpid()), "subnet": str(self.subnet),
                "bridge": self.bridge, "namespaces": [h.netns for h in self.hosts.values()],
                "veths": [h.iface for h in self.hosts.values()]}))
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        if self.bridge_addr:
            _ip("addr", "add", f"{self.subnet[254]}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, host in enumerate(self.hosts.values()):
            peer = f"pg{self.token}n{i}"
            _ip("netns", "add", host.netns)
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("link", "add", host.iface, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", host.netns)
            _ip("-n", host.netns, "link", "set", peer, "name", "eth0")
            _ip("-n", host.netns, "addr", "add", f"{host.addr}/{self.subnet.prefixlen}", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("link", "set", host.iface, "master", self.bridge, "up")

    def close(self) -> None:
        """Kill what runs in the namespaces, remove namespaces, veths and bridge; idempotent."""
        if self._record_path is None:
            return
        for host in self.hosts.values():
            for proc in host._procs:  # our own children: kill and reap, no zombies or warnings
                if proc.poll() is None:
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)
        errors = _remove([h.netns for h in self.hosts.values()], self.bridge, [h.iface for h in self.hosts.values()])
        if errors:  # keep the record: the next run retries once this process is gone
            raise RuntimeError("netns teardown incomplete: " + "; ".join(errors))
        self._record_path.unlink(missing_ok=True)
        self._record_path = None

    def __exit__(self, exc_type, exc, tb):
        try:
            self.close()
        except Exception:
            if exc_type is None:
                raise  # a teardown failure must not hide the body's own exception
        return False


@pytest.fixture
def three_hosts():
    """ThreeHosts("edge", "gpu", "sink") for one test; skips where namespaces cannot be made."""
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with ThreeHosts() as hosts:
        yield hosts
