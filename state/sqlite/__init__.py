"""The SQLite backend of ``state.interface``: ``SqliteState`` over ``state.store.Store``.

Every SQL statement of the program lives in this package (and the migrations); nothing above
``state/`` sees SQL or rows.
"""

from scale_scheduler.state.sqlite.backend import SqliteState

__all__ = ["SqliteState"]
