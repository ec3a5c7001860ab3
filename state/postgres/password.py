"""``state.password_file``: the PostgreSQL password, read once at start-up, never shown.

``read_password_file`` is blocking (call it from a thread, or before the loop starts); the
``Password`` it returns never shows its value in a ``repr``, a log or an error. No driver needed:
the start-up checks read it before anything connects.
"""

from __future__ import annotations

from pathlib import Path

from scale_scheduler.state.postgres.errors import PasswordFileError

PASSWORD_KEY = "state.password_file"


class Password:
    """A database password (``repr`` never shows it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Password(<hidden>)"


def read_password_file(path: str | Path, key: str = PASSWORD_KEY) -> Password:
    """The password in ``path`` (its first line, trailing newline dropped); blocking.

    Raises ``PasswordFileError`` naming ``key`` (the setting, ``state.password_file`` unless
    told) and the problem, never the file's content.
    """
    problem = _password_problem(Path(path))
    if isinstance(problem, str):
        raise PasswordFileError(f"{key}: {problem}")
    return problem


def _password_problem(path: Path) -> Password | str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    except UnicodeDecodeError:
        return f"{path} is not UTF-8 text"
    lines = text.splitlines()
    value = lines[0] if lines else ""
    if not value:
        return f"{path} is empty (the password is its first line)"
    return Password(value)
