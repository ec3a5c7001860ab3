"""B1's baseline: a bare pymesos scheduler that only declines (run it under Python 3.10).

``python -m bench.pymesos_bare HOST:PORT --seconds S`` subscribes with pymesos's own
``MesosSchedulerDriver`` and answers every OFFERS event with one DECLINE carrying all its offer
ids (pymesos's blocking call, as a plain pymesos framework would), until SIGTERM or ``--seconds``.
It prints ``{"ready": true}`` once subscribed and, at the end, its own count of offers received.
The offers/s figure itself is taken at the fake master (offers declined per second), as for the
daemon. Stops with ``failover=True``, so no TEARDOWN is sent.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from pymesos import MesosSchedulerDriver, Scheduler


class DeclineAll(Scheduler):  # type: ignore[misc]
    def __init__(self) -> None:
        self.subscribed = threading.Event()
        self.offers = 0

    def registered(self, driver: object, framework_id: object, master_info: object) -> None:
        self.subscribed.set()

    def resourceOffers(self, driver: MesosSchedulerDriver, offers: list[dict]) -> None:
        self.offers += len(offers)
        driver.declineOffer([offer["id"] for offer in offers], {"refuse_seconds": 5.0})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pymesos_bare", description=__doc__)
    parser.add_argument("master", help="HOST:PORT of the (fake) master")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    scheduler = DeclineAll()
    framework = {"user": "bench", "name": "bench-pymesos-bare", "failover_timeout": 60}
    driver = MesosSchedulerDriver(scheduler, framework, args.master, failover=True)
    stop = threading.Event()
    # pymesos replaces the SIGINT handler on import; take SIGTERM/SIGINT back for a clean stop.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    driver.start()
    if scheduler.subscribed.wait(30):
        print(json.dumps({"ready": True}), flush=True)
        stop.wait(args.seconds)
    else:
        print(json.dumps({"ready": False}), flush=True)
    driver.stop(failover=True)
    driver.join()
    print(json.dumps({"offers_received": scheduler.offers}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
