"""The in-process simulated Mesos cluster: masters, shared agents, election, faults, record.

Owns `SimulatedCluster`, the public entry point (an async context manager). It starts one
aiohttp server per master, the election (in-process or ZooKeeper), the allocation loop and the
timer heap, and offers the fault and inspection methods tests use. All masters of one cluster
share one `AgentPool`, so tasks survive a master failover.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from aiohttp import web

from scale_scheduler.simulator import protocol
from scale_scheduler.simulator.agents import AGENT_HTTP_MODES, Agent, AgentPool, SimTask
from scale_scheduler.simulator.config import AgentSpec, SimConfig
from scale_scheduler.simulator.election import LocalElection, ZkElection
from scale_scheduler.simulator.fastcalls import CallSite
from scale_scheduler.simulator.faults import UNKNOWN_RESOURCES, CallFaults, CallRule, raw_payload
from scale_scheduler.simulator.master import Framework, Master
from scale_scheduler.simulator.record import ClusterRecord
from scale_scheduler.simulator.stream import Subscription
from scale_scheduler.simulator.timers import Timers

log = structlog.get_logger(__name__)


class SimulatedCluster:
    """A simulated Mesos cluster.

    ``async with SimulatedCluster(agents=3, heartbeat_interval=0.2) as sim: sim.url``

    Keyword arguments override fields of `SimConfig` (pass ``config=`` for a whole one).
    """

    def __init__(self, config: SimConfig | None = None, **overrides: Any) -> None:
        base = config or SimConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self.record = ClusterRecord()
        self.faults = CallFaults()
        # Latest FrameworkInfo per framework id: what agents would tell a new leader.
        self.framework_infos: dict[str, dict[str, Any]] = {}
        self.masters: list[Master] = []
        self._runners: list[web.AppRunner] = []
        self._agent_runner: web.AppRunner | None = None
        self._alloc_task: asyncio.Task[None] | None = None
        self._started = False
        self._ever_elected = False

    @property
    def runners(self) -> Sequence[web.AppRunner]:
        """The masters' aiohttp runners, in master order (tests count their connections)."""
        return tuple(self._runners)

    # lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> SimulatedCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        from scale_scheduler.simulator.agent_http import build_agent_app
        from scale_scheduler.simulator.http import build_app

        cfg = self.config
        self.rng = random.Random(cfg.seed)
        self.prefix = f"{self.rng.getrandbits(32):08x}-{self.rng.getrandbits(16):04x}"
        self.timers = Timers(asyncio.get_running_loop())
        self.pool = AgentPool(cfg, self.timers, self.rng, self.prefix)
        try:
            self._agent_runner = web.AppRunner(
                build_agent_app(self.pool, cfg), handler_cancellation=True, access_log=None
            )
            await self._agent_runner.setup()
            await web.TCPSite(self._agent_runner, cfg.host, cfg.agent_port).start()
            self.pool.agent_port = _bound_port(self._agent_runner)
            for _ in range(cfg.agents):
                self.pool.create_agent(cfg.agent)
            for index in range(cfg.masters):
                master = Master(self, index, cfg.host)
                runner = web.AppRunner(
                    build_app(master), handler_cancellation=True, access_log=None
                )
                await runner.setup()
                self._runners.append(runner)
                site = CallSite(runner, master, cfg.host, cfg.port + index if cfg.port else 0)
                await site.start()
                master.port = _bound_port(runner)
                self.masters.append(master)
            self.election: LocalElection | ZkElection = (
                ZkElection(cfg.zk, self.masters, cfg.zk_session_timeout)
                if cfg.zk
                else LocalElection(self.masters)
            )
            await self.election.start()
            for master in self.masters:
                await self.election.join(master)
            await self.wait_until(lambda: self.leader is not None, timeout=30)
            self._alloc_task = asyncio.create_task(self._allocation_loop())
            self._started = True
        except BaseException:
            await self.stop()
            raise
        log.info(
            "sim_cluster_started",
            masters=[m.url for m in self.masters],
            agents=cfg.agents,
            zk=cfg.zk,
        )

    async def stop(self) -> None:
        if self._alloc_task is not None:
            self._alloc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._alloc_task
            self._alloc_task = None
        for master in self.masters:
            for fw in master.frameworks.values():
                if fw.subscription is not None:
                    fw.subscription.close(abort=True)
        election = getattr(self, "election", None)
        if election is not None:
            await election.stop()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self._agent_runner is not None:
            await self._agent_runner.cleanup()
            self._agent_runner = None
        timers = getattr(self, "timers", None)
        if timers is not None:
            timers.close()
        self._started = False

    async def _allocation_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.allocation_interval)
            leader = self.leader
            if leader is not None:
                try:
                    leader.allocate()
                except Exception:
                    log.exception("sim_allocation_failed")

    def master_elected(self, master: Master, epoch: int) -> None:
        """Called by a master that just won: agents re-register with it (after a delay)."""
        for other in self.masters:
            if other is not master and other.leading:
                other.observe_leader(master.info())
        self.pool.detach_all()
        if not self._ever_elected:
            self._ever_elected = True
            master.register_agents_after_failover(epoch)
        else:
            self.timers.after(
                self.config.agent_reregister_delay, master.register_agents_after_failover, epoch
            )

    # inspection -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the first master (`http://127.0.0.1:PORT`)."""
        return self.masters[0].url

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.masters]

    @property
    def addresses(self) -> list[str]:
        """`host:port` of every master (pymesos's master URL format)."""
        return [f"{m.host}:{m.port}" for m in self.masters]

    @property
    def leader(self) -> Master | None:
        return next((m for m in self.masters if m.leading), None)

    @property
    def leader_url(self) -> str | None:
        leader = self.leader
        return leader.url if leader is not None else None

    @property
    def agents(self) -> list[Agent]:
        return list(self.pool.agents.values())

    def frameworks(self) -> list[Framework]:
        """Frameworks known to the leading master."""
        leader = self.leader
        return list(leader.frameworks.values()) if leader is not None else []

    def framework(self, framework_id: str | None = None) -> Framework | None:
        """One framework of the leader (the first one when no id is given)."""
        frameworks = self.frameworks()
        if framework_id is None:
            return frameworks[0] if frameworks else None
        return next((f for f in frameworks if f.id == framework_id), None)

    def tasks(self) -> list[SimTask]:
        """Every task running or not yet acknowledged as terminal, on any agent."""
        return [t for a in self.pool.agents.values() for t in a.tasks.values()]

    def task(self, task_id: str) -> SimTask | None:
        agents = self.pool.agents.values()
        return next((t for a in agents for t in a.tasks.values() if t.task_id == task_id), None)

    def offers(self) -> list[dict[str, Any]]:
        leader = self.leader
        if leader is None:
            return []
        return [leader.offer_json(o) for o in leader.offers.values()]

    def subscriptions(self, framework_id: str | None = None) -> list[Subscription]:
        return [
            fw.subscription
            for m in self.masters
            for fw in m.frameworks.values()
            if fw.subscription is not None and framework_id in (None, fw.id)
        ]

    async def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01
    ) -> None:
        """Poll `predicate` until true; raise `TimeoutError` after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(interval)

    def state(self) -> dict[str, Any]:
        """A JSON summary for `/sim/state`."""
        leader = self.leader
        return {
            "leader": leader.url if leader is not None else None,
            "masters": [
                {"url": m.url, "leading": m.leading, "master_id": m.master_id} for m in self.masters
            ],
            "agents": len(self.pool.agents),
            "tasks": sum(len(a.tasks) for a in self.pool.agents.values()),
            "frameworks": [
                {
                    "id": fw.id,
                    "connected": fw.connected,
                    "active": fw.active,
                    "tasks": len(fw.tasks),
                    "offers": len(fw.offers),
                }
                for fw in self.frameworks()
            ],
            "timers": len(self.timers),
        }

    # faults ---------------------------------------------------------------------------------

    def stop_heartbeats(self, framework_id: str | None = None) -> int:
        subs = self.subscriptions(framework_id)
        for sub in subs:
            sub.heartbeats = False
        return len(subs)

    def resume_heartbeats(self, framework_id: str | None = None) -> int:
        subs = self.subscriptions(framework_id)
        for sub in subs:
            sub.heartbeats = True
        return len(subs)

    def close_stream(self, framework_id: str | None = None, abort: bool = False) -> int:
        """End subscribers' streams: cleanly (chunked EOF), or with `abort` a dropped socket."""
        subs = self.subscriptions(framework_id)
        for sub in subs:
            sub.close(abort=abort)
        return len(subs)

    def hang_stream(self, framework_id: str | None = None, hung: bool = True) -> int:
        """Keep the connection open but write nothing (no events, no heartbeats)."""
        subs = self.subscriptions(framework_id)
        for sub in subs:
            sub.set_hung(hung)
        return len(subs)

    def delay_calls(
        self, seconds: float, call_type: str | None = None, count: int | None = None
    ) -> None:
        self.faults.add(CallRule(call_type, delay=seconds, remaining=count))

    def fail_calls(
        self,
        status: int = 500,
        call_type: str | None = None,
        count: int | None = None,
        message: str = "Simulated failure",
    ) -> None:
        self.faults.add(CallRule(call_type, status=status, message=message, remaining=count))

    def clear_call_faults(self) -> None:
        self.faults.clear()

    def rescind_offers(self, framework_id: str | None = None) -> int:
        leader = self.leader
        return leader.rescind_offers(framework_id) if leader is not None else 0

    def remove_agent(self, agent: str) -> bool:
        """Agent (id or hostname) becomes unreachable: FAILURE, TASK_LOST/UNREACHABLE."""
        found = self.pool.find(agent)
        if found is None:
            return False
        master = found.master
        tasks = self.pool.remove_agent(found)
        for m in self.masters:
            if m.leading or m is master:
                m.agent_removed(found, tasks)
        log.info("sim_agent_removed", agent_id=found.id, tasks=len(tasks))
        return True

    def mark_agent_gone(self, agent: str) -> int:
        """An operator marks a removed (unreachable) agent gone: its tasks end
        TASK_GONE_BY_OPERATOR (TASK_LOST without PARTITION_AWARE). How many tasks."""
        leader = self.leader
        return leader.agent_gone(agent) if leader is not None else 0

    def set_agent_http(self, agent: str, mode: str) -> bool:
        """How an agent's HTTP endpoint answers from now on (``Agent.http_mode``)."""
        if mode not in AGENT_HTTP_MODES:
            raise ValueError(f"unknown agent http mode {mode!r}")
        found = self.pool.find(agent)
        if found is None:
            return False
        found.http_mode = mode
        return True

    def add_agent(self, spec: AgentSpec | None = None, **overrides: Any) -> Agent:
        """A new agent registers with the leader (keyword args override `AgentSpec` fields)."""
        base = spec or self.config.agent
        agent = self.pool.create_agent(dataclasses.replace(base, **overrides))
        leader = self.leader
        if leader is not None:
            self.pool.register(agent, leader)
        return agent

    async def step_down(self, rejoin: bool = True) -> int | None:
        """The leader leaves the election (and re-joins at the back); returns its index."""
        leader = self.leader
        if leader is None:
            return None
        await self.election.leave(leader)
        if rejoin:
            await self.election.join(leader)
        return leader.index

    async def rejoin(self) -> list[int]:
        """Every master outside the election contends again; returns their indexes."""
        joined = []
        for master in self.masters:
            if not self.election.joined(master):
                await self.election.join(master)
                joined.append(master.index)
        return joined

    def inject_raw(self, data: bytes, framework_id: str | None = None) -> int:
        """Write `data` verbatim into subscribers' streams (no RecordIO framing added)."""
        subs = self.subscriptions(framework_id)
        for sub in subs:
            sub.send_bytes(data)
        return len(subs)

    def inject(self, kind: str, framework_id: str | None = None, size: int | None = None) -> int:
        """Inject a named bad payload (see `faults.RAW_KINDS`) into subscribers' streams."""
        if kind == "unknown_resource_offer":
            leader = self.leader
            if leader is None:
                return 0
            count = 0
            for fw in leader.frameworks.values():
                if fw.subscription is not None and framework_id in (None, fw.id):
                    count += leader.offer_with_extra_resources(fw, UNKNOWN_RESOURCES)
            return count
        return self.inject_raw(raw_payload(kind, size), framework_id)

    def encode_event(self, event: dict[str, Any]) -> bytes:
        """RecordIO-frame an arbitrary event dict, e.g. to inject it with `inject_raw`."""
        return protocol.encode_event(event)


def _bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("simulated server did not bind a port")
