"""A real local Redis Cluster for development and tests: three `redis-server` masters with
`cluster-enabled yes`, the 16384 slots split evenly between them, ready once every node says
`cluster_state:ok`.

It exists so that the sale data's one-slot-per-sale promise (`{sale:<id>}` in every key, every
script on one slot) is exercised against the engine that enforces it, not assumed. No
replicas: a shard that dies comes back from its own AOF (the test of that restarts it).
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from common.development.embedded import redis_server_binary
from common.development.ports import free_port, wait_for_port

SLOTS = 16384


def node_command(port: int, bus_port: int, data_dir: Path, appendfsync: str = "everysec") -> list[str]:
    """argv of one cluster node. The bus port is chosen explicitly (`cluster-port`): the
    default, port + 10000, may be taken or past 65535 for a random free port."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
        "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
        "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "3000",
        # A test may stop one shard: the others keep answering for their own slots.
        "--cluster-require-full-coverage", "no",
        "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", appendfsync,
        "--save", "", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
    ]


def slot_ranges(nodes: int) -> list[tuple[int, int]]:
    """Contiguous, even slot ranges, node i owning range i (deterministic, so a node restarted
    on its data dir owns the slots its AOF holds keys of)."""
    step = SLOTS // nodes
    return [(i * step, SLOTS - 1 if i == nodes - 1 else (i + 1) * step - 1) for i in range(nodes)]


@dataclass
class ClusterNode:
    port: int
    bus_port: int
    data_dir: Path
    appendfsync: str = "everysec"
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                           socket_connect_timeout=2, socket_timeout=5)

    def start(self) -> None:
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                node_command(self.port, self.bus_port, self.data_dir, self.appendfsync),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if not isinstance(out, int):  # DEVNULL is a constant, not a file
                out.close()  # the node writes through its own copy of the descriptor
        if not wait_for_port("127.0.0.1", self.port, timeout=30):
            raise RuntimeError(f"cluster node {self.address} did not start")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@dataclass
class LocalCluster:
    """Three (or `size`) masters on free ports under `root`; `start()` forms the cluster."""

    root: Path
    size: int = 3
    appendfsync: str = "everysec"
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def nodes_setting(self) -> str:
        """The value of REDIS_CLUSTER_NODES for this cluster."""
        return ",".join(node.address for node in self.nodes)

    def start(self, timeout: float = 30) -> LocalCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        for index in range(self.size):
            data_dir = self.root / f"node-{index}"
            # Ports are new each start: the old nodes.conf would name peers that are gone.
            (data_dir / "nodes.conf").unlink(missing_ok=True)
            node = ClusterNode(free_port(), free_port(), data_dir, self.appendfsync,
                               self.root / f"node-{index}.log")
            self.nodes.append(node)
        try:
            for node in self.nodes:
                node.start()
            self._form(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self, timeout: float) -> None:
        first = self.nodes[0].client()
        for node, (low, high) in zip(self.nodes, slot_ranges(self.size), strict=True):
            with node.client() as client:
                try:
                    client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
                except redis.ResponseError:
                    # A node restarted on old data claims the slots its AOF has keys in: add
                    # the rest one by one.
                    pipe = client.pipeline(transaction=False)
                    for slot in range(low, high + 1):
                        pipe.execute_command("CLUSTER", "ADDSLOTS", slot)
                    pipe.execute(raise_on_error=False)
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        first.close()
        self.wait_ok(timeout)

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every node reports `cluster_state:ok` and knows every other node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._node_ok(node) for node in self.nodes):
                return
            time.sleep(0.1)
        raise RuntimeError(f"cluster {self.nodes_setting} did not reach cluster_state:ok")

    def _node_ok(self, node: ClusterNode) -> bool:
        try:
            with node.client() as client:
                info = client.execute_command("CLUSTER", "INFO")
                known = len(client.execute_command("CLUSTER", "NODES"))
        except redis.RedisError:
            return False
        text = info if isinstance(info, str) else str(info)
        return "cluster_state:ok" in text and known >= self.size

    def restart(self, node: ClusterNode, sig: int = signal.SIGKILL, timeout: float = 30) -> None:
        """Kill one shard and start it again on its own data dir (AOF and nodes.conf)."""
        node.stop(sig)
        node.start()
        self.wait_ok(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
