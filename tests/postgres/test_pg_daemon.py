"""The daemon on ``state.backend: postgresql``: the API while the database is away."""

from __future__ import annotations

from pathlib import Path

from daemonkit import running_daemon, task
from pgproxy import PgProxy
from pgserver import PgDatabase


async def test_writes_while_the_database_is_away_get_503_and_nothing_acknowledged_is_lost(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    """While the database is away every write is refused whole (503 text/plain, Retry-After).
    The lost connection also costs the instance its term (the session held the leadership
    lock, so a standby could take over at once): it stands down, and in production exits 7 and
    is restarted by systemd. The restarted daemon finds every acknowledged write."""
    proxy = PgProxy(pg_database)
    await proxy.start()
    state = {
        "backend": "postgresql",
        "dsn": proxy.dsn,
        "password_file": str(pg_database.password_file),
    }
    try:
        async with running_daemon(tmp_path, state=state) as daemon:
            acknowledged = await daemon.submit([task("before")])
            await proxy.stop()
            response = await daemon.client.post("/queue/", json=[task("during")])
            assert response.status == 503, await response.text()
            assert response.content_type == "text/plain"
            # The state's own answer (2 s), or, once the instance has stood down, the standby's
            # while no leader is known (ha.lease_seconds).
            assert response.headers["Retry-After"] in ("2", "10")
            text = await response.text()
            assert "database is unreachable" in text or "No leader" in text, text
        await proxy.start()
        async with running_daemon(tmp_path, state=state) as daemon:
            acknowledged += await daemon.submit([task("after")])
        connection = await pg_database.connect()
        try:
            names = {r["id"]: r["name"] for r in await connection.fetch("SELECT * FROM tasks")}
        finally:
            await connection.close()
        assert names == dict(zip(acknowledged, ["before", "after"], strict=True))
    finally:
        await proxy.stop()


async def test_a_leader_whose_term_has_passed_commits_nothing(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    """The leader's writes are fenced by the epoch it leads in: once another term has begun in
    the database, its next write fails whole (503) and the database does not change."""
    state = {
        "backend": "postgresql",
        "dsn": pg_database.dsn,
        "password_file": str(pg_database.password_file),
    }
    async with running_daemon(tmp_path, state=state) as daemon:
        acknowledged = await daemon.submit([task("while-leading")])
        leader = await (await daemon.client.get("/leader/")).json()
        connection = await pg_database.connect()
        try:
            # Another instance's term: what a standby's acquire does once the lease lapsed.
            await connection.execute("UPDATE leadership SET epoch = epoch + 1 WHERE id = 1")
            response = await daemon.client.post("/queue/", json=[task("too-late")])
            assert response.status == 503, await response.text()
            names = [r["name"] for r in await connection.fetch("SELECT name FROM tasks")]
        finally:
            await connection.close()
        assert leader["epoch"] >= 1
        assert names == ["while-leading"]
        assert len(acknowledged) == 1
