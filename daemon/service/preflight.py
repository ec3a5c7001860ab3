"""The checks ``run`` makes before it serves, which ``check-config`` makes instead of serving.

``CHECKS`` is the one list: ``run`` and ``check-config`` both call ``run_checks``, so a
configuration ``check-config`` passes is one ``run`` starts with, and one it refuses exits with
the status ``run`` would. The checks change nothing: the database is read, never created or
migrated. A check returns warnings (risky but usable) or raises; ``fatal_error`` turns what it
raised, or what start-up raised later, into an exit status and one line naming the setting.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass

from scale_scheduler.api.auth import read_token_file
from scale_scheduler.daemon.mesos.driver_factory import check_driver
from scale_scheduler.daemon.mesos.framework_info import CredentialsError, read_credentials
from scale_scheduler.daemon.service.config import Config, ConfigError
from scale_scheduler.daemon.service.exit_codes import ExitCode, FatalError
from scale_scheduler.state.database_check import check_database_file
from scale_scheduler.state.postgres.dsn import dsn_has_password
from scale_scheduler.state.postgres.errors import PasswordFileError, PostgresStateError
from scale_scheduler.state.postgres.password import read_password_file
from scale_scheduler.state.store import StoreError


@dataclass(frozen=True)
class ConfigWarning:
    """A setting the daemon can run with, though it is probably not what the operator wants."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


Check = Callable[[Config], list[ConfigWarning]]


def _private_file_warnings(key: str, path: str) -> list[ConfigWarning]:
    """A warning when a secret's file is open to users other than its owner."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:  # gone since it was read: the daemon has what it read
        return []
    if not mode & 0o077:
        return []
    return [
        ConfigWarning(
            key,
            f"{path} is open to users other than its owner (mode {mode:04o}); "
            f"make it private: chmod 600 {path}",
        )
    ]


def check_token_file(config: Config) -> list[ConfigWarning]:
    """``api.token_file`` holds a usable token, in a file only its owner can read."""
    path = config.api.token_file
    if not path:
        return []
    read_token_file(path)  # raises ConfigError naming the key
    return _private_file_warnings("api.token_file", path)


def check_secret_file(config: Config) -> list[ConfigWarning]:
    """``mesos.secret_file`` holds a usable secret, in a file only its owner can read."""
    if read_credentials(config.mesos) is None:  # raises CredentialsError naming the key
        return []
    return _private_file_warnings("mesos.secret_file", config.mesos.secret_file)


def check_password_file(config: Config) -> list[ConfigWarning]:
    """``state.password_file`` holds a password, in a file only its owner can read; a password
    written into ``state.dsn`` instead is warned about (it travels wherever the config does)."""
    state = config.state
    warnings: list[ConfigWarning] = []
    if state.password_file:
        try:
            read_password_file(state.password_file)
        except PasswordFileError as exc:
            raise ConfigError(str(exc), "state.password_file") from None
        warnings += _private_file_warnings("state.password_file", state.password_file)
    if dsn_has_password(state.dsn):
        warnings.append(
            ConfigWarning(
                "state.dsn",
                "holds a password, which travels wherever the config or environment does; "
                "put it in state.password_file (a file only the daemon's user can read)",
            )
        )
    return warnings


def check_election(config: Config) -> list[ConfigWarning]:
    """``ha.password_file`` is usable; ``ha.dsn`` beside SQLite is warned about: the instances
    elect a leader, but each keeps its own state."""
    ha = config.ha
    if not ha.dsn or config.state.backend == "postgresql":
        return []
    warnings: list[ConfigWarning] = []
    if ha.password_file:
        try:
            read_password_file(ha.password_file, "ha.password_file")
        except PasswordFileError as exc:
            raise ConfigError(str(exc), "ha.password_file") from None
        warnings += _private_file_warnings("ha.password_file", ha.password_file)
    warnings.append(
        ConfigWarning(
            "ha.dsn",
            "the instances elect their leader in PostgreSQL but each keeps its own state in "
            "state.path: a new leader does not see the queue of the one before (for trying "
            "failover; shared state needs state.backend: postgresql)",
        )
    )
    return warnings


BACKENDS = ("sqlite", "postgresql")


def check_state_backend(config: Config) -> list[ConfigWarning]:
    """The backend is one this release keeps its state in (``sqlite``, ``postgresql``; the
    database itself is reached at start-up, which retries while it is away)."""
    if config.state.backend not in BACKENDS:
        raise ConfigError(f"state.backend: expected one of {', '.join(BACKENDS)}", "state.backend")
    return []


def check_mesos_driver(config: Config) -> list[ConfigWarning]:
    check_driver(config)
    return []


def check_database(config: Config) -> list[ConfigWarning]:
    """``state.path`` is a database the store can open, or a file it can create."""
    if config.state.backend != "sqlite":
        return []
    check_database_file(config.state.path)
    return []


CHECKS: tuple[Check, ...] = (
    check_token_file,
    check_secret_file,
    check_password_file,
    check_election,
    check_mesos_driver,
    check_state_backend,
    check_database,
)


def run_checks(config: Config) -> list[ConfigWarning]:
    """Every check, in order; the warnings, or ``FatalError`` for the first that fails."""
    warnings: list[ConfigWarning] = []
    for check in CHECKS:
        try:
            warnings += check(config)
        except Exception as exc:
            fatal = fatal_error(exc)
            if fatal is None:
                raise
            raise fatal from None
    return warnings


def fatal_error(exc: BaseException) -> FatalError | None:
    """The exit status and message of a start-up failure; ``None`` for an unexpected one."""
    if isinstance(exc, FatalError):
        return exc
    if isinstance(exc, StoreError):
        return FatalError(ExitCode.STORE_ERROR, f"state.path {exc}")
    if isinstance(exc, PasswordFileError):
        return FatalError(ExitCode.CONFIG_ERROR, str(exc))
    if isinstance(exc, PostgresStateError):  # unreachable, login refused, schema too new
        return FatalError(ExitCode.STORE_ERROR, f"state.dsn: {exc}")
    if isinstance(exc, sqlite3.DatabaseError):
        # Damage past the pages the start-up checks read, found when the state is loaded.
        return FatalError(
            ExitCode.STORE_ERROR,
            f"state.path: the database cannot be read ({exc}); restore a backup, or salvage "
            "it with sqlite3's .recover",
        )
    if isinstance(exc, (ConfigError, CredentialsError)):
        return FatalError(ExitCode.CONFIG_ERROR, str(exc))
    if isinstance(exc, PasswordFileError):
        return FatalError(ExitCode.CONFIG_ERROR, str(exc))
    if isinstance(exc, PostgresStateError):
        # The election's database (ha.dsn) cannot be reached, logged in to or migrated.
        return FatalError(ExitCode.STORE_ERROR, f"leadership database: {exc}")
    return None


_KINDS = {ExitCode.CONFIG_ERROR: "config error", ExitCode.STORE_ERROR: "database error"}


def print_fatal(error: FatalError) -> None:
    """The error as one line on stderr, where an operator starting the daemon looks."""
    kind = _KINDS.get(error.code, "error")
    print(f"scale-scheduler: {kind}: {error}", file=sys.stderr, flush=True)
