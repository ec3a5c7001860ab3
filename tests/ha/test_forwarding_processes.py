"""A standby answers the whole API by forwarding to the leader: the seed's contract through any
instance, loop-free, 503 with Retry-After when no leader can answer (real daemon processes,
election in a real PostgreSQL; see hakit)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from hakit import Instance, live_subscription, role_of, until
from pgserver import PgDatabase

from scale_scheduler.api.leader_forwarding import FORWARDED_BY
from scale_scheduler.simulator import SimulatedCluster


async def test_a_standby_forwards_and_returns_the_leaders_answer_unchanged(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    async with SimulatedCluster(agents=2, heartbeat_interval=0.2, seed=13) as sim:
        a = Instance(tmp_path, "a", sim, pg_database)
        b = Instance(tmp_path, "b", sim, pg_database)
        try:
            a.start()
            await a.process.wait_ready()
            await a.wait_online()
            b.copy_state_from(a)
            b.start()
            await b.process.wait_ready()
            assert await role_of(b) == "standby"
            async with aiohttp.ClientSession() as session:
                # The seed's write through the standby: 201, Location naming the leader.
                async with session.patch(
                    b.url + "/scheduler/", json={"is_paused": True}
                ) as response:
                    assert response.status == 201, await response.text()
                    assert response.headers["Location"] == a.url + "/scheduler/"
                    assert await response.json() == {"is_paused": True}
                    assert "Content-Security-Policy" in response.headers
                async with session.get(a.url + "/scheduler/") as response:
                    assert await response.json() == {"is_paused": True}  # applied by the leader
                async with session.get(b.url + "/status/") as response:
                    status = await response.json()
                assert status["scheduler"] == {
                    "hostname": "a.test",
                    "is_online": True,
                    "is_paused": True,
                }
                # Errors come back as the leader gave them, text/plain and all.
                async with session.patch(b.url + "/scheduler/", json={}) as response:
                    assert response.status == 400
                    assert response.content_type == "text/plain"
                    assert "No fields specified for update." in await response.text()
                # The standby's own checks still apply before anything is forwarded.
                async with session.get(
                    b.url + "/status/", headers={"Host": "evil.example"}
                ) as response:
                    assert response.status == 421
                # A request a standby received from another instance is never forwarded again.
                async with session.get(
                    b.url + "/scheduler/", headers={FORWARDED_BY: "c"}
                ) as response:
                    assert response.status == 503
                    assert response.headers["Retry-After"] == "2"
                    assert "is a standby, not the leader" in await response.text()
                # Each instance's own endpoints are not forwarded.
                async with session.get(b.url + "/leader/") as response:
                    assert (await response.json())["this"]["role"] == "standby"
                # The leader dies: b takes over and answers writes itself.
                old = live_subscription(sim)
                a.process.kill9()
                await until(lambda: role_of(b), 10, "b answers")
                await until(lambda: live_subscription(sim) not in (None, old), 10, "b leads")
                async with session.patch(
                    b.url + "/scheduler/", json={"is_paused": False}
                ) as response:
                    assert response.status == 201  # b leads now and answers itself
                    assert response.headers["Location"] == b.url + "/scheduler/"
        finally:
            a.process.stop_quietly()
            b.process.stop_quietly()


async def test_a_standby_whose_leader_is_unreachable_answers_503(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    """The leader advertises a URL nobody listens on: the standby answers 503 with
    Retry-After, naming the leader, and never hangs."""
    async with SimulatedCluster(agents=1, heartbeat_interval=0.2, seed=17) as sim:
        a = Instance(tmp_path, "a", sim, pg_database, advertise_url="http://127.0.0.1:9/")
        b = Instance(tmp_path, "b", sim, pg_database)
        try:
            a.start()
            await a.process.wait_ready()
            b.start()
            # b's /status/ is forwarded (to nowhere): wait for its own /leader/ instead.
            await until(lambda: role_of(b), 15, "b answers")
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    b.url + "/queue/", json={"name": "t", "command": "true", "cpus": 1, "mem": 8}
                ) as response,
            ):
                assert response.status == 503
                assert response.content_type == "text/plain"
                assert response.headers["Retry-After"] == "2"
                text = await response.text()
                assert "The leader a at http://127.0.0.1:9/ cannot be reached" in text
        finally:
            a.process.stop_quietly()
            b.process.stop_quietly()


async def test_the_token_is_checked_by_the_standby_and_again_by_the_leader(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    token_a, token_b = tmp_path / "token-a", tmp_path / "token-b"
    token_a.write_text("secret-of-the-fleet\n")
    token_b.write_text("another-secret\n")  # b is misconfigured: the leader must not trust it
    for path in (token_a, token_b):
        path.chmod(0o600)
    async with SimulatedCluster(agents=1, heartbeat_interval=0.2, seed=19) as sim:
        a = Instance(tmp_path, "a", sim, pg_database, api={"token_file": str(token_a)})
        b = Instance(tmp_path, "b", sim, pg_database, api={"token_file": str(token_b)})
        try:
            a.start()
            await a.process.wait_ready()
            b.start()
            await until(lambda: role_of(b), 15, "b answers")
            async with aiohttp.ClientSession() as session:
                url = b.url + "/scheduler/"
                async with session.patch(url, json={"is_paused": True}) as response:
                    assert response.status == 401  # b's own check: nothing forwarded
                b_token = {"Authorization": "Bearer another-secret"}
                async with session.patch(
                    url, json={"is_paused": True}, headers=b_token
                ) as response:
                    assert response.status == 401  # passed b, refused by the leader
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
                async with session.get(a.url + "/scheduler/") as response:
                    assert await response.json() == {"is_paused": False}
        finally:
            a.process.stop_quietly()
            b.process.stop_quietly()
