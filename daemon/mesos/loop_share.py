"""How the Mesos event stream's reader shares the one event loop with the API.

The reader handles one record, then lets the loop go round once, so a burst of offers cannot
starve anything else. When API requests were served since its previous record, it lets the loop
go round up to ``EXTRA_TURNS`` more times, for as long as requests keep coming: under an offer
flood, operators and dashboards polling ``/status/`` keep their latency (B4 in
``bench/RESULTS.md``), while the offers wait in the socket buffer, held by the master. With the
API idle the reader takes no extra turns. Heartbeats are still read within a few turns.
"""

from __future__ import annotations

import asyncio

EXTRA_TURNS = 3
"""At most this many turns for the API per record while requests keep coming: the stream then
still gets a record every 4 turns (tens of thousands of offers/s, and heartbeats within
milliseconds)."""


class LoopShare:
    """Counts API requests (``note_request``); the reader awaits ``after_record``."""

    def __init__(self, extra_turns: int = EXTRA_TURNS) -> None:
        self.extra_turns = extra_turns
        self.requests = 0
        self._seen = 0

    def note_request(self) -> None:
        self.requests += 1

    async def after_record(self) -> None:
        await asyncio.sleep(0)
        for _ in range(self.extra_turns):
            if self.requests == self._seen:
                return
            self._seen = self.requests
            await asyncio.sleep(0)
