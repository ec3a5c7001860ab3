"""The daemon on ``state.backend: postgresql``: the API while the database is away."""

from __future__ import annotations

from pathlib import Path

from daemonkit import running_daemon, task
from pgproxy import PgProxy
from pgserver import PgDatabase


async def test_writes_while_the_database_is_away_get_503_and_nothing_acknowledged_is_lost(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
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
            assert response.headers["Retry-After"] == "2"
            assert "database is unreachable" in await response.text()
            await proxy.start()
            acknowledged += await daemon.submit([task("after")])
            connection = await pg_database.connect()
            try:
                names = {r["id"]: r["name"] for r in await connection.fetch("SELECT * FROM tasks")}
            finally:
                await connection.close()
            assert names == dict(zip(acknowledged, ["before", "after"], strict=True))
    finally:
        await proxy.stop()
