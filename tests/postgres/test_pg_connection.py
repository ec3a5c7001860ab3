"""Connections: the password file, back-off while unreachable, a refused login, reconnecting
after the server ended the session."""

from __future__ import annotations

import random
from pathlib import Path

import asyncpg
import pytest
from pgserver import PgDatabase
from ports import free_port
from structlog.testing import capture_logs

from scale_scheduler.state.postgres.connection import (
    Connector,
    ConnectSettings,
    ManagedConnection,
    is_connection_loss,
)
from scale_scheduler.state.postgres.errors import (
    DatabaseLoginError,
    DatabaseUnreachableError,
    PasswordFileError,
)
from scale_scheduler.state.postgres.password import Password, read_password_file


class FakeTime:
    """A monotonic clock that moves only when the connector sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_password_file_is_read_and_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    password = read_password_file(path)
    assert password.reveal() == "s3cret"
    assert "s3cret" not in repr(password)
    assert "s3cret" not in repr(ConnectSettings("postgresql://u@db/x", password))


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read"), ("", "is empty"), ("\nsecond-line", "is empty"), (b"\xff", "UTF-8")],
)
def test_password_file_problems_name_the_key(
    tmp_path: Path, content: str | bytes | None, problem: str
) -> None:
    path = tmp_path / "password"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(PasswordFileError, match=rf"^state\.password_file: .*{problem}"):
        read_password_file(path)


async def test_unreachable_database_backs_off_then_raises() -> None:
    fake = FakeTime()
    settings = ConnectSettings(
        f"postgresql://scale@127.0.0.1:{free_port()}/nothing",
        Password("s3cret"),
        connect_timeout=2.0,
        backoff_initial=0.1,
        backoff_max=0.8,
        give_up_after=3.0,
    )
    connector = Connector(settings, sleep=fake.sleep, clock=fake.clock, rng=random.Random(1))
    with capture_logs() as logs, pytest.raises(DatabaseUnreachableError) as caught:
        await connector.connect()
    message = str(caught.value)
    assert message.startswith(f"database unreachable: 127.0.0.1:{settings.dsn.split(':')[-1]}")
    assert "s3cret" not in message
    assert "s3cret" not in repr(logs)
    # Each delay from the upper half of a ceiling that doubles up to backoff_max.
    assert len(fake.sleeps) >= 4
    for attempt, delay in enumerate(fake.sleeps):
        ceiling = min(0.1 * 2**attempt, 0.8)
        assert ceiling / 2 <= delay <= ceiling
    assert sum(fake.sleeps) <= settings.give_up_after
    assert [entry["event"] for entry in logs] == ["postgres_connect_failed"] * len(fake.sleeps)


async def test_refused_login_fails_at_once(pg_database: PgDatabase) -> None:
    fake = FakeTime()
    connector = Connector(
        ConnectSettings(pg_database.dsn, Password("wrong-password")),
        sleep=fake.sleep,
        clock=fake.clock,
    )
    with pytest.raises(DatabaseLoginError) as caught:
        await connector.connect()
    assert "wrong-password" not in str(caught.value)
    assert fake.sleeps == []


async def test_sessions_commit_synchronously(pg_database: PgDatabase) -> None:
    connector = Connector(
        ConnectSettings(pg_database.dsn, read_password_file(pg_database.password_file))
    )
    connection = await connector.connect()
    try:
        assert await connection.fetchval("SHOW synchronous_commit") == "on"
        assert await connection.fetchval("SHOW application_name") == "scale-scheduler"
    finally:
        await connection.close()


async def test_managed_connection_replaces_a_terminated_session(pg_database: PgDatabase) -> None:
    managed = ManagedConnection(
        Connector(ConnectSettings(pg_database.dsn, Password(pg_database.password)))
    )
    first = await managed.get()
    pid = first.get_server_pid()
    assert await managed.get() is first
    admin = await pg_database.connect()
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    with pytest.raises(Exception) as lost:  # noqa: PT011 - which one depends on timing
        await first.fetchval("SELECT 1")
    assert is_connection_loss(lost.value, first), repr(lost.value)
    second = await managed.get()
    try:
        assert second is not first
        assert await second.fetchval("SELECT 1") == 1
        assert managed.reconnects == 1
        with pytest.raises(asyncpg.PostgresSyntaxError) as wrong:
            await second.execute("SELEC 1")
        assert not is_connection_loss(wrong.value, second)  # a bad statement is no loss
    finally:
        await managed.close()


async def test_connector_waits_out_a_server_restart(pg_database: PgDatabase) -> None:
    """A stopped server is retried with back-off; the connect succeeds once it is back."""
    server = pg_database.server
    server.stop()
    starts: list[float] = []

    async def sleep_then_start(seconds: float) -> None:
        starts.append(seconds)
        if len(starts) == 2:
            server.start()  # blocking on purpose: the server is back before the third attempt

    connector = Connector(
        ConnectSettings(pg_database.dsn, Password(pg_database.password), give_up_after=60.0),
        sleep=sleep_then_start,
    )
    connection = await connector.connect()
    try:
        assert await connection.fetchval("SELECT 1") == 1
        assert len(starts) == 2
    finally:
        await connection.close()
