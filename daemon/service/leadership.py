"""Leadership: whether this instance leads, behind one small protocol with two implementations.

- ``SingleInstance`` (no election: the SQLite backend without ``ha.dsn``): always the leader,
  epoch 1, from start to stop.
- ``PostgresLeadership``: the lease of ``state/postgres/leadership.py``, acquired or renewed
  every ``ha.renew_seconds`` for ``ha.lease_seconds``, plus the session advisory lock on the
  same dedicated connection, so that the leader process's death frees leadership at once. The
  leader steps down (listeners hear ``Role.STANDBY``) when a renewal is refused, when its term
  passes ``valid_until`` on the monotonic clock before a renewal came back, and when its
  connection to the database is lost (its lock went with the session: another instance may
  lead already). The rules themselves are ``leadership_terms.TermState``'s.

Listeners are plain callables run on the event loop; ``may_act()`` is what a leader checks
before each Mesos call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol

import asyncpg
import structlog

from scale_scheduler.daemon.service.config import Config
from scale_scheduler.daemon.service.leadership_terms import (
    EpochWentBackError,
    Instance,
    LeaderView,
    Role,
    TermState,
)
from scale_scheduler.state.postgres.connection import (
    Connector,
    ConnectSettings,
    is_connection_loss,
)
from scale_scheduler.state.postgres.errors import PostgresStateError
from scale_scheduler.state.postgres.leadership import (
    LeadershipView,
    Lease,
    Term,
    read_leadership,
    try_lock,
    unlock,
)
from scale_scheduler.state.postgres.migrations import migrate
from scale_scheduler.state.postgres.password import read_password_file

log = structlog.get_logger(__name__)

RoleListener = Callable[[Role, str], None]
"""Called with the new role and why it changed."""


class Leadership(Protocol):
    this: Instance

    @property
    def role(self) -> Role: ...

    @property
    def epoch(self) -> int: ...

    @property
    def changes(self) -> int:
        """How many times this instance's role changed."""
        ...

    @property
    def high_availability(self) -> bool:
        """True when other instances may lead (an election runs)."""
        ...

    def may_act(self) -> bool:
        """This instance leads, and its term has not passed on the monotonic clock."""
        ...

    def leader(self) -> LeaderView:
        """Who leads, as last learned."""
        ...

    def add_listener(self, listener: RoleListener) -> None: ...

    async def start(self) -> None:
        """Take part: the first attempt to lead is made before this returns."""
        ...

    async def stop(self) -> None:
        """Stop taking part; a leader hands its term back so another may lead at once."""
        ...


class SingleInstance:
    """One instance, no election: the leader from ``start`` on, in epoch 1."""

    high_availability = False

    def __init__(self, this: Instance) -> None:
        self.this = this
        self._since: datetime | None = None

    @property
    def role(self) -> Role:
        return Role.LEADER

    @property
    def epoch(self) -> int:
        return 1

    @property
    def changes(self) -> int:
        return 1 if self._since is not None else 0

    def may_act(self) -> bool:
        return True

    def leader(self) -> LeaderView:
        return LeaderView(self.this, 1, self._since)

    def add_listener(self, listener: RoleListener) -> None:
        """Nothing to hear: the role never changes."""

    async def start(self) -> None:
        self._since = datetime.now(timezone.utc)

    async def stop(self) -> None:
        pass


class PostgresLeadership:
    """An election among instances sharing one PostgreSQL database."""

    high_availability = True

    def __init__(
        self,
        this: Instance,
        connector: Connector,
        *,
        lease_seconds: float,
        renew_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.this = this
        self._connector = connector
        self._lease = Lease(
            this.instance,
            lease_seconds,
            api_url=this.api_url,
            hostname=this.hostname,
            # The waits for a lapsed lease's row (an UPDATE can wait on the tuple, then on the
            # transaction; once before ending the stale sessions that hold it, once after) and
            # the ending itself fit in one step, which gives up after renew_seconds.
            lock_wait=renew_seconds / 6,
            clock=clock,
        )
        self._renew_seconds = renew_seconds
        self._clock = clock
        self._state = TermState()
        self._term: Term | None = None
        self._view: LeadershipView | None = None
        self._connection: asyncpg.Connection | None = None
        self._locked = False
        self._listeners: list[RoleListener] = []
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._stopping = False

    # -- the protocol ---------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self._state.role

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def changes(self) -> int:
        return self._state.changes

    def may_act(self) -> bool:
        if self._state.may_act(self._clock()):
            return True
        if self._state.role is Role.LEADER:  # the term passed before the timer ran
            self._lose("the term passed on this instance's clock before it was renewed")
        return False

    def leader(self) -> LeaderView:
        term = self._term
        if self._state.role is Role.LEADER and term is not None:
            return LeaderView(self.this, term.epoch, term.since)
        view = self._view
        if view is None or not view.live or not view.holder:
            epoch = max(self._state.epoch, view.epoch if view is not None else 0)
            return LeaderView(None, epoch, view.since if view is not None else None)
        leader = Instance(view.holder, view.api_url or "", view.hostname or "")
        return LeaderView(leader, view.epoch, view.since)

    def add_listener(self, listener: RoleListener) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        connection = await self._connect()
        await migrate(connection)
        await self._step()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="leadership")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._cancel_expiry()
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed():
            return
        try:
            term = self._term
            if self._state.role is Role.LEADER and term is not None:
                await asyncio.wait_for(self._lease.release(connection, term), self._renew_seconds)
                log.info("leadership_released", epoch=term.epoch, instance=self.this.instance)
            await connection.close(timeout=self._renew_seconds)
        except Exception as exc:  # the server is gone: the lease lapses by itself
            log.warning("leadership_release_failed", error=repr(exc))
            connection.terminate()
        self._state.lost()

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        # Ends on the flag as well as on cancellation: a cancellation that arrives as a step's
        # wait_for completes can be lost (asyncio before 3.12), and a loop that kept stepping
        # would keep a stopping instance campaigning, and its stop() waiting, for ever.
        while not self._stopping:
            await asyncio.sleep(self._renew_seconds)
            if self._stopping:
                return
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except PostgresStateError as exc:  # unreachable for a while: keep trying
                log.warning("leadership_database_unavailable", error=str(exc))
            except Exception:
                log.exception("leadership_step_failed")

    async def _step(self) -> None:
        try:
            connection = await self._connect()
            # A statement that hangs (the server frozen, the network cut) gives up: a standby's
            # after ha.renew_seconds, a leader's when its term ends (the expiry timer deposes it
            # then anyway), so a slow renewal does not depose a leader whose term still runs.
            timeout = self._renew_seconds
            if self._state.role is Role.LEADER:
                timeout = max(timeout, self._state.valid_until - self._clock())
            await asyncio.wait_for(self._lead_or_stand_by(connection), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            self._drop_connection("no answer from the database in time")
        except Exception as exc:
            if not is_connection_loss(exc, self._connection):
                raise
            self._drop_connection(f"the database connection failed: {exc!r}")

    async def _lead_or_stand_by(self, connection: asyncpg.Connection) -> None:
        if self._state.role is Role.LEADER:
            term = self._term
            assert term is not None
            if not self._locked:
                self._locked = await try_lock(connection)
            renewed = await self._lease.renew(connection, term, locked=self._locked)
            if renewed is None:
                self._lose("the lease was not renewed: it lapsed or another instance's term began")
                return
            self._term = renewed
            self._state.renewed(renewed.epoch, renewed.valid_until)
            self._arm_expiry()
            return
        locked = self._locked or await try_lock(connection)
        term = await self._lease.acquire(connection, locked=locked)
        if term is None:
            if locked:
                await unlock(connection)
            self._locked = False
            view = await read_leadership(connection)
            self._view = view
            self._state.saw(view.epoch)
            return
        self._locked = locked
        try:
            self._state.elected(term.epoch, term.valid_until)
        except EpochWentBackError as exc:
            log.error("leadership_epoch_went_back", error=str(exc), instance=self.this.instance)
            await self._lease.release(connection, term)
            return
        self._term = term
        self._arm_expiry()
        log.info(
            "leadership_acquired",
            instance=self.this.instance,
            epoch=term.epoch,
            advisory_lock=locked,
        )
        self._notify(Role.LEADER, f"term {term.epoch} began")

    # -- connection and expiry ------------------------------------------------------------------

    async def _connect(self) -> asyncpg.Connection:
        connection = self._connection
        if connection is not None and not connection.is_closed():
            return connection
        connection = await self._connector.connect()
        connection.add_termination_listener(self._on_connection_closed)
        self._connection = connection
        self._locked = False
        return connection

    def _on_connection_closed(self, connection: asyncpg.Connection) -> None:
        if connection is self._connection and not self._stopping:
            self._lose("the connection holding the leadership lock was lost")

    def _drop_connection(self, reason: str) -> None:
        connection, self._connection = self._connection, None
        self._locked = False
        if connection is not None:
            connection.terminate()
        log.warning("leadership_connection_dropped", reason=reason, role=self._state.role.value)
        self._lose(reason)

    def _arm_expiry(self) -> None:
        self._cancel_expiry()
        delay = max(0.0, self._state.valid_until - self._clock())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._check_expiry)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _check_expiry(self) -> None:
        self._expiry = None
        if self._state.role is Role.LEADER and not self._state.may_act(self._clock()):
            self._lose("the term passed on this instance's clock before it was renewed")
        elif self._state.role is Role.LEADER:
            self._arm_expiry()

    def _lose(self, reason: str) -> None:
        term = self._term
        if not self._state.lost():
            return
        self._term = None
        self._cancel_expiry()
        log.warning(
            "leadership_lost",
            instance=self.this.instance,
            epoch=term.epoch if term is not None else None,
            reason=reason,
        )
        self._notify(Role.STANDBY, reason)

    def _notify(self, role: Role, reason: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(role, reason)
            except Exception:
                log.exception("leadership_listener_failed", role=role.value)


def election_settings(config: Config, this: Instance) -> ConnectSettings | None:
    """Where the election runs (``ha.dsn``, or ``state.dsn`` with the PostgreSQL backend), or
    None for a single instance."""
    if config.ha.dsn:
        dsn, password_file, key = config.ha.dsn, config.ha.password_file, "ha.password_file"
    elif config.state.backend == "postgresql":
        dsn, password_file = config.state.dsn, config.state.password_file
        key = "state.password_file"
    else:
        return None
    password = read_password_file(password_file, key) if password_file else None
    # Each attempt of a step fits in ha.renew_seconds; a leader that cannot reach the database
    # steps down at its term's end anyway, so retrying longer only delays a standby's takeover.
    return ConnectSettings(
        dsn,
        password,
        connect_timeout=config.ha.renew_seconds,
        backoff_initial=min(0.2, config.ha.renew_seconds / 4),
        backoff_max=config.ha.renew_seconds,
        give_up_after=max(30.0, config.ha.lease_seconds * 3),
        server_settings={"application_name": f"scale-scheduler leadership {this.instance}"[:63]},
        # A leader paused inside its renewal holds the leadership row: the server ends that
        # session once the lease is over, so the next term is not held back until it wakes.
        idle_transaction_timeout=config.ha.lease_seconds,
    )


def create_leadership(config: Config, this: Instance) -> Leadership:
    settings = election_settings(config, this)
    if settings is None:
        return SingleInstance(this)
    return PostgresLeadership(
        this,
        Connector(settings),
        lease_seconds=config.ha.lease_seconds,
        renew_seconds=config.ha.renew_seconds,
    )
