"""The PostgreSQL state backend's foundations, below the state interface.

- ``dsn``: parsing, checking and redacting ``state.dsn`` (no driver needed);
- ``errors``: what callers catch (database unreachable, login refused, fenced, migration);
- ``connection``: ``state.password_file`` and connections with reconnect and back-off;
- ``migrations``: the versioned schema, applied once under an advisory lock;
- ``leadership``: the lease row, epochs, and ``fenced`` transactions.

The driver is asyncpg. Nothing here knows tasks or offers beyond the schema; the PostgreSQL
implementation of the state interface builds on these modules.
"""
