"""Where the leading Mesos master is: a static list of masters, or ZooKeeper leader detection.

A ``MasterDetector`` hands the driver candidate base URLs (``http://host:port``), best first, and
calls ``on_change`` on the event loop whenever they may have changed. The static detector never
changes: the driver tries each listed master in turn and follows 307 redirects to the leader.
The ZooKeeper detector watches the children of the Mesos path; the ``json.info_<sequence>``
child with the lowest sequence is the leader, and its data is the leader's MasterInfo JSON.

Kazoo runs its own threads: every ZooKeeper read happens there, and results reach the loop only
through ``call_soon_threadsafe``. Nothing here blocks the event loop.

This module does not talk HTTP to the masters.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import msgspec
import structlog
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NoNodeError

from scale_scheduler.daemon.mesos.mesos_types import MasterInfo

log = structlog.get_logger(__name__)

DEFAULT_PORT = 5050
ZK_LEADER_PREFIX = "json.info_"


class MasterDetector(Protocol):
    def candidates(self) -> list[str]:
        """Base URLs of masters to try, best first; empty while no leader is known."""
        ...

    async def start(self, on_change: Callable[[], None]) -> None:
        """Begin detection; ``on_change`` is called on the loop when candidates change."""
        ...

    async def stop(self) -> None: ...


def normalize_master_url(text: str, default_scheme: str = "http") -> str:
    """``host[:port]``, ``//host:port/...`` or ``http(s)://host:port/...`` -> ``scheme://host:port``."""
    text = text.strip()
    if text.startswith("//"):
        text = f"{default_scheme}:{text}"
    elif "://" not in text:
        text = f"{default_scheme}://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a master address: {text!r}")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{parts.port or DEFAULT_PORT}"


class StaticMasterDetector:
    """A fixed list of masters (``mesos.master`` as one URL or a comma list)."""

    def __init__(self, urls: Sequence[str]) -> None:
        self._urls = [normalize_master_url(url) for url in urls if url.strip()]
        if not self._urls:
            raise ValueError("no master address given")

    def candidates(self) -> list[str]:
        return list(self._urls)

    async def start(self, on_change: Callable[[], None]) -> None:
        return None

    async def stop(self) -> None:
        return None


def parse_zk_url(url: str) -> tuple[str, str, str | None]:
    """``zk://[user:pass@]h1:2181,h2:2181/mesos`` -> ``(hosts, path, "user:pass" or None)``."""
    if not url.startswith("zk://"):
        raise ValueError(f"not a zk:// URL: {url!r}")
    rest = url[len("zk://") :]
    hosts, slash, path = rest.partition("/")
    auth: str | None = None
    if "@" in hosts:
        auth, _, hosts = hosts.rpartition("@")
    if not hosts or not slash or not path.strip("/"):
        raise ValueError("expected zk://host:port[,host:port]/path")
    return hosts, "/" + path.strip("/"), auth


def leader_child(children: Sequence[str]) -> str | None:
    """The ``json.info_<sequence>`` child with the lowest sequence, or ``None``."""
    best: tuple[int, str] | None = None
    for child in children:
        if not child.startswith(ZK_LEADER_PREFIX):
            continue
        sequence = child[len(ZK_LEADER_PREFIX) :]
        if not sequence.isdigit():
            continue
        key = (int(sequence), child)
        if best is None or key < best:
            best = key
    return best[1] if best is not None else None


_master_info_decoder = msgspec.json.Decoder(MasterInfo)


def master_url_from_info(data: bytes, scheme: str = "http") -> tuple[str, MasterInfo]:
    """The base URL of the master described by a ``json.info_`` node (raises ``ValueError``)."""
    try:
        info = _master_info_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"bad MasterInfo JSON: {exc}") from None
    host, port = info.host_and_port()
    if not host:
        raise ValueError("MasterInfo names no host")
    return normalize_master_url(f"{host}:{port}", scheme), info


class ZooKeeperMasterDetector:
    """Follows the leading master registered in ZooKeeper by the Mesos masters."""

    def __init__(
        self,
        url: str,
        *,
        session_timeout: float = 10.0,
        retry_max_delay: float = 15.0,
        scheme: str = "http",
    ) -> None:
        self._hosts, self._path, self._auth = parse_zk_url(url)
        self._session_timeout = session_timeout
        self._retry_max_delay = retry_max_delay
        self._scheme = scheme
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_change: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self.leader: str | None = None
        self.leader_info: MasterInfo | None = None

    def candidates(self) -> list[str]:
        return [self.leader] if self.leader is not None else []

    async def start(self, on_change: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_change = on_change
        self._client = KazooClient(
            hosts=self._hosts,
            timeout=self._session_timeout,
            connection_retry={"max_tries": -1, "max_delay": self._retry_max_delay},
            command_retry={"max_tries": 3, "max_delay": self._retry_max_delay},
            auth_data=[("digest", self._auth)] if self._auth else None,
        )
        self._client.add_listener(self._on_state)
        log.info("zookeeper_detector_starting", hosts=self._hosts, path=self._path)
        await asyncio.to_thread(self._client.start_async)

    async def stop(self) -> None:
        self._stopped = True
        client, self._client = self._client, None
        if client is None:
            return
        await asyncio.to_thread(_stop_client, client)

    # -- kazoo threads ------------------------------------------------------------------------

    def _on_state(self, state: str) -> None:
        """Connection thread: must not block, so the read is spawned."""
        log.info("zookeeper_state_changed", state=str(state), hosts=self._hosts)
        client = self._client
        if state == KazooState.CONNECTED and client is not None and not self._stopped:
            client.handler.spawn(self._refresh)

    def _on_watch(self, event: Any) -> None:
        self._refresh()

    def _refresh(self) -> None:
        """Read the children (re-arming the watch) and publish the leader; one at a time."""
        with self._lock:
            client = self._client
            if self._stopped or client is None:
                return
            try:
                try:
                    children = client.get_children(self._path, watch=self._on_watch)
                except NoNodeError:
                    # No master has registered yet: watch for the path to appear.
                    if client.exists(self._path, watch=self._on_watch) is not None:
                        client.handler.spawn(self._refresh)
                    self._publish(None, None)
                    return
                child = leader_child(children)
                if child is None:
                    self._publish(None, None)
                    return
                try:
                    data, _stat = client.get(f"{self._path}/{child}")
                except NoNodeError:
                    return  # that master just left; the children watch fires again
                try:
                    url, info = master_url_from_info(data, self._scheme)
                except ValueError as exc:
                    log.error("zookeeper_leader_unreadable", node=child, error=str(exc))
                    self._publish(None, None)
                    return
                self._publish(url, info)
            except KazooException as exc:
                # Connection trouble: the CONNECTED listener reads again once it is back.
                log.warning("zookeeper_read_failed", path=self._path, error=repr(exc))
            except Exception:
                log.exception("zookeeper_detector_failed", path=self._path)

    def _publish(self, url: str | None, info: MasterInfo | None) -> None:
        loop = self._loop
        if loop is None or self._stopped:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(self._set_leader, url, info)

    # -- event loop -----------------------------------------------------------------------------

    def _set_leader(self, url: str | None, info: MasterInfo | None) -> None:
        if self._stopped:
            return
        self.leader_info = info
        if url == self.leader:
            return
        log.info("mesos_leader_detected", master=url, previous=self.leader)
        self.leader = url
        if self._on_change is not None:
            self._on_change()


def _stop_client(client: Any) -> None:
    client.stop()
    client.close()


def detector_from_config(master: str, *, retry_max_delay: float = 15.0) -> MasterDetector:
    """The detector for ``mesos.master``: ZooKeeper for ``zk://``, otherwise a static list."""
    master = master.strip()
    if master.startswith("zk://"):
        return ZooKeeperMasterDetector(master, retry_max_delay=retry_max_delay)
    return StaticMasterDetector(master.split(","))
