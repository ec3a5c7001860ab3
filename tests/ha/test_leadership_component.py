"""The leadership component on a real PostgreSQL, in process: one leader among contenders, the
advisory lock hands over at once when the leader's session dies, a refused renewal or a lost
connection deposes, and epochs only increase."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pgserver import PgDatabase

from scale_scheduler.daemon.service import leadership as leadership_module
from scale_scheduler.daemon.service.config import parse_config
from scale_scheduler.daemon.service.leadership import (
    PostgresLeadership,
    SingleInstance,
    election_settings,
)
from scale_scheduler.daemon.service.leadership_terms import Instance, Role
from scale_scheduler.state.postgres.connection import Connector, ConnectSettings
from scale_scheduler.state.postgres.password import Password


def _instance(name: str) -> Instance:
    return Instance(name, f"http://{name}.test:8000/", f"{name}.test")


def _leadership(
    db: PgDatabase, name: str, *, lease: float = 5.0, renew: float = 0.1
) -> PostgresLeadership:
    connector = Connector(
        ConnectSettings(db.dsn, Password(db.password), give_up_after=5.0, backoff_max=0.2)
    )
    return PostgresLeadership(_instance(name), connector, lease_seconds=lease, renew_seconds=renew)


@asynccontextmanager
async def _started(*members: PostgresLeadership) -> AsyncIterator[None]:
    try:
        for member in members:
            await member.start()
        yield
    finally:
        for member in members:
            await member.stop()


async def _until(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)  # poll interval of the wait for a role change


async def test_stop_returns_even_if_a_step_loses_the_cancellation(
    pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio's wait_for (before 3.12) can swallow a cancellation that arrives as the awaited
    step completes. The loop then kept stepping: a stopping daemon hung in its shutdown and
    went on to take a new term. Here every step swallows its cancellation."""
    wait_for = asyncio.wait_for
    steps = 0
    in_step = asyncio.Event()

    async def swallowing_wait_for(awaitable: Any, timeout: float | None) -> Any:
        nonlocal steps
        if getattr(awaitable, "__name__", "") != "_lead_or_stand_by":
            return await wait_for(awaitable, timeout)
        steps += 1
        if steps >= 2:  # the loop's first step (the first was start()'s)
            in_step.set()
        # A step in flight, long enough for stop() to cancel the loop inside it; the
        # cancellation is lost, as wait_for loses it when the step completes at that moment.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.5)  # deliberately slow: the step in flight
        return await wait_for(awaitable, timeout)

    monkeypatch.setattr(leadership_module.asyncio, "wait_for", swallowing_wait_for)
    member = _leadership(pg_database, "a", renew=0.05)
    await member.start()
    assert member.role is Role.LEADER
    await asyncio.wait_for(in_step.wait(), timeout=5)
    stopping = asyncio.create_task(member.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)  # not wait_for: it would cancel stop()
    if not done:
        stopping.cancel()  # awaiting the loop's task, this cancels it again: it then ends
        await asyncio.gather(stopping, return_exceptions=True)
    assert done, "stop() did not return: the loop lost its cancellation and kept stepping"
    assert member.role is Role.STANDBY


async def test_one_leader_among_three_and_the_others_know_it(pg_database: PgDatabase) -> None:
    a, b, c = (_leadership(pg_database, n) for n in "abc")
    async with _started(a, b, c):
        assert [m.role for m in (a, b, c)] == [Role.LEADER, Role.STANDBY, Role.STANDBY]
        assert a.may_act()
        assert not b.may_act()
        view = b.leader()
        assert view.leader == _instance("a")
        assert view.epoch == a.epoch == 1
        assert a.leader().leader == a.this


async def test_a_dead_leaders_session_hands_over_before_its_lease_ends(
    pg_database: PgDatabase,
) -> None:
    """The lease is 30 s; the standby leads within a few of its renewals once the leader's
    session (and with it the advisory lock) is gone, with a higher epoch. The old leader learns
    it from its connection's loss at once, not from its lease."""
    # a's own loop sleeps 5 s between steps: it is stopped (as a dead process would be) before
    # it tries to reconnect and contend.
    a = _leadership(pg_database, "a", lease=30, renew=5)
    b = _leadership(pg_database, "b", lease=30)
    heard: list[tuple[Role, str]] = []
    a.add_listener(lambda role, why: heard.append((role, why)))
    async with _started(a, b):
        assert a.role is Role.LEADER
        admin = await pg_database.connect()
        try:
            killed = await admin.fetchval(
                "SELECT pg_terminate_backend(holder_pid) FROM leadership WHERE id = 1"
            )
        finally:
            await admin.close()
        assert killed
        await _until(lambda: len(heard) == 2, timeout=3)
        assert heard == [
            (Role.LEADER, "term 1 began"),
            (Role.STANDBY, "the connection holding the leadership lock was lost"),
        ]
        assert not a.may_act()
        await a.stop()
        await _until(lambda: b.role is Role.LEADER, timeout=3)
        assert b.epoch == 2
        assert b.leader().leader == b.this


async def test_a_refused_renewal_deposes_and_epochs_only_increase(pg_database: PgDatabase) -> None:
    a, b = _leadership(pg_database, "a"), _leadership(pg_database, "b")
    async with _started(a, b):
        assert a.role is Role.LEADER
        admin = await pg_database.connect()
        try:  # another term begins behind a's back (an operator, a clock jump on the server)
            await admin.execute(
                "UPDATE leadership SET lease_until = '-infinity', holder_pid = NULL WHERE id = 1"
            )
        finally:
            await admin.close()
        await _until(lambda: b.role is Role.LEADER)
        await _until(lambda: a.role is Role.STANDBY)
        assert b.epoch == 2
        assert a.changes == 2  # leader, then standby


async def test_a_stopping_leader_releases_its_term_at_once(pg_database: PgDatabase) -> None:
    a, b = _leadership(pg_database, "a", lease=30), _leadership(pg_database, "b", lease=30)
    async with _started(b):
        await a.start()
        assert (a.role, b.role) == (Role.STANDBY, Role.LEADER)
        await b.stop()
        await _until(lambda: a.role is Role.LEADER, timeout=5)  # not 30 s
        assert a.epoch == 2
        await a.stop()


async def test_a_leader_whose_term_passes_unrenewed_stops_acting(pg_database: PgDatabase) -> None:
    """The monotonic clock jumps past the term (a process paused longer than the lease):
    may_act is False at once, before any renewal is tried."""
    now = [0.0]
    connector = Connector(ConnectSettings(pg_database.dsn, Password(pg_database.password)))
    a = PostgresLeadership(
        _instance("a"), connector, lease_seconds=5, renew_seconds=1, clock=lambda: now[0]
    )
    heard: list[Role] = []
    a.add_listener(lambda role, why: heard.append(role))
    async with _started(a):
        assert a.may_act()
        now[0] += 5.0
        assert not a.may_act()
        assert a.role is Role.STANDBY
        assert heard == [Role.LEADER, Role.STANDBY]


async def test_a_single_instance_always_leads_in_epoch_1() -> None:
    single = SingleInstance(_instance("solo"))
    await single.start()
    view = single.leader()
    assert (single.role, single.epoch, view.leader, single.may_act()) == (
        Role.LEADER,
        1,
        single.this,
        True,
    )
    assert view.since is not None


async def test_a_leader_paused_inside_its_renewal_does_not_hold_the_row_past_its_lease(
    pg_database: PgDatabase,
) -> None:
    """The election's sessions run with the lease as ``idle_in_transaction_session_timeout``: a
    leader stopped (SIGSTOP) inside its renewal's transaction, holding the leadership row,
    is ended by the server once the lease is over, and the next contender's lock goes through."""
    config = parse_config(
        {
            "api": {"port": 8000},
            "ha": {"dsn": pg_database.dsn, "lease_seconds": 1.0, "renew_seconds": 0.25},
        },
        environ={},
    )
    settings = election_settings(config, _instance("paused"))
    assert settings is not None
    paused = await Connector(
        dataclasses.replace(settings, password=Password(pg_database.password))
    ).connect()
    other = await pg_database.connect()
    try:
        await other.execute("CREATE TABLE row_of_the_term (id int PRIMARY KEY)")
        await other.execute("INSERT INTO row_of_the_term VALUES (1)")
        await paused.execute("BEGIN")
        await paused.execute("SELECT * FROM row_of_the_term WHERE id = 1 FOR UPDATE")
        # The paused session now sends nothing; the other's lock waits for the server to end it.
        async with other.transaction():
            await asyncio.wait_for(
                other.execute("SELECT * FROM row_of_the_term WHERE id = 1 FOR UPDATE"), 10
            )
        assert paused.is_closed() or not await _alive(paused)
    finally:
        paused.terminate()
        await other.close()


async def _alive(connection: Any) -> bool:
    try:
        await connection.fetchval("SELECT 1")
    except Exception:
        return False
    return True
