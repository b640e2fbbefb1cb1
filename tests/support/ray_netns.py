"""A real local Ray cluster for tests: a head and two workers, each in its own network
namespace (ThreeHosts), every Ray process bound to its namespace's address, token auth on.

    with RayCluster(hosts, resources={"head": {...}, "w1": {...}}) as cluster:
        cluster.address          # "ray://10.x.y.1:10001" (Ray Client on the head)
        cluster.env              # RAY_AUTH_MODE=token and the run's token, for a driver
        cluster.kill_raylet("w1")

Every Ray process runs inside a namespace with `--block`, so stopping the `ray start`
processes and then killing what is left in each namespace (ThreeHosts does, by pid) stops
them all; nothing outside the namespaces is touched (no `ray stop`, which goes by name).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
GCS_PORT = 6379
CLIENT_PORT = 10001


class RayCluster:
    def __init__(self, hosts, head: str, resources: dict[str, dict], cpus: int = 1):
        self.hosts, self.head = hosts, head
        self.resources, self.cpus = resources, cpus
        self.token = secrets.token_hex(32)
        self.tmp = Path(tempfile.mkdtemp(prefix="pgray"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    @property
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0")
        return env

    @property
    def address(self) -> str:
        return f"ray://{self.hosts[self.head].addr}:{CLIENT_PORT}"

    @property
    def gcs(self) -> str:
        return f"{self.hosts[self.head].addr}:{GCS_PORT}"

    def _start(self, name: str, head: bool) -> None:
        host = self.hosts[name]
        argv = [RAY, "start", "--block", "--disable-usage-stats", f"--node-ip-address={host.addr}",
                f"--num-cpus={self.cpus}", "--num-gpus=0", "--object-store-memory=80000000",
                f"--resources={json.dumps(self.resources.get(name, {}))}", f"--temp-dir={self.tmp / name}"]
        if head:
            argv += ["--head", f"--port={GCS_PORT}", "--include-dashboard=false", f"--ray-client-server-port={CLIENT_PORT}"]
        else:
            argv += [f"--address={self.gcs}"]
        self.logs[name] = self.tmp / f"{name}.log"
        with open(self.logs[name], "w") as log:
            self.procs[name] = host.popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def __enter__(self) -> "RayCluster":
        self._start(self.head, head=True)
        self._wait_nodes(1, 90)
        for name in self.hosts.names:
            if name != self.head:
                self._start(name, head=False)
        self._wait_nodes(len(self.hosts.names), 90)
        return self

    def alive_nodes(self) -> int:
        """Nodes the GCS counts as alive, asked from inside the head's namespace."""
        code = ("import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
                "print(sum(n['Alive'] for n in ray.nodes()))")
        done = self.hosts[self.head].run([sys.executable, "-c", code, self.gcs], capture_output=True, text=True,
                                         env=self.env, timeout=60)
        try:
            return int(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return 0

    def _wait_nodes(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"ray on {name} exited: {self.logs[name].read_text()[-2000:]}")
            if self.alive_nodes() >= count:
                return
            time.sleep(1.0)
        raise RuntimeError(f"fewer than {count} Ray nodes alive after {timeout} s")

    def pids(self, name: str, pattern: str) -> list[int]:
        """Pids in `name`'s namespace whose command line holds `pattern`."""
        done = subprocess.run(["ip", "netns", "pids", self.hosts[name].netns], capture_output=True, text=True, timeout=10)
        found = []
        for pid in done.stdout.split():
            with contextlib.suppress(OSError):
                if pattern in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(pid))
        return found

    def kill_raylet(self, name: str) -> list[int]:
        """SIGKILL the raylet of host `name` (and its `ray start`): the Ray node is lost."""
        pids = self.pids(name, "raylet/raylet") + [self.procs[name].pid]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        for name in self.procs:  # what is left in the namespaces, by pid (ThreeHosts does it again)
            for pid in self.pids(name, ""):
                if pid != os.getpid():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __exit__(self, *exc):
        self.close()
        return False
