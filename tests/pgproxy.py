"""A TCP proxy in front of the test PostgreSQL server that can cut connections on cue: at the
next COMMIT (after the server answered it, or before the server saw it), or all at once (the
database is unreachable until ``start`` again). What the client sees is a real lost connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pgserver import PgDatabase
from ports import free_port

COMMIT = b"COMMIT"


@dataclass
class CommitCut:
    """Cut the connection that sends the next COMMIT: ``forward`` lets the server run it (and
    drops its answer), else the server never sees it (and rolls the transaction back)."""

    forward: bool
    done: asyncio.Event = field(default_factory=asyncio.Event)


class PgProxy:
    def __init__(self, database: PgDatabase) -> None:
        self.database = database
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.cut: CommitCut | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://scale@127.0.0.1:{self.port}/{self.database.name}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Refuse new connections and cut every open one."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def cut_next_commit(self, *, forward: bool) -> CommitCut:
        self.cut = CommitCut(forward)
        return self.cut

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server = self.database.server
        server_r, server_w = await asyncio.open_connection(server.host, server.port)
        self._writers.update((client_w, server_w))
        link = _Link()
        upstream = asyncio.create_task(self._upstream(client_r, server_w, client_w, link))
        downstream = asyncio.create_task(self._downstream(server_r, client_w, link))
        await asyncio.wait([upstream, downstream], return_when=asyncio.FIRST_COMPLETED)
        for task in (upstream, downstream):
            task.cancel()
        for writer in (client_w, server_w):
            writer.transport.abort()
            self._writers.discard(writer)

    async def _upstream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_w: asyncio.StreamWriter,
        link: _Link,
    ) -> None:
        while data := await reader.read(65536):
            cut = self.cut
            if cut is not None and COMMIT in data:
                self.cut = None
                if not cut.forward:  # the server never sees it: it rolls back
                    client_w.transport.abort()
                    cut.done.set()
                    return
                link.swallow = cut  # the server's answer is dropped with the connection
            writer.write(data)
            await writer.drain()

    @staticmethod
    async def _downstream(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        while data := await reader.read(65536):
            if link.swallow is not None:
                writer.transport.abort()
                link.swallow.done.set()
                return
            writer.write(data)
            await writer.drain()


@dataclass
class _Link:
    """One proxied connection: set ``swallow`` once its COMMIT went through to be cut."""

    swallow: CommitCut | None = None
