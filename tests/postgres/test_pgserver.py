"""The throwaway PostgreSQL of tests/pgserver.py: reachable by password only, never run as root,
and a fresh database for each test."""

from __future__ import annotations

import asyncpg
import pytest
from pgserver import PgDatabase


async def test_server_takes_password_logins_and_runs_as_its_own_user(
    pg_database: PgDatabase,
) -> None:
    connection = await pg_database.connect()
    try:
        assert await connection.fetchval("SELECT current_database()") == pg_database.name
        owner = await connection.fetchval("SELECT pg_catalog.pg_get_userbyid(10)")
        assert owner == "scale"
        data_directory = await connection.fetchval("SHOW data_directory")
        assert str(pg_database.server.datadir) == data_directory
    finally:
        await connection.close()
    stat = pg_database.server.datadir.stat()
    # As root the cluster belongs to the postgres user (the server refuses to run as root).
    assert stat.st_uid != 0
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(pg_database.dsn, password="not-the-password")


async def test_each_test_gets_an_empty_database_first(pg_database: PgDatabase) -> None:
    connection = await pg_database.connect()
    try:
        tables = await connection.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        assert tables == 0
        await connection.execute("CREATE TABLE left_behind (id int)")
    finally:
        await connection.close()


async def test_each_test_gets_an_empty_database_second(pg_database: PgDatabase) -> None:
    await test_each_test_gets_an_empty_database_first(pg_database)
