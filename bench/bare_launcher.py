"""B2's peer: a bare launcher with no persistence, against the same simulator as the daemon.

``python -m bench.bare_launcher MASTER_URL --tasks N [--cpus 1] [--mem 128] [--deadline S]``

A minimal asyncio client of the v1 scheduler HTTP API: SUBSCRIBE, read the RecordIO stream (the
daemon's ``recordio.RecordReader``), and answer every OFFERS event at once: each offer is
accepted with as many of the remaining tasks (``cpus`` and ``mem`` each, command ``true``) as its
cpus and mem hold, one ACCEPT per offer, all of an event's calls concurrently over the daemon's
own pooled call client (``http_calls.HttpCallClient``, as many connections as the daemon uses by
default); an offer that holds none, or comes when nothing is left, is declined. Every status
update carrying a uuid is acknowledged. The filters are the daemon's defaults (5 s after an
ACCEPT or a DECLINE while tasks remain, 120 s once none do).

No database, no queue index, no log, no API: what launching costs with nothing but the protocol.
It exits once every task has been seen RUNNING (or FINISHED), or at the deadline, and prints one
JSON line. Times are from the first OFFERS event received (the daemon's figures it is compared
with are from its first launching pass, so neither side counts the allocation cycle's phase):

- ``first_pass_tasks`` / ``first_pass_s``: the tasks of the first OFFERS event, from receiving it
  until every one of its calls was answered;
- ``accepted_s``: until the ACCEPT carrying the last task was answered;
- ``running_s``: until every task was seen RUNNING or FINISHED;
- ``cpu_us_per_task``: this process's CPU from SUBSCRIBE to exit, per task.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp
import msgspec

from scale_scheduler.daemon.mesos.http_calls import HttpCallClient
from scale_scheduler.daemon.mesos.recordio import RecordReader

CALL_CONNECTIONS = 16  # the daemon's default ``mesos.max_call_connections``
REFUSE_SECONDS = 5.0  # the daemon's default ``scheduler.refuse_seconds``
IDLE_REFUSE_SECONDS = 120.0  # and ``scheduler.idle_refuse_seconds``
MAX_RECORD_BYTES = 1 << 30
_SEEN_STATES = frozenset({"TASK_RUNNING", "TASK_FINISHED"})
_FAILED_STATES = frozenset(
    {"TASK_ERROR", "TASK_FAILED", "TASK_LOST", "TASK_DROPPED", "TASK_GONE", "TASK_KILLED"}
)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


def subscribe_body() -> bytes:
    return _encode(
        {
            "type": "SUBSCRIBE",
            "subscribe": {
                "framework_info": {
                    "user": "bench",
                    "name": "bench-bare-launcher",
                    "roles": ["*"],
                    "capabilities": [{"type": "MULTI_ROLE"}],
                }
            },
        }
    )


def _scalar(resources: list[dict[str, Any]], name: str) -> float:
    return sum(float(r.get("scalar", {}).get("value", 0.0)) for r in resources if r["name"] == name)


def _role(offer: dict[str, Any]) -> str:
    info = offer.get("allocation_info") or {}
    return str(info.get("role", "*"))


class Launcher:
    """Hands the remaining tasks out to offers and counts what the master says about them."""

    def __init__(self, tasks: int, cpus: float, mem: float) -> None:
        self.total = tasks
        self.cpus = cpus
        self.mem = mem
        self.next_task = 0
        self.seen: set[str] = set()
        self.failed: set[str] = set()
        self.framework_id = ""

    @property
    def remaining(self) -> int:
        return self.total - self.next_task

    def fits(self, offer: dict[str, Any]) -> int:
        resources = offer.get("resources") or []
        by_cpus = int(_scalar(resources, "cpus") // self.cpus)
        by_mem = int(_scalar(resources, "mem") // self.mem)
        return max(0, min(self.remaining, by_cpus, by_mem))

    def accept(self, offer: dict[str, Any], count: int) -> bytes:
        """The ACCEPT call launching the next ``count`` tasks on ``offer``."""
        role = _role(offer)
        agent_id = offer["agent_id"]["value"]
        resources = [
            {
                "name": name,
                "type": "SCALAR",
                "scalar": {"value": value},
                "role": "*",
                "allocation_info": {"role": role},
            }
            for name, value in (("cpus", self.cpus), ("mem", self.mem))
        ]
        infos = []
        for index in range(self.next_task, self.next_task + count):
            infos.append(
                {
                    "name": "bench-task",
                    "task_id": {"value": f"bare-{index:07d}"},
                    "agent_id": {"value": agent_id},
                    "resources": resources,
                    "command": {"value": "true", "shell": True},
                }
            )
        self.next_task += count
        return _encode(
            {
                "framework_id": {"value": self.framework_id},
                "type": "ACCEPT",
                "accept": {
                    "offer_ids": [offer["id"]],
                    "operations": [{"type": "LAUNCH", "launch": {"task_infos": infos}}],
                    "filters": {"refuse_seconds": REFUSE_SECONDS},
                },
            }
        )

    def decline(self, offers: list[dict[str, Any]]) -> bytes:
        refuse = REFUSE_SECONDS if self.remaining else IDLE_REFUSE_SECONDS
        return _encode(
            {
                "framework_id": {"value": self.framework_id},
                "type": "DECLINE",
                "decline": {
                    "offer_ids": [offer["id"] for offer in offers],
                    "filters": {"refuse_seconds": refuse},
                },
            }
        )

    def acknowledge(self, status: dict[str, Any]) -> bytes | None:
        """Notes the task's state; the ACKNOWLEDGE call if the update asks for one."""
        task_id = status["task_id"]["value"]
        state = status.get("state")
        if state in _SEEN_STATES:
            self.seen.add(task_id)
        elif state in _FAILED_STATES:
            self.failed.add(task_id)
        uuid = status.get("uuid")
        if not uuid or "agent_id" not in status:
            return None
        return _encode(
            {
                "framework_id": {"value": self.framework_id},
                "type": "ACKNOWLEDGE",
                "acknowledge": {
                    "agent_id": status["agent_id"],
                    "task_id": status["task_id"],
                    "uuid": uuid,
                },
            }
        )


class Run:
    """One run: the stream reader dispatches, calls go out as tasks, figures are kept here."""

    def __init__(self, launcher: Launcher, calls: HttpCallClient) -> None:
        self.launcher = launcher
        self.calls = calls
        self.first_offer_at: float | None = None
        self.first_pass: dict[str, float] = {}
        self.accepted_at: float | None = None
        self.running_at: float | None = None
        self.calls_failed = 0
        self.pending: set[asyncio.Task[None]] = set()
        self.done = asyncio.Event()

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _post(self, body: bytes) -> None:
        response = await self.calls.post(body)
        if response.status != 202:
            self.calls_failed += 1

    async def _answer(
        self, bodies: list[bytes], launched: int, received: float, *, last: bool
    ) -> None:
        await asyncio.gather(*(self._post(body) for body in bodies))
        now = time.monotonic()
        if not self.first_pass and launched:
            self.first_pass = {"tasks": launched, "seconds": now - received}
        if last:
            self.accepted_at = now

    def on_offers(self, offers: list[dict[str, Any]], received: float) -> None:
        launcher = self.launcher
        bodies: list[bytes] = []
        unused: list[dict[str, Any]] = []
        launched = 0
        for offer in offers:
            count = launcher.fits(offer)
            if count:
                bodies.append(launcher.accept(offer, count))
                launched += count
            else:
                unused.append(offer)
        if unused:
            bodies.append(launcher.decline(unused))
        if launched and self.first_offer_at is None:
            self.first_offer_at = received
        last = launched > 0 and launcher.remaining == 0
        self._spawn(self._answer(bodies, launched, received, last=last))

    def on_update(self, status: dict[str, Any]) -> None:
        body = self.launcher.acknowledge(status)
        if body is not None:
            self._spawn(self._post(body))
        if self.running_at is None and len(self.launcher.seen) >= self.launcher.total:
            self.running_at = time.monotonic()
            self.done.set()

    def figures(self, subscribed_at: float) -> dict[str, Any]:
        start = self.first_offer_at
        tasks = self.launcher.total

        def since_first_offer(at: float | None) -> float | None:
            return at - start if at is not None and start is not None else None

        accepted_s = since_first_offer(self.accepted_at)
        first_s = self.first_pass.get("seconds")
        first_tasks = self.first_pass.get("tasks")
        return {
            "tasks": tasks,
            "first_offer_after_subscribe_s": start - subscribed_at if start is not None else None,
            "first_pass_tasks": first_tasks,
            "first_pass_s": first_s,
            "first_pass_rate": first_tasks / first_s if first_tasks and first_s else None,
            "accepted_s": accepted_s,
            "accept_rate": tasks / accepted_s if accepted_s else None,
            "running_s": since_first_offer(self.running_at),
            "launched": self.launcher.next_task,
            "seen_running": len(self.launcher.seen),
            "failed": len(self.launcher.failed),
            "calls_failed": self.calls_failed,
        }


async def run(master: str, tasks: int, cpus: float, mem: float, deadline: float) -> dict[str, Any]:
    url = master.rstrip("/") + "/api/v1/scheduler"
    cpu_before = time.process_time()
    launcher = Launcher(tasks, cpus, mem)
    subscribed_at = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(
            url,
            data=subscribe_body(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        ) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"SUBSCRIBE answered {response.status}: {await response.text()}")
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Mesos-Stream-Id": response.headers["Mesos-Stream-Id"],
        }
        calls = HttpCallClient(url, headers, timeout=30.0, max_connections=CALL_CONNECTIONS)
        state = Run(launcher, calls)
        reader = RecordReader(response.content, MAX_RECORD_BYTES)

        async def read() -> None:
            while (record := await reader.read()) is not None:
                received = time.monotonic()
                event = _decode(record)
                kind = event.get("type")
                if kind == "OFFERS":
                    state.on_offers(event["offers"].get("offers") or [], received)
                elif kind == "UPDATE":
                    state.on_update(event["update"]["status"])
                elif kind == "SUBSCRIBED":
                    launcher.framework_id = event["subscribed"]["framework_id"]["value"]
                elif kind == "ERROR":
                    raise RuntimeError(f"master sent ERROR: {event['error'].get('message')}")
            raise RuntimeError("the master closed the event stream")

        reading = asyncio.ensure_future(read())
        finished = asyncio.ensure_future(state.done.wait())
        try:
            await asyncio.wait(
                {reading, finished}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED
            )
            if reading.done():
                reading.result()  # the stream failed: say why
        finally:
            for task in (reading, finished, *state.pending):
                task.cancel()
            calls.close()
    return {
        **state.figures(subscribed_at),
        "deadline_s": deadline,
        "cpu_us_per_task": (time.process_time() - cpu_before) / tasks * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_launcher", description=__doc__)
    parser.add_argument("master", help="the master's URL, e.g. http://127.0.0.1:5050")
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--cpus", type=float, default=1.0)
    parser.add_argument("--mem", type=float, default=128.0)
    parser.add_argument("--deadline", type=float, default=240.0)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.master, args.tasks, args.cpus, args.mem, args.deadline))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
