"""Run under Python 3.10 by test_sim_pymesos.py: pymesos's own driver against the simulator.

Usage: python3.10 pymesos_conformance.py HOST:PORT. Subscribes, launches one task on the first
offer, declines the rest, and exits 0 once the task reaches TASK_FINISHED. Prints one JSON
line: {"framework_id", "states", "offers", "master"}.
"""

import json
import sys
import threading

from pymesos import MesosSchedulerDriver, Scheduler

TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST"}


class OneTask(Scheduler):
    def __init__(self):
        self.done = threading.Event()
        self.launched = False
        self.offers = 0
        self.states = []
        self.framework_id = None
        self.master = None

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id["value"]
        self.master = f"{master_info['hostname']}:{master_info['port']}"

    def resourceOffers(self, driver, offers):
        for offer in offers:
            self.offers += 1
            if self.launched:
                driver.declineOffer([offer["id"]], {"refuse_seconds": 60})
                continue
            self.launched = True
            task = {
                "name": "conformance",
                "task_id": {"value": "pymesos-task-1"},
                "agent_id": offer["agent_id"],
                "resources": [
                    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                    {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
                ],
                "command": {"value": "true"},
                "labels": {"labels": [{"key": "sim.duration", "value": "0.2"}]},
            }
            driver.launchTasks([offer["id"]], [task], {"refuse_seconds": 60})

    def statusUpdate(self, driver, update):
        self.states.append(update["state"])
        if update["state"] in TERMINAL:
            self.done.set()


def main():
    scheduler = OneTask()
    framework = {"user": "pymesos", "name": "conformance", "failover_timeout": 60}
    driver = MesosSchedulerDriver(scheduler, framework, sys.argv[1], failover=True)
    driver.start()
    finished = scheduler.done.wait(60)
    # stop()'s own failover=False default overrides the constructor's and sends TEARDOWN.
    driver.stop(failover=True)
    driver.join()
    print(
        json.dumps(
            {
                "framework_id": scheduler.framework_id,
                "states": scheduler.states,
                "offers": scheduler.offers,
                "master": scheduler.master,
            }
        ),
        flush=True,
    )
    return 0 if finished and scheduler.states[-1:] == ["TASK_FINISHED"] else 1


if __name__ == "__main__":
    sys.exit(main())
