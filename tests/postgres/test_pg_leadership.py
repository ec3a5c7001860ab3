"""Leadership with epoch fencing on a real PostgreSQL: one winner, fenced writes of a deposed
leader fail and change nothing, expiry hands over with a higher epoch."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pgserver import PgDatabase
from structlog.testing import capture_logs

from scale_scheduler.state.postgres.connection import (
    Connector,
    ConnectSettings,
    is_connection_loss,
)
from scale_scheduler.state.postgres.errors import FencedError
from scale_scheduler.state.postgres.leadership import (
    Lease,
    Term,
    end_stale_sessions,
    fenced,
    read_leadership,
)
from scale_scheduler.state.postgres.migrations import migrate
from scale_scheduler.state.postgres.password import Password

SHORT = 0.2  # seconds: a lease that lapses within a test


@pytest.fixture
async def db(pg_database: PgDatabase) -> PgDatabase:
    connection = await pg_database.connect()
    try:
        await migrate(connection)
        await connection.execute("CREATE TABLE marks (who text, epoch bigint)")
    finally:
        await connection.close()
    return pg_database


async def _write(connection: asyncpg.Connection, term: Term, who: str) -> None:
    async with fenced(connection, term.epoch):
        await connection.execute("INSERT INTO marks VALUES ($1, $2)", who, term.epoch)


async def _marks(connection: asyncpg.Connection) -> list[tuple[str, int]]:
    return [tuple(r) for r in await connection.fetch("SELECT who, epoch FROM marks ORDER BY 2")]


async def _acquire_when_lapsed(lease: Lease, connection: asyncpg.Connection) -> Term:
    for _ in range(500):
        term = await lease.acquire(connection)
        if term is not None:
            return term
        await asyncio.sleep(0.02)  # poll interval of the wait for the lease to lapse
    raise AssertionError("the lease never lapsed")


async def _until_waiting_on_its_client(observer: asyncpg.Connection, query_like: str) -> None:
    """Until a backend running ``query_like`` is active and waiting for its client's next
    message (what a paused process's COPY or pipelined executemany looks like)."""
    for _ in range(500):
        waiting = await observer.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE $1 "
            "AND state = 'active' AND wait_event = 'ClientRead')",
            query_like,
        )
        if waiting:
            return
        await asyncio.sleep(0.01)  # poll interval of the wait for the COPY to stall
    raise AssertionError(f"no backend running {query_like!r} ever waited on its client")


async def _until_working(observer: asyncpg.Connection, query_like: str) -> None:
    """Until a backend runs ``query_like`` (active, the server working for it)."""
    for _ in range(500):
        if await observer.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE $1 "
            "AND state = 'active')",
            query_like,
        ):
            return
        await asyncio.sleep(0.01)  # poll interval of the wait for the statement to start
    raise AssertionError(f"no backend ever ran {query_like!r}")


async def test_two_contenders_one_wins_and_the_loser_cannot_write(db: PgDatabase) -> None:
    a_conn, b_conn = await db.connect(), await db.connect()
    a, b = Lease("a", 30), Lease("b", 30)
    try:
        terms = await asyncio.gather(a.acquire(a_conn), b.acquire(b_conn))
        winners = [t for t in terms if t is not None]
        assert len(winners) == 1
        winner = winners[0]
        assert winner.epoch == 1
        assert not winner.expired()
        view = await read_leadership(a_conn)
        assert (view.holder, view.epoch, view.live) == (winner.holder, 1, True)
        # The loser holds no term: a write with the last epoch it knew (0) fails.
        loser_conn = b_conn if winner.holder == "a" else a_conn
        winner_conn = a_conn if winner.holder == "a" else b_conn
        stale = Term("loser", 0, winner.lease_until, winner.since, winner.valid_until)
        with pytest.raises(FencedError, match=r"epoch 0 is no longer current \(.* 1\)") as caught:
            await _write(loser_conn, stale, "loser")
        assert (caught.value.epoch, caught.value.current) == (0, 1)
        await _write(winner_conn, winner, winner.holder)
        assert await _marks(a_conn) == [(winner.holder, 1)]
    finally:
        await a_conn.close()
        await b_conn.close()


async def test_expiry_hands_over_with_a_higher_epoch(db: PgDatabase) -> None:
    a_conn, b_conn = await db.connect(), await db.connect()
    a, b = Lease("a", SHORT), Lease("b", 30)
    try:
        first = await a.acquire(a_conn)
        assert first is not None
        assert await b.acquire(b_conn) is None  # live: nobody else may take it
        second = await _acquire_when_lapsed(b, b_conn)
        assert (second.holder, second.epoch) == ("b", first.epoch + 1)
        assert second.since >= first.since
        assert await a.renew(a_conn, first) is None  # a lapsed term cannot be renewed
        view = await read_leadership(a_conn)
        assert (view.holder, view.epoch, view.live) == ("b", second.epoch, True)
    finally:
        await a_conn.close()
        await b_conn.close()


async def test_a_deposed_leaders_late_write_is_rejected(db: PgDatabase) -> None:
    a_conn, b_conn = await db.connect(), await db.connect()
    a, b = Lease("a", SHORT), Lease("b", 30)
    try:
        old = await a.acquire(a_conn)
        assert old is not None
        await _write(a_conn, old, "a")
        new = await _acquire_when_lapsed(b, b_conn)
        await _write(b_conn, new, "b")
        with pytest.raises(FencedError):
            await _write(a_conn, old, "a-late")
        assert await _marks(b_conn) == [("a", old.epoch), ("b", new.epoch)]
        # The failed transaction left the connection usable, and nothing of it behind.
        assert await a_conn.fetchval("SELECT 1") == 1
    finally:
        await a_conn.close()
        await b_conn.close()


async def test_renewal_keeps_the_epoch_and_release_hands_over_at_once(db: PgDatabase) -> None:
    a_conn, b_conn = await db.connect(), await db.connect()
    a, b = Lease("a", 30), Lease("b", 30)
    try:
        term = await a.acquire(a_conn)
        assert term is not None
        renewed = await a.renew(a_conn, term)
        assert renewed is not None
        assert renewed.epoch == term.epoch
        assert renewed.lease_until > term.lease_until
        assert renewed.valid_until >= term.valid_until
        assert not await b.release(b_conn, renewed)  # not b's term
        assert await a.release(a_conn, renewed)
        taken = await b.acquire(b_conn)
        assert taken is not None
        assert taken.epoch == term.epoch + 1
    finally:
        await a_conn.close()
        await b_conn.close()


async def test_a_new_term_waits_for_an_open_fenced_transaction(db: PgDatabase) -> None:
    """A fenced transaction in flight commits before the next term begins, never after it;
    a renewal of the current term does not wait for it."""
    a_conn, a_renew_conn, b_conn = await db.connect(), await db.connect(), await db.connect()
    a, b = Lease("a", SHORT), Lease("b", 30)
    try:
        term = await a.acquire(a_conn)
        assert term is not None
        async with fenced(a_conn, term.epoch):
            renewed = await asyncio.wait_for(a.renew(a_renew_conn, term), timeout=5)
            assert renewed is not None  # a renewal takes no lock the fenced read conflicts with
            await a_conn.execute("INSERT INTO marks VALUES ('a', $1)", term.epoch)
            takeover = asyncio.ensure_future(_acquire_when_lapsed(b, b_conn))
            await _wait_until_blocked(a_conn, b_conn.get_server_pid())
            assert not takeover.done()
        new = await asyncio.wait_for(takeover, timeout=10)
        assert new.epoch == term.epoch + 1
        assert await _marks(a_conn) == [("a", term.epoch)]
    finally:
        for connection in (a_conn, a_renew_conn, b_conn):
            await connection.close()


async def _wait_until_blocked(observer: asyncpg.Connection, pid: int) -> None:
    for _ in range(500):
        blocked = await observer.fetchval("SELECT cardinality(pg_blocking_pids($1)) > 0", pid)
        if blocked:
            return
        await asyncio.sleep(0.01)  # poll interval of the wait for the takeover to block
    raise AssertionError(f"backend {pid} never blocked")


def test_a_term_expires_on_the_local_monotonic_clock() -> None:
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    term = Term("a", 3, now, now, valid_until=100.0)
    assert not term.expired(now=99.9)
    assert term.expired(now=100.0)


def test_a_lease_needs_a_holder_and_a_positive_length() -> None:
    with pytest.raises(ValueError, match="name"):
        Lease("", 10)
    with pytest.raises(ValueError, match="positive"):
        Lease("a", 0)


async def test_a_paused_leaders_open_transaction_cannot_hold_a_takeover_back(
    db: PgDatabase,
) -> None:
    """A leader stopped inside a fenced transaction (SIGSTOP) is cut off by the server's
    idle_in_transaction_session_timeout (``idle_transaction_timeout``, the daemon's lease): the
    next term begins, and the paused write never commits."""
    paused = await Connector(
        ConnectSettings(db.dsn, Password(db.password), idle_transaction_timeout=0.3)
    ).connect()
    b_conn = await db.connect()
    a, b = Lease("a", SHORT), Lease("b", 30)
    try:
        term = await a.acquire(paused)
        assert term is not None
        taken: list[Term] = []

        async def write_while_paused() -> None:
            async with fenced(paused, term.epoch):
                await paused.execute("INSERT INTO marks VALUES ('a-paused', $1)", term.epoch)
                # "Paused": this session sends nothing more while the standby takes over.
                taken.append(await asyncio.wait_for(_acquire_when_lapsed(b, b_conn), timeout=10))

        with pytest.raises(Exception) as lost:  # noqa: PT011 - the loss surfaces as one of several
            await write_while_paused()
        assert [t.epoch for t in taken] == [term.epoch + 1]
        assert is_connection_loss(lost.value, paused), repr(lost.value)
        assert await _marks(b_conn) == []
    finally:
        paused.terminate()
        await b_conn.close()


async def test_a_leader_paused_mid_copy_is_ended_so_the_next_term_begins(db: PgDatabase) -> None:
    """A leader paused in the middle of a COPY (or of a pipelined executemany, before its Sync)
    leaves a session the server counts as active, waiting on ClientRead: the idle-in-transaction
    timeout never ends it, and its share lock on the row would hold every new term back for as
    long as the pause lasts. A contender with a ``lock_wait`` ends that session once the lease
    has lapsed and takes the term; the paused write never commits."""
    paused = await Connector(
        ConnectSettings(db.dsn, Password(db.password), idle_transaction_timeout=0.3)
    ).connect()
    b_conn, observer = await db.connect(), await db.connect()
    a, b = Lease("a", SHORT), Lease("b", 30, lock_wait=0.1)
    never = asyncio.Event()

    async def rows_then_pause() -> AsyncIterator[bytes]:
        yield b"a-paused\t1\n"
        await never.wait()  # the process is paused: no more data, no end of the COPY

    async def write_then_pause(term: Term) -> None:
        async with fenced(paused, term.epoch):
            await paused.copy_to_table("marks", source=rows_then_pause())

    try:
        term = await a.acquire(paused)
        assert term is not None
        pid = paused.get_server_pid()
        writing = asyncio.ensure_future(write_then_pause(term))
        await _until_waiting_on_its_client(observer, "COPY%marks%")
        taken = await asyncio.wait_for(_acquire_when_lapsed(b, b_conn), timeout=10)
        assert taken.epoch == term.epoch + 1
        assert not await observer.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid
        )
        never.set()  # the process wakes (SIGCONT): its session is gone
        with pytest.raises(Exception) as lost:  # noqa: PT011 - the loss surfaces as one of several
            await asyncio.wait_for(writing, timeout=10)
        assert not isinstance(lost.value, asyncio.TimeoutError), repr(lost.value)
        assert is_connection_loss(lost.value, paused), repr(lost.value)
        assert await _marks(observer) == []
    finally:
        never.set()
        paused.terminate()
        await b_conn.close()
        await observer.close()


async def test_a_live_leaders_open_transaction_is_left_alone(db: PgDatabase) -> None:
    """While the lease is live a contender neither waits for the row nor ends anything: the
    leader's open transaction commits."""
    a_conn, b_conn = await db.connect(), await db.connect()
    a, b = Lease("a", 30), Lease("b", 30, lock_wait=0.05)
    try:
        term = await a.acquire(a_conn)
        assert term is not None
        async with fenced(a_conn, term.epoch):
            await a_conn.execute("INSERT INTO marks VALUES ('a', $1)", term.epoch)
            assert await b.acquire(b_conn) is None
            # Idle in its transaction, holding the row: still nothing to end.
            assert await end_stale_sessions(b_conn, 30, 0.05) == []
        assert await _marks(b_conn) == [("a", term.epoch)]
    finally:
        await a_conn.close()
        await b_conn.close()


async def test_a_lapsed_leaders_session_at_work_is_left_to_finish(db: PgDatabase) -> None:
    """A session holding the row while the server works for it (here a slow statement, as a
    migration's DDL would be) is not ended: the contender waits, the write commits (before the
    next term, as the fence orders it), and the term follows."""
    a_conn, b_conn = await db.connect(), await db.connect()
    a, b = Lease("a", SHORT), Lease("b", 30, lock_wait=0.05)
    try:
        term = await a.acquire(a_conn)
        assert term is not None

        async def slow_write() -> None:
            async with fenced(a_conn, term.epoch):
                await a_conn.execute("INSERT INTO marks VALUES ('a-slow', $1)", term.epoch)
                await a_conn.execute("SELECT pg_sleep(3)")  # at work well past the lease

        writing = asyncio.ensure_future(slow_write())
        for _ in range(500):  # until the lease has lapsed (the statement runs on for seconds)
            if not (await read_leadership(b_conn)).live:
                break
            await asyncio.sleep(0.01)  # poll interval of the wait for the lease to lapse
        await _until_working(b_conn, "SELECT pg_sleep%")
        assert await b.acquire(b_conn) is None
        await asyncio.wait_for(writing, timeout=10)
        taken = await asyncio.wait_for(_acquire_when_lapsed(b, b_conn), timeout=10)
        assert taken.epoch == term.epoch + 1
        assert await _marks(b_conn) == [("a-slow", term.epoch)]
    finally:
        await a_conn.close()
        await b_conn.close()


def test_a_lock_wait_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lock_wait"):
        Lease("a", 10, lock_wait=0)


@pytest.mark.parametrize(
    ("grant", "reason"),
    [
        ("", "cannot see other roles' sessions' state"),
        ("GRANT pg_read_all_stats TO {role}", "may not end other roles' sessions"),
    ],
    ids=["state hidden", "may not end"],
)
async def test_a_contender_that_may_not_end_a_stale_session_says_so(
    db: PgDatabase, grant: str, reason: str
) -> None:
    """Under a role that cannot see the stale session's state, or sees it but may not end it
    (here the stale session is a superuser's), nothing is ended and the log says what grant is
    missing; the stale session lives on."""
    role = f"contender_{os.getpid()}"
    secret = "contender-password"
    admin = await db.connect()
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'")
    await admin.execute(f"GRANT SELECT, UPDATE ON leadership TO {role}")
    if grant:
        await admin.execute(grant.format(role=role))
    contender = await asyncpg.connect(db.dsn.replace("//scale@", f"//{role}@"), password=secret)
    paused = await db.connect()
    try:
        term = await Lease("a", SHORT).acquire(paused)
        assert term is not None
        pid = paused.get_server_pid()
        async with fenced(paused, term.epoch):
            # Idle in its transaction past the lease: stale, and a superuser's.
            for _ in range(500):
                if not (await read_leadership(admin)).live:
                    break
                await asyncio.sleep(0.01)  # poll interval of the wait for the lease to lapse
            with capture_logs() as logs:
                assert await end_stale_sessions(contender, 30, 0.5) == []
            assert await admin.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid
            )
        said = [e for e in logs if e["event"] == "leadership_stale_session_not_ended"]
        assert len(said) == 1, logs
        assert reason in said[0]["reason"]
    finally:
        await contender.close()
        await paused.close()
        await admin.execute(f"DROP OWNED BY {role}")
        if grant:
            await admin.execute(f"REVOKE pg_read_all_stats FROM {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()
