"""With no leader, a standby commits durable writes to the shared PostgreSQL itself and serves
durable reads from it; the next leader picks them up (real daemon process, real PostgreSQL, the
simulator).

A real no-leader situation: the only instance stands by while the term of another holder (held by
the test, at an address where nobody answers) is live. The test then ends that term. Until the
instance next tries to lead (``ha.renew_seconds`` after its first attempt, at its start), no
instance leads: every write made then is checked to have found no term (the leadership row has no
holder afterwards, the term ended by the first of them). Then it wins the election, loads what
was committed without it, and launches it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from daemonkit import task
from hakit import Instance, role_of, until
from pgserver import PgDatabase
from ports import free_port

from scale_scheduler.simulator import SimulatedCluster
from scale_scheduler.state.postgres.leadership import Lease, read_leadership
from scale_scheduler.state.postgres.migrations import migrate

RENEW = 10.0
"""Seconds between the instance's attempts to lead: the time the test has to write with no
leader (a few requests), once the term it held is ended."""


async def _json(response: aiohttp.ClientResponse) -> Any:
    assert response.content_type == "application/json", await response.text()
    return await response.json()


async def test_with_no_leader_a_standby_commits_writes_that_the_next_leader_launches(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    observer = await pg_database.connect()
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with SimulatedCluster(agents=2, heartbeat_interval=0.2, seed=7) as sim:
        b = Instance(
            tmp_path,
            "b",
            sim,
            pg_database,
            shared_state=True,
            lease_seconds=2 * RENEW,
            renew_seconds=RENEW,
        )
        try:
            await migrate(observer)
            # A leader nobody can reach, whose term the test ends when it chooses.
            ghost_lease = Lease("ghost", 600, api_url=nobody)
            ghost = await ghost_lease.acquire(observer)
            assert ghost is not None
            b.start()
            await b.process.wait_ready()
            assert await role_of(b) == "standby"
            async with aiohttp.ClientSession() as session:
                # While the ghost's term is live, the write is refused: nothing is committed.
                async with session.post(b.url + "/queue/", json=task("early")) as response:
                    assert response.status == 503, await response.text()
                    assert response.content_type == "text/plain"
                    assert "Retry-After" in response.headers
                assert await observer.fetchval("SELECT count(*) FROM tasks") == 0
                assert await ghost_lease.release(observer, ghost)

                # No leader: b commits the writes itself (the ghost cannot be reached).
                async with session.post(b.url + "/queue/", json=task("first")) as response:
                    assert response.status == 201, await response.text()
                    first = await _json(response)
                    assert response.headers["Location"] == f"{b.url}/tasks/{first['id']}/"
                async with session.post(
                    b.url + "/queue/", json=[task("second"), task("third")]
                ) as response:
                    assert response.status == 201, await response.text()
                    batch = await _json(response)
                async with session.delete(f"{b.url}/tasks/{batch[1]['id']}/") as response:
                    assert response.status == 200, await response.text()
                    assert (await _json(response))["state"] == "CANCELED"
                async with session.patch(
                    b.url + "/scheduler/", json={"is_paused": True}
                ) as response:  # the seed's contract: 201, Location, the same body
                    assert response.status == 201, await response.text()
                    assert response.headers["Location"] == b.url + "/scheduler/"
                    assert await _json(response) == {"is_paused": True}

                # Reads of durable state come from the database.
                async with session.get(b.url + "/scheduler/") as response:
                    assert await _json(response) == {"is_paused": True}
                async with session.get(b.url + "/status/") as response:
                    status = await _json(response)
                assert status["scheduler"] == {
                    "hostname": "b.test",
                    "is_online": False,
                    "is_paused": True,
                }
                assert status["queue_depth"] == 2
                async with session.get(b.url + "/queue/") as response:
                    queue = await _json(response)
                assert [t["name"] for t in queue["results"]] == ["first", "second"]
                async with session.get(f"{b.url}/tasks/{first['id']}/") as response:
                    assert (await _json(response))["state"] == "QUEUED"
                async with session.patch(
                    b.url + "/scheduler/", json={"is_paused": False}
                ) as response:
                    assert response.status == 201, await response.text()
                leadership = await read_leadership(observer)
                assert leadership.holder is None  # the ghost's term was ended by the write
                assert leadership.epoch == ghost.epoch + 1

                assert await role_of(b) == "standby"

                # b's next attempt: it leads, loads the writes and launches them.
                await until(lambda: _is_leader(b), 2 * RENEW, "b leads")
                await b.wait_online(20)
                for queued in (first, batch[0]):
                    await until(
                        lambda t=queued: _launched(sim, t["id"]), 20, f"{queued['name']} launched"
                    )
                assert not _launched(sim, batch[1]["id"])  # canceled while no one led
                assert sim.record.launched_more_than_once() == {}
        finally:
            b.process.stop_quietly()
            await observer.close()


async def _is_leader(instance: Instance) -> bool:
    return await role_of(instance) == "leader"


def _launched(sim: SimulatedCluster, task_id: int) -> bool:
    return any(mesos_id.split("-")[0] == str(task_id) for mesos_id in sim.record.launch_counts)
