"""B1, offer throughput: offers/s from a fake master's OFFERS stream to DECLINE/ACCEPT answers.

Clients, each against a fresh ``bench.fake_master`` in ``offers`` mode (100 offers per event,
every call answered 202 at once), one after the other within a round:

- ``native_paused``: ``scale-scheduler run`` (native driver), paused: declines everything;
- ``native_unpaused``: the same, unpaused with an empty queue (the matcher runs every pass);
- ``pymesos_daemon``: the daemon with ``mesos.driver: pymesos`` under Python 3.10, paused;
- ``pymesos_bare``: ``bench.pymesos_bare`` under Python 3.10, declining each event's offers;
- ``decode_limit``: the same payload bytes through JSON decoders alone (``bench.decode_limit``).

The figure is offers answered per second at the master between two counter reads after a
warm-up; the CPU use of the client and of the master over that window is kept beside it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import Rate, Settings, free_port
from bench.decode_limit import decode_rates, lazy_decode_rate
from bench.offer_stream import OfferStream, load_offers
from bench.procs import Child, Daemon, python_for, write_daemon_config
from bench.profiles import profile_summary

VARIANTS = ("native_paused", "native_unpaused", "pymesos_daemon", "pymesos_bare")


def start_master(
    settings: Settings, work: Path, mode: str = "offers", *, agents_port: int = 0
) -> Child:
    """``agents_port``: the offers' url names it (``bench.fake_agents`` listening there);
    with ``--usage-interval`` the master answers the agents' GET_CONTAINERS itself."""
    agents_flag = ["--agents-port", str(agents_port)] if agents_port else []
    if settings.usage_interval is not None:
        agents_flag = ["--agents-api"]
    return Child(
        [
            python_for(),
            "-m",
            "bench.fake_master",
            "--offers",
            str(settings.offers_path),
            "--mode",
            mode,
            *agents_flag,
        ],
        work / "fake-master.log",
    )


def start_daemon(
    work: Path,
    master_url: str,
    *,
    driver: str = "native",
    level: str = "info",
    profile_to: Path | None = None,
    db: Path | None = None,
    usage: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
) -> Daemon:
    port = free_port()
    config = work / "config.yaml"
    write_daemon_config(
        config,
        master=master_url,
        db=db or work / "state.db",
        port=port,
        driver=driver,
        level=level,
        usage=usage,
        state=state,
    )
    python = python_for("310") if driver == "pymesos" else python_for()
    return Daemon(config, port, work / "daemon.log", python=python, profile_to=profile_to)


def measure_variant(settings: Settings, variant: str, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    if variant.startswith("pymesos") and not python_for("310"):
        return {"skipped": "no .venv310 (run `make install310`)"}
    master = start_master(settings, work)
    client: Daemon | Child | None = None
    try:
        url = master.info["url"]
        if variant == "pymesos_bare":
            client = Child(
                [python_for("310"), "-m", "bench.pymesos_bare", url.split("//", 1)[1]],
                work / "pymesos-bare.log",
            )
            if not client.info.get("ready"):
                raise RuntimeError(f"pymesos did not subscribe: {client.tail()}")
        else:
            driver = "pymesos" if variant == "pymesos_daemon" else "native"
            client = start_daemon(work, url, driver=driver, usage=settings.usage_config())
            client.wait(subscribed=True, timeout=60)
            if variant != "native_unpaused":
                client.pause(True)
        time.sleep(settings.b1_warmup)
        return Rate(url, {"client": client.pid, "master": master.pid}).measure(settings.b1_seconds)
    except Exception as exc:  # one broken client must not lose the whole run
        tail = client.tail(800) if client is not None else ""
        return {"error": f"{exc!r}"[:400], "log_tail": tail}
    finally:
        if client is not None:
            client.stop()
        master.stop()


def profile_native(settings: Settings, work: Path, paused: bool) -> dict[str, Any]:
    """The native daemon under cProfile for one window: where its time goes."""
    work.mkdir(parents=True, exist_ok=True)
    master = start_master(settings, work)
    prof = work / "daemon.prof"
    daemon = start_daemon(work, master.info["url"], profile_to=prof)
    try:
        daemon.wait(subscribed=True, timeout=60)
        if paused:
            daemon.pause(True)
        time.sleep(settings.b1_warmup)
        rate = Rate(master.info["url"], {"client": daemon.pid}).measure(settings.b1_seconds)
    finally:
        daemon.stop()
        master.stop()
    return {"rate_under_profiler": rate["offers_per_s"], **profile_summary(prof)}


def run(settings: Settings) -> dict[str, Any]:
    offers = load_offers(settings.offers_path)
    stream = OfferStream(offers)
    rounds: list[dict[str, Any]] = []
    for index in range(settings.rounds):
        row: dict[str, Any] = {}
        decode = decode_rates(stream, max(1.0, settings.b1_seconds / 2))
        row["decode"] = decode
        row["decode_limit"] = max(decode.values())
        row["decode_lazy"] = lazy_decode_rate(stream, max(1.0, settings.b1_seconds / 2))
        for variant in VARIANTS:
            row[variant] = measure_variant(
                settings, variant, settings.work / f"b1-{index}-{variant}"
            )
        rounds.append(row)
    result: dict[str, Any] = {
        "rounds": rounds,
        "record_bytes": stream.record_bytes,
        "offers_per_event": stream.per_event,
    }
    if settings.profile:
        result["profile_unpaused"] = profile_native(settings, settings.work / "b1-profile", False)
        result["profile_paused"] = profile_native(settings, settings.work / "b1-profile-p", True)
    return result
