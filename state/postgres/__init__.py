"""The PostgreSQL state backend.

- ``backend``: ``PostgresState``, the state interface on PostgreSQL (group commit, exactly-once
  writes across lost connections, the optional epoch fence);
- ``statements``: each durable change as PostgreSQL statements; ``reads``: the reads' SQL;
- ``copy_from_sqlite``: ``scale-scheduler state copy`` from a SQLite deployment;
- ``dsn``: parsing, checking and redacting ``state.dsn`` (no driver needed);
- ``errors``: what callers catch (database unreachable, login refused, fenced, migration);
- ``connection``: ``state.password_file`` and connections with reconnect and back-off;
- ``migrations``: the versioned schema, applied once under an advisory lock;
- ``leadership``: the lease row, epochs, and ``fenced`` transactions.

The driver is asyncpg: pipelined ``executemany`` and binary COPY serve the batch paths.
"""
