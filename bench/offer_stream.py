"""B1's recorded OFFERS stream: offers recorded once from the simulator, replayed with fresh ids.

``record_offers()`` subscribes to an in-process ``SimulatedCluster`` (real HTTP and RecordIO) and
returns the offers of its first allocation cycle as JSON objects: what the simulated master
sends, resources, port ranges, attributes and allocation info included. ``load_offers()`` keeps
that recording in a file so every scenario of a run replays the same bytes.

``OfferStream`` cuts the recording into OFFERS events of ``per_event`` offers (each event a
different slice of agents) and pre-encodes each one as a RecordIO record whose offer ids are
stamped at send time with one C-level ``%`` format: every offer the master sends has a fresh id
(the daemon keys pending offers by id), at a cost of microseconds per event.

This module owns the offer bytes; serving them is ``bench.fake_master``'s job.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from scale_scheduler.daemon.mesos.recordio import RecordReader
from scale_scheduler.simulator import AgentSpec, SimulatedCluster

# The agents the recording (and B2's simulator) is made of: 32 cpus, 128 GiB, 1 TB, ports.
AGENT_CPUS = 32.0
AGENT_MEM = 131072.0
AGENT_DISK = 1_000_000.0
AGENT_ATTRIBUTES = (("rack", "r{i%40}"), ("zone", "z{i%3}"))
RECORDED_AGENTS = 2000
FRAMEWORK_ID = "bench-master-0001"
_PLACEHOLDER = "@@OFFER_ID@@"
_ID_FORMAT = b'"bench-O%012d"'


async def record_offers(agents: int = RECORDED_AGENTS, seed: int = 8) -> list[dict[str, Any]]:
    """The offers of one allocation cycle of a simulated cluster of ``agents`` agents."""
    spec = AgentSpec(cpus=AGENT_CPUS, mem=AGENT_MEM, disk=AGENT_DISK, attributes=AGENT_ATTRIBUTES)
    subscribe = {
        "type": "SUBSCRIBE",
        "subscribe": {
            "framework_info": {
                "user": "bench",
                "name": "bench-recorder",
                "roles": ["*"],
                "capabilities": [{"type": "MULTI_ROLE"}],
            }
        },
    }
    async with (
        SimulatedCluster(agents=agents, agent=spec, allocation_interval=0.05, seed=seed) as sim,
        aiohttp.ClientSession() as session,
        session.post(
            sim.url + "/api/v1/scheduler",
            json=subscribe,
            headers={"Accept": "application/json"},
        ) as response,
    ):
        response.raise_for_status()
        reader = RecordReader(response.content, 1 << 30)
        offers: list[dict[str, Any]] = []
        while len(offers) < agents:
            record = await asyncio.wait_for(reader.read(), 30)
            if record is None:
                raise RuntimeError("the simulator closed the stream before offering")
            event = json.loads(record)
            if event["type"] == "OFFERS":
                offers.extend(event["offers"]["offers"])
        return offers


def load_offers(path: Path, agents: int = RECORDED_AGENTS) -> list[dict[str, Any]]:
    """The recording at ``path``, made first if it is missing."""
    if not path.exists():
        offers = asyncio.run(record_offers(agents))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(offers, separators=(",", ":")))
    return json.loads(path.read_text())


class OfferStream:
    """OFFERS records of ``per_event`` offers each, with ids ``bench-O<12 digits>`` stamped."""

    def __init__(
        self, offers: list[dict[str, Any]], per_event: int = 100, framework_id: str = FRAMEWORK_ID
    ) -> None:
        if len(offers) < per_event:
            raise ValueError(f"{len(offers)} recorded offers cannot fill events of {per_event}")
        self.per_event = per_event
        self._templates: list[tuple[bytes, bytes]] = []
        for start in range(0, len(offers) - per_event + 1, per_event):
            chunk = []
            for offer in offers[start : start + per_event]:
                chunk.append(
                    {
                        **offer,
                        "id": {"value": _PLACEHOLDER},
                        "framework_id": {"value": framework_id},
                    }
                )
            payload = json.dumps(
                {"type": "OFFERS", "offers": {"offers": chunk}}, separators=(",", ":")
            ).encode()
            template = payload.replace(b"%", b"%%").replace(
                b'"' + _PLACEHOLDER.encode() + b'"', _ID_FORMAT
            )
            # Every stamped id has the same width, so the record length is fixed.
            length = len(template % tuple(range(per_event)))
            self._templates.append((b"%d\n" % length, template))
        self._next_template = 0
        self.next_id = 0

    @property
    def record_bytes(self) -> int:
        prefix, template = self._templates[0]
        return len(prefix) + len(template % tuple(range(self.per_event)))

    def next_record(self) -> bytes:
        """One OFFERS record (length line and payload) with fresh offer ids."""
        prefix, template = self._templates[self._next_template]
        self._next_template = (self._next_template + 1) % len(self._templates)
        first = self.next_id
        self.next_id = first + self.per_event
        return prefix + template % tuple(range(first, first + self.per_event))

    def payloads(self, count: int) -> list[bytes]:
        """``count`` record payloads (no length line), for the decode-limit measurement."""
        out = []
        for _ in range(count):
            record = self.next_record()
            out.append(record[record.index(b"\n") + 1 :])
        return out
