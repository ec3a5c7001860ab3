"""Leader election among the simulated masters: in-process, or through a real ZooKeeper.

Owns `LocalElection` and `ZkElection`, both with `start/join/leave/stop`. Joining gives the
master a fresh identity (a restarted master has a new id); the election then tells every master
who leads by calling `Master.observe_leader(master_info | None)`. With ZooKeeper each master
holds its own session and an ephemeral sequential `json.info_` node carrying its MasterInfo
JSON; the lowest sequence number leads, as in Mesos. kazoo is blocking and threaded: its calls
run in worker threads and its watch callbacks hop back onto the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from scale_scheduler.simulator.config import parse_zk_url

if TYPE_CHECKING:
    from kazoo.client import KazooClient

log = structlog.get_logger(__name__)


class Contender(Protocol):
    """A master process as the election sees it (`master.Master` is one)."""

    @property
    def index(self) -> int: ...

    @property
    def leading(self) -> bool: ...

    def new_identity(self) -> dict[str, Any]:
        """A fresh id for a (re)joining master; returns its MasterInfo."""
        ...

    def observe_leader(self, leader: dict[str, Any] | None) -> None: ...


ZK_NODE_PREFIX = "json.info_"


class LocalElection:
    """First come leads; leaving moves a master out of the queue."""

    def __init__(self, masters: Sequence[Contender]) -> None:
        self._masters = masters
        self._queue: list[tuple[Contender, dict[str, Any]]] = []

    async def start(self) -> None:
        return None

    async def join(self, master: Contender) -> None:
        if any(m is master for m, _ in self._queue):
            return
        self._queue.append((master, master.new_identity()))
        self._notify()

    async def leave(self, master: Contender) -> None:
        self._queue = [(m, i) for m, i in self._queue if m is not master]
        self._notify()

    def joined(self, master: Contender) -> bool:
        return any(m is master for m, _ in self._queue)

    async def stop(self) -> None:
        self._queue.clear()

    def _notify(self) -> None:
        leader = self._queue[0][1] if self._queue else None
        # Demote first so that at no moment two masters lead.
        for master in sorted(self._masters, key=lambda m: not m.leading):
            master.observe_leader(leader)


class ZkElection:
    """Mesos's ZooKeeper contender and detector, one ZooKeeper session per master."""

    def __init__(
        self, url: str, masters: Sequence[Contender], session_timeout: float = 10.0
    ) -> None:
        self.hosts, self.path = parse_zk_url(url)
        self._masters = masters
        self._timeout = session_timeout
        self._clients: dict[int, KazooClient] = {}
        self._nodes: dict[int, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        from kazoo.client import KazooClient
        from kazoo.recipe.watchers import ChildrenWatch

        self._loop = asyncio.get_running_loop()
        for master in self._masters:
            client = KazooClient(hosts=self.hosts, timeout=self._timeout)
            self._clients[master.index] = client
            await asyncio.to_thread(client.start, self._timeout)
            await asyncio.to_thread(client.ensure_path, self.path)

            def on_children(children: list[str], m: Contender = master, c: Any = client) -> None:
                self._children_changed(m, c, children)

            await asyncio.to_thread(ChildrenWatch, client, self.path, on_children)

    def joined(self, master: Contender) -> bool:
        return master.index in self._nodes

    async def join(self, master: Contender) -> None:
        if master.index in self._nodes:
            return
        info = master.new_identity()
        client = self._clients[master.index]
        node = await asyncio.to_thread(
            client.create,
            f"{self.path}/{ZK_NODE_PREFIX}",
            json.dumps(info).encode(),
            ephemeral=True,
            sequence=True,
        )
        self._nodes[master.index] = node
        log.info("sim_zk_contending", master=master.index, node=node)

    async def leave(self, master: Contender) -> None:
        node = self._nodes.pop(master.index, None)
        if node is None:
            return
        from kazoo.exceptions import NoNodeError

        with contextlib.suppress(NoNodeError):
            await asyncio.to_thread(self._clients[master.index].delete, node)

    async def stop(self) -> None:
        for client in self._clients.values():
            await asyncio.to_thread(client.stop)
            await asyncio.to_thread(client.close)
        self._clients.clear()
        self._nodes.clear()

    def _children_changed(self, master: Contender, client: Any, children: list[str]) -> None:
        """Runs on a kazoo thread: read the lowest node's MasterInfo, hand it to the loop."""
        from kazoo.exceptions import KazooException

        leader: dict[str, Any] | None = None
        nodes = [c for c in children if "info_" in c]
        if nodes:
            lowest = min(nodes, key=lambda c: int(c.rsplit("_", 1)[1]))
            try:
                data, _ = client.get(f"{self.path}/{lowest}")
                leader = json.loads(data)
            except (KazooException, ValueError):
                log.warning("sim_zk_leader_unreadable", node=lowest)
                return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(master.observe_leader, leader)
