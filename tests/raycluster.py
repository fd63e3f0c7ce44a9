"""A real Ray cluster of several nodes on this machine, over loopback (tests and bench/).

Every node is a `ray start --block` of its own session, on ports of its own, so two clusters (two test runs
at once) never meet, a node can be killed alone (every process of its session), and stopping the cluster
leaves no Ray process behind. `ray stop` is never used: it would stop every cluster of the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
# argv: address, nodes, timeout; exit 0 once the head counts that many live nodes
_COUNT_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + float(sys.argv[3])
while (alive := sum(1 for n in ray.nodes() if n["Alive"])) != int(sys.argv[2]):
    if time.monotonic() > deadline:
        print(f"{alive} alive")
        sys.exit(1)
    time.sleep(0.5)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_processes(sid: int) -> list[int]:
    """The live processes of a session (zombies, already dead, left out)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.getsid(int(entry.name)) == sid and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


class Node:
    def __init__(self, process: subprocess.Popen, log: Path) -> None:
        self.process, self.log = process, log

    @property
    def processes(self) -> list[int]:
        return _session_processes(self.process.pid)

    def kill(self) -> None:
        """SIGKILL every process of the node at once, as a machine that loses power."""
        for _ in range(3):  # a worker forked while the first pass ran
            for pid in self.processes:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.2)
        self.process.wait(timeout=10)


class Cluster:
    def __init__(self, cpus_per_node: int = 1) -> None:
        # a short folder: Ray's socket paths must fit in 107 characters
        self.temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        self.cpus = cpus_per_node
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[Node] = []

    def _start(self, *args: str) -> Node:
        n = len(self.nodes)
        ports = {flag: str(_free_port()) for flag in (
            "--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
            "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")}
        # a worker port range of its own, below the ephemeral ports the other components were given
        low = 10002 + (os.getpid() * 401 + n * 401) % 22000
        log = self.temp / f"node{n}.log"
        command = [RAY, "start", "--block", "--num-cpus", str(self.cpus), "--node-ip-address", "127.0.0.1",
                   "--object-store-memory", str(200 * 2**20), "--disable-usage-stats",
                   "--min-worker-port", str(low), "--max-worker-port", str(low + 400),
                   *[x for pair in ports.items() for x in pair], *args]
        with open(log, "w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        node = Node(process, log)
        self.nodes.append(node)
        return node

    def start(self, nodes: int = 2, timeout: float = 120) -> Cluster:
        """Start the head and ``nodes - 1`` workers; a cluster that fails to come up is stopped, never left."""
        try:
            self._up(self._start("--head", "--port", str(self.port), "--include-dashboard=false",
                                 "--dashboard-port", str(_free_port()), "--temp-dir", str(self.temp)), timeout)
            for _ in range(nodes - 1):
                self._up(self._start("--address", self.address), timeout)
            self.wait_for(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self, timeout: float = 120) -> Node:
        node = self._up(self._start("--address", self.address), timeout)
        self.wait_for(timeout)
        return node

    def kill_node(self, node: Node, timeout: float = 120) -> None:
        """Kill the node and wait until the cluster has noticed."""
        node.kill()
        self.wait_for(timeout)

    def _up(self, node: Node, timeout: float) -> Node:
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in node.log.read_text():
            if node.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a Ray node did not start:\n{node.log.read_text()[-3000:]}")
            time.sleep(0.2)
        return node

    def wait_for(self, timeout: float) -> None:
        """Until the cluster's head counts exactly the nodes whose processes run (asked of the head itself, as a
        short-lived driver: `ray status` reports the autoscaler's view, which lags behind under load)."""
        running = sum(1 for n in self.nodes if n.process.poll() is None)
        out = subprocess.run([sys.executable, "-c", _COUNT_NODES, self.address, str(running), str(timeout)],
                             capture_output=True, text=True, timeout=timeout + 60)
        if out.returncode != 0:
            logs = "\n".join(n.log.read_text()[-3000:] for n in self.nodes)
            raise RuntimeError(f"the Ray cluster did not settle at {running} nodes ({out.stdout.strip()}):\n"
                               f"{out.stderr[-2000:]}\n{logs}")

    def stop(self) -> list[int]:
        """Kill every node; returns the processes of the cluster still alive after (none, when all is well)."""
        for node in self.nodes:
            if node.process.poll() is None:
                node.kill()
        deadline = time.monotonic() + 10
        while (left := [pid for node in self.nodes for pid in node.processes]) and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(self.temp, ignore_errors=True)
        return left
