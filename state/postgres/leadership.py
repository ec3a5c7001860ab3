"""Leadership in the database: a lease row with an epoch, and transactions fenced by it.

The ``leadership`` table has one row: ``epoch`` (the fencing token), ``holder``, ``lease_until``
and ``since``, timed by the database's clock so that no two instances' clocks are compared.

- ``Lease.acquire`` starts a new term with one ``UPDATE ... WHERE`` that matches only an expired
  (or released) lease: the epoch goes up by one on every new term, and of several contenders
  exactly one row update wins (the others re-check the WHERE after it and match nothing).
- ``Lease.renew`` extends a live lease of the same holder and epoch, never a lapsed one: once a
  lease has lapsed, only a new term (a higher epoch) can follow.
- ``fenced(connection, epoch)`` is a transaction that first reads the epoch ``FOR KEY SHARE`` and
  fails with ``FencedError``, rolled back and having changed nothing, unless it is still
  ``epoch``. The share lock it holds until commit makes a new term's UPDATE (which changes the
  uniquely indexed epoch, so it needs the row's FOR UPDATE lock) wait for it: a fenced commit
  always lands before the next term begins, never after. A renewal changes no key and does not
  wait. A deposed leader's late write therefore fails, whatever its own clock says.

The local side of the lease: ``Term.valid_until`` is on this process's monotonic clock, counted
from before the acquire or renew was sent, so it ends no later than the database's lease; a
leader checks ``Term.expired()`` before acting outside the database (a Mesos call).

A leader whose transaction stays open (a paused process) would hold a new term back: its sessions
run with ``idle_in_transaction_session_timeout`` set to the lease
(``ConnectSettings.idle_transaction_timeout``), so the server ends such a session once the
lease has run out and the next term begins. That timeout does not cover a session the server
counts as active: a process paused in the middle of a pipelined ``executemany`` (no Sync sent
yet) or of a COPY leaves its session "active", waiting on ClientRead, for as long as the pause
lasts. So a contender given a ``lock_wait`` waits that long for the row, and when the wait runs
out ends (``pg_terminate_backend``) the sessions holding it back that can only be stale: those
locking the leadership table in a transaction begun before the lapsed lease ended (the lapsed
leader's), or more than a lease ago, and that wait for their client (idle in the transaction,
or mid-statement on ClientRead; a session at work is left alone). Then it tries once more. The
database role needs the right to see and end those sessions (every instance logging in as one
role; else ``pg_read_all_stats`` and ``pg_signal_backend``); without it the contender waits for
the paused process as before, and says so in the log. What can be ended that was not stuck: a
lapsed leader's or a standby's write still streaming a COPY (also active on ClientRead) in a
transaction as old as that, or a contender's own acquire caught between its statements; each
rolls back unacknowledged and is retried or answered as a lost connection: availability, never
an acknowledged write.

Takeover: a lease alone makes a dead leader's successor wait for the lease to lapse. So the
leader also holds a session advisory lock (``LEADERSHIP_LOCK_KEY``) on the connection it renews
on, and records that session's backend pid in ``holder_pid``. When its process dies, the server
ends the session and frees the lock. A contender that then gets the lock knows the recorded
session no longer holds it and may start a new term at once (``acquire(..., locked=True)``),
without waiting for ``lease_until``. A leader that got its term without the lock (a paused
predecessor still held it) records ``holder_pid`` NULL until it gets the lock: nobody can take
over from it before its lease lapses. A forced takeover ends the old term before its
``valid_until``: the old leader's session is gone, so it learns it was deposed from its
connection's loss, which it treats as the end of its term.

The row also says where the leader is (``api_url``, ``hostname``), for standbys to forward to.

Writes with no leader: ``without_leader(connection)`` is the other kind of transaction. It reads
the row ``FOR UPDATE`` and fails with ``LeaderLiveError``, having changed nothing, while a term is
live. Otherwise it ends the lapsed term, if one is still recorded (a new epoch with no holder), and
commits. The row lock orders it with everything else on the row:

- a new term's UPDATE waits for it, so the next leader, which loads its state after its election
  committed, sees the write; and a write that comes after the election sees the live term;
- it waits for a lapsed leader's fenced transactions still in flight (their FOR KEY SHARE), and
  the epoch it moves fails every later one: a leader paused past its lease cannot commit, on its
  stale memory, over a write made meanwhile (a launch intent over a cancel, say);
- two such writes of two standbys take turns, so ids given inside them never collide.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from scale_scheduler.state.interface import LeaderLiveError
from scale_scheduler.state.postgres.connection import milliseconds
from scale_scheduler.state.postgres.errors import FencedError

log = structlog.get_logger(__name__)

_COLUMNS = "epoch, holder, lease_until, since, api_url, hostname, holder_pid"

LEADERSHIP_LOCK_KEY = 0x5CA1E_1EAD
"""The session advisory lock (one bigint) the leader holds on its renewing connection."""

# $5: the caller holds the advisory lock on this session. Then a lease whose recorded session
# (holder_pid) held the lock may be taken before it lapses: that session is gone.
_ACQUIRE_SQL = f"""
UPDATE leadership
   SET epoch = epoch + 1, holder = $1, since = clock_timestamp(),
       lease_until = clock_timestamp() + make_interval(secs => $2),
       api_url = $3, hostname = $4,
       holder_pid = CASE WHEN $5::boolean THEN pg_backend_pid() END
 WHERE id = 1
   AND (lease_until <= clock_timestamp()
        OR ($5::boolean AND holder_pid IS NOT NULL AND holder_pid <> pg_backend_pid()))
RETURNING {_COLUMNS}
"""

_RENEW_SQL = f"""
UPDATE leadership
   SET lease_until = clock_timestamp() + make_interval(secs => $3),
       holder_pid = CASE WHEN $4::boolean THEN pg_backend_pid() END
 WHERE id = 1 AND holder = $1 AND epoch = $2 AND lease_until > clock_timestamp()
RETURNING {_COLUMNS}
"""

_RELEASE_SQL = """
UPDATE leadership SET lease_until = '-infinity', holder_pid = NULL
 WHERE id = 1 AND holder = $1 AND epoch = $2
"""

_LOCK_SQL = (
    f"SELECT {_COLUMNS}, lease_until > clock_timestamp() AS live FROM leadership WHERE id = 1 "
    "FOR UPDATE"
)

# Ends a lapsed term for good: its holder's fenced writes fail from now on.
_END_LAPSED_SQL = """
UPDATE leadership
   SET epoch = epoch + 1, holder = NULL, holder_pid = NULL, api_url = NULL, hostname = NULL,
       since = clock_timestamp()
 WHERE id = 1 AND holder IS NOT NULL AND lease_until <= clock_timestamp()
"""

# Sessions holding back a contender's new term that can only be stale: a lock on the leadership
# table (this database's, not a reader's AccessShareLock) in a transaction that began before
# the lapsed lease ended, or more than a lease ago, and waiting for their client (idle in the
# transaction, or mid-statement on ClientRead): the process, not the server, is stuck. A
# session at work (a migration's DDL, say) is left to finish. Nothing while the lease is live.
_END_STALE_SQL = """
SELECT a.pid, a.state IS NULL AS hidden,
       CASE WHEN (a.state LIKE 'idle in transaction%'
                  OR (a.state = 'active' AND a.wait_event_type = 'Client'
                      AND a.wait_event = 'ClientRead'))
             AND (a.xact_start < lapsed.lease_until
                  OR a.xact_start < clock_timestamp() - make_interval(secs => $1))
            THEN pg_terminate_backend(a.pid) END AS ended
  FROM pg_stat_activity a,
       (SELECT lease_until FROM leadership
         WHERE id = 1 AND lease_until <= clock_timestamp()) AS lapsed
 WHERE a.pid <> pg_backend_pid()
   AND a.pid IN (SELECT l.pid FROM pg_locks l
                  WHERE l.locktype = 'relation' AND l.granted
                    AND l.database = (SELECT oid FROM pg_database
                                       WHERE datname = current_database())
                    AND l.relation = 'leadership'::regclass
                    AND l.mode <> 'AccessShareLock')
"""

_READ_SQL = (
    f"SELECT {_COLUMNS}, lease_until > clock_timestamp() AS live FROM leadership WHERE id = 1"
)


@dataclass(frozen=True)
class Term:
    """One holder's term: its epoch and how long it may act."""

    holder: str
    epoch: int
    lease_until: datetime
    """The lease's end on the database's clock."""
    since: datetime
    valid_until: float
    """The lease's end on this process's monotonic clock (never later than the database's)."""

    def expired(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) >= self.valid_until


@dataclass(frozen=True)
class LeadershipView:
    """The leadership row as read: who holds (or last held) the lease, and whether it is live."""

    epoch: int
    holder: str | None
    lease_until: datetime
    since: datetime
    live: bool
    api_url: str | None = None
    hostname: str | None = None
    holder_pid: int | None = None
    """The backend of the leader's session holding the advisory lock (None: not held)."""


class Lease:
    """Acquire, renew and release the lease for one holder (an instance's name)."""

    def __init__(
        self,
        holder: str,
        lease_seconds: float,
        *,
        api_url: str = "",
        hostname: str = "",
        lock_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not holder:
            raise ValueError("a lease holder needs a name")
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        if lock_wait is not None and lock_wait <= 0:
            raise ValueError("lock_wait must be positive (or None: wait as long as it takes)")
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.lock_wait = lock_wait
        """Seconds ``acquire`` waits for a lapsed lease's row before ending the stale sessions
        that hold it (module docstring); None waits for them however long they take."""
        self.api_url = api_url
        self.hostname = hostname
        self._clock = clock

    async def acquire(self, connection: asyncpg.Connection, *, locked: bool = False) -> Term | None:
        """A new term (epoch + 1) when the lease has lapsed or was released; else None.

        ``locked``: ``connection``'s session holds the leadership advisory lock (``try_lock``):
        the term is then taken also from a live lease whose session held the lock, as that
        session is gone, and this session is recorded as the one holding it.
        """
        sent = self._clock()
        args = (self.holder, self.lease_seconds, self.api_url, self.hostname, locked)
        try:
            async with lock_wait(connection, self.lock_wait):
                row = await connection.fetchrow(_ACQUIRE_SQL, *args)
        except asyncpg.exceptions.LockNotAvailableError:
            assert self.lock_wait is not None  # only a lock wait times out
            if not await end_stale_sessions(connection, self.lease_seconds, self.lock_wait):
                return None
            try:
                async with lock_wait(connection, self.lock_wait):
                    row = await connection.fetchrow(_ACQUIRE_SQL, *args)
            except asyncpg.exceptions.LockNotAvailableError:
                return None
        return None if row is None else self._term(row, sent)

    async def renew(
        self, connection: asyncpg.Connection, term: Term, *, locked: bool = False
    ) -> Term | None:
        """The same term with a later end, or None when it lapsed or was taken over.
        ``locked``: ``connection``'s session holds the advisory lock (recorded; else cleared)."""
        sent = self._clock()
        row = await connection.fetchrow(
            _RENEW_SQL, self.holder, term.epoch, self.lease_seconds, locked
        )
        return None if row is None else self._term(row, sent)

    async def release(self, connection: asyncpg.Connection, term: Term) -> bool:
        """End ``term`` now, so a standby need not wait for the lease; False if not ours."""
        status = await connection.execute(_RELEASE_SQL, self.holder, term.epoch)
        return bool(status.endswith(" 1"))

    def _term(self, row: asyncpg.Record, sent: float) -> Term:
        return Term(
            holder=str(row["holder"]),
            epoch=int(row["epoch"]),
            lease_until=row["lease_until"],
            since=row["since"],
            valid_until=sent + self.lease_seconds,
        )


async def end_stale_sessions(
    connection: asyncpg.Connection, lease_seconds: float, wait: float
) -> list[int]:
    """End the sessions that hold a lapsed lease's row and can only be stale (module
    docstring); their backend pids. Logged: each is a paused or hung process's transaction,
    rolled back. Empty while the lease is live, and when this role may not end them or cannot
    see their state (logged: the grants it needs)."""
    try:
        async with lock_wait(connection, wait):
            rows = await connection.fetch(_END_STALE_SQL, lease_seconds)
    except asyncpg.exceptions.InsufficientPrivilegeError as exc:
        log.warning(
            "leadership_stale_session_not_ended",
            reason="the database role may not end other roles' sessions: log in as one role, "
            "or grant pg_signal_backend",
            error=str(exc),
        )
        return []
    except asyncpg.exceptions.LockNotAvailableError:  # the table itself is locked (DDL)
        return []
    hidden = [int(row["pid"]) for row in rows if row["hidden"]]
    if hidden:
        log.warning(
            "leadership_stale_session_not_ended",
            pids=hidden,
            reason="the database role cannot see other roles' sessions' state: log in as one "
            "role, or grant pg_read_all_stats and pg_signal_backend",
        )
    ended = [int(row["pid"]) for row in rows if row["ended"]]
    if ended:
        log.warning(
            "leadership_stale_session_ended",
            pids=ended,
            reason="it held the lapsed lease's row back from a new term",
        )
    return ended


@asynccontextmanager
async def lock_wait(connection: asyncpg.Connection, seconds: float | None) -> AsyncIterator[None]:
    """Statements inside wait at most ``seconds`` for a lock (``LockNotAvailableError``), in a
    transaction of their own; None: as long as it takes, as they are (no transaction)."""
    if seconds is None:
        yield
        return
    async with connection.transaction():
        await connection.execute(f"SET LOCAL lock_timeout = {milliseconds(seconds)}")
        yield


async def try_lock(connection: asyncpg.Connection) -> bool:
    """Take the leadership advisory lock for ``connection``'s session, if no session holds it.

    Session locks stack: call it only while this session does not hold the lock already.
    """
    return bool(await connection.fetchval("SELECT pg_try_advisory_lock($1)", LEADERSHIP_LOCK_KEY))


async def unlock(connection: asyncpg.Connection) -> None:
    """Give the advisory lock back (a standby that took it but found a live leader)."""
    await connection.execute("SELECT pg_advisory_unlock($1)", LEADERSHIP_LOCK_KEY)


async def read_leadership(connection: asyncpg.Connection) -> LeadershipView:
    return _view(await connection.fetchrow(_READ_SQL))


def _view(row: asyncpg.Record | None) -> LeadershipView:
    if row is None:
        raise LookupError("the leadership row is missing (run the migrations)")
    return LeadershipView(
        epoch=int(row["epoch"]),
        holder=row["holder"],
        lease_until=row["lease_until"],
        since=row["since"],
        live=bool(row["live"]),
        api_url=row["api_url"],
        hostname=row["hostname"],
        holder_pid=row["holder_pid"],
    )


@asynccontextmanager
async def fenced(connection: asyncpg.Connection, epoch: int) -> AsyncIterator[asyncpg.Connection]:
    """A transaction that commits only while ``epoch`` is the current term.

    Raises ``FencedError`` (the transaction rolled back, nothing changed) when it is not.
    """
    async with connection.transaction():
        current = await connection.fetchval(
            "SELECT epoch FROM leadership WHERE id = 1 FOR KEY SHARE"
        )
        if current != epoch:
            raise FencedError(epoch, None if current is None else int(current))
        yield connection


@asynccontextmanager
async def without_leader(connection: asyncpg.Connection) -> AsyncIterator[LeadershipView]:
    """A transaction that commits only while no term is live (see "Writes with no leader").

    Raises ``LeaderLiveError`` (rolled back, nothing changed) while one is. Yields the row as it
    was read; a lapsed term it names has been ended (a new epoch, no holder) in this transaction.
    """
    async with connection.transaction():
        view = _view(await connection.fetchrow(_LOCK_SQL))
        if view.live and view.holder:
            raise LeaderLiveError(view.holder, view.api_url, view.epoch)
        if view.holder is not None:
            await connection.execute(_END_LAPSED_SQL)
        yield view
