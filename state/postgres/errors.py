"""Errors of the PostgreSQL backend. None of their messages holds a password."""

from __future__ import annotations


class PostgresStateError(Exception):
    """The PostgreSQL backend cannot do what was asked."""


class PasswordFileError(PostgresStateError):
    """``state.password_file`` cannot be read or holds no password."""


class DatabaseUnreachableError(PostgresStateError):
    """No connection to the database could be made (or kept) within the allowed attempts.

    Transient by nature: the server is down, restarting, or the network is cut. The message
    names the target (host, port, database; never the password) and the last cause.
    """


class DatabaseLoginError(PostgresStateError):
    """The server answered but refused the login or the database: retrying will not help."""


class MigrationError(PostgresStateError):
    """The schema cannot be brought to this program's version (e.g. it is newer)."""


class FencedError(PostgresStateError):
    """A leader's transaction ran with an epoch that is no longer current: it was rolled back
    and changed nothing. The caller has been deposed and must stop acting as leader."""

    def __init__(self, epoch: int, current: int | None) -> None:
        now = "no leadership row" if current is None else f"the current epoch is {current}"
        super().__init__(f"fenced: this transaction's epoch {epoch} is no longer current ({now})")
        self.epoch = epoch
        self.current = current
