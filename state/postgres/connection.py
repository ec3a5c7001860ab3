"""Connections to PostgreSQL: reconnecting with back-off, and what a lost connection looks like.

``Connector.connect`` retries an unreachable server with exponential back-off (with jitter, so
a fleet of instances does not reconnect in lock-step) until ``give_up_after`` seconds have passed,
then raises ``DatabaseUnreachableError``; a refused login or a missing database raises
``DatabaseLoginError`` at once. ``ManagedConnection`` keeps one long-lived connection (the
writer's, the leadership's) and replaces it through the connector when it has been lost.

Every session is opened with ``synchronous_commit = on``: a committed transaction is on the
server's disk (and its synchronous standbys') before the commit returns, whatever the server's
default is, so an answer given after a commit means durable.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from scale_scheduler.state.postgres.dsn import describe_target
from scale_scheduler.state.postgres.errors import DatabaseLoginError, DatabaseUnreachableError
from scale_scheduler.state.postgres.password import Password

log = structlog.get_logger(__name__)

SERVER_SETTINGS: Mapping[str, str] = {
    "synchronous_commit": "on",
    "application_name": "scale-scheduler",
}
"""Session settings every connection starts with (``ConnectSettings.server_settings`` adds)."""

_LOSS_TYPES: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable, name lookup failed
    TimeoutError,  # asyncio.TimeoutError is TimeoutError from Python 3.11
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.AdminShutdownError,  # 57P01: pg_terminate_backend, a fast shutdown
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up, in recovery
    asyncpg.exceptions.TooManyConnectionsError,  # 53300
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,  # 25P03: the session was ended
)
_LOGIN_TYPES: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # 28000, 28P01 bad password
    asyncpg.exceptions.InvalidCatalogNameError,  # 3D000: no such database
)


def is_connection_loss(exc: BaseException, connection: asyncpg.Connection | None = None) -> bool:
    """True when ``exc`` means the connection failed or is gone (not that a statement was
    wrong): the operation's outcome may be unknown, and a new connection may succeed.

    Pass the ``connection`` the operation used: a session the server ended while a query was
    being sent can surface as asyncpg's InterfaceError or InternalClientError ("cannot switch to
    state ..."), which mean a loss only when the connection is closed afterwards.
    """
    if isinstance(exc, _LOSS_TYPES):
        return True
    return (
        connection is not None
        and connection.is_closed()
        and isinstance(exc, (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError))
    )


def milliseconds(seconds: float) -> int:
    """A duration setting's value (PostgreSQL takes milliseconds; 0 would mean no limit)."""
    return max(1, math.ceil(seconds * 1000))


@dataclass(frozen=True)
class ConnectSettings:
    """How to reach the database and how long to keep trying."""

    dsn: str
    password: Password | None = None
    connect_timeout: float = 5.0
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    give_up_after: float = 30.0
    """Seconds of failed attempts after which ``connect`` raises; 0 tries once."""
    server_settings: Mapping[str, str] = field(default_factory=dict)
    idle_transaction_timeout: float | None = None
    """Seconds a session may sit idle inside a transaction before the server ends it
    (``idle_in_transaction_session_timeout``). A leader paused mid-transaction holds the
    leadership row's share lock and with it every new term back: past this, the server ends
    its session and the next term may begin. None: the server's setting."""

    def session_settings(self) -> dict[str, str]:
        """Every session setting a connection starts with."""
        session = {**SERVER_SETTINGS, **self.server_settings}
        if self.idle_transaction_timeout is not None:
            session["idle_in_transaction_session_timeout"] = str(
                milliseconds(self.idle_transaction_timeout)
            )
        return session


class Connector:
    """Opens connections to one database, retrying with back-off while it is unreachable."""

    def __init__(
        self,
        settings: ConnectSettings,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.target = describe_target(settings.dsn)
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()

    async def connect(self) -> asyncpg.Connection:
        """A new connection; ``DatabaseUnreachableError`` once ``give_up_after`` has passed."""
        settings = self.settings
        started = self._clock()
        ceiling = min(settings.backoff_initial, settings.backoff_max)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._connect_once()
            except _LOGIN_TYPES as exc:
                raise DatabaseLoginError(
                    f"database {self.target} refused the connection: {exc}"
                ) from None
            except _LOSS_TYPES as exc:
                cause = f"{type(exc).__name__}: {exc}"
            delay = self._rng.uniform(ceiling / 2, ceiling)
            waited = self._clock() - started
            if waited + delay > settings.give_up_after:
                raise DatabaseUnreachableError(
                    f"database unreachable: {self.target} after {attempt} attempt(s) in "
                    f"{waited:.1f}s: {cause}"
                )
            log.warning(
                "postgres_connect_failed",
                target=self.target,
                attempt=attempt,
                retry_in=round(delay, 3),
                error=cause,
            )
            await self._sleep(delay)
            ceiling = min(ceiling * 2, settings.backoff_max)

    async def _connect_once(self) -> asyncpg.Connection:
        settings = self.settings
        password = settings.password.reveal if settings.password is not None else None
        return await asyncpg.connect(
            settings.dsn,
            password=password,  # a callable: the value is read only while authenticating
            timeout=settings.connect_timeout,
            server_settings=settings.session_settings(),
        )


class ManagedConnection:
    """One long-lived connection, replaced (with the connector's back-off) once it is lost."""

    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        self._connection: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self.reconnects = 0

    async def get(self) -> asyncpg.Connection:
        """The open connection, or a new one when there is none or it was lost."""
        connection = self._connection
        if connection is not None and not connection.is_closed():
            return connection
        async with self._lock:
            connection = self._connection
            if connection is not None and not connection.is_closed():
                return connection
            if connection is not None:
                connection.terminate()
                self.reconnects += 1
                log.warning("postgres_reconnecting", target=self._connector.target)
            self._connection = await self._connector.connect()
            return self._connection

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            await connection.close()
