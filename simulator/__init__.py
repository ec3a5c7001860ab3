"""A simulated Apache Mesos master (v1 scheduler and operator HTTP APIs) for tests and demos.

In-process entry point::

    from scale_scheduler.simulator import SimulatedCluster

    async with SimulatedCluster(agents=3, heartbeat_interval=0.2, allocation_interval=0.05) as sim:
        sim.url                      # "http://127.0.0.1:PORT" (first master)
        sim.addresses                # ["127.0.0.1:PORT", ...] (pymesos's master format)
        sim.record.launch_counts     # task id -> launches; sim.record.launched_more_than_once()
        sim.record.calls["DECLINE"]  # calls received by type; sim.record.teardown_received
        await sim.wait_until(lambda: sim.task("t1") is not None, timeout=5)

Keyword arguments override `SimConfig` fields (masters, agents, agent=AgentSpec(...), seed,
heartbeat_interval, allocation_interval, offer_timeout, task_duration, task_start_delay,
kill_delay, status_update_retry, agent_reregister_delay, credentials, zk, ...).

Faults: `stop_heartbeats`, `resume_heartbeats`, `close_stream(abort=)`, `hang_stream`,
`delay_calls`, `fail_calls`, `clear_call_faults`, `rescind_offers`, `remove_agent`,
`mark_agent_gone`, `add_agent`,
`await step_down(rejoin=)`, `await rejoin()`, `inject(kind)` (kinds in `faults.RAW_KINDS`) and
`inject_raw(bytes)`. Inspection: `leader`, `leader_url`, `agents`, `frameworks()`,
`framework(id)`, `tasks()`, `task(id)`, `offers()`, `subscriptions()`, `state()`.

Scripting a task (TaskInfo labels win over environment variables of `command.environment`):

- `sim.duration` / `SIM_DURATION`: seconds RUNNING before the outcome (default: task_duration)
- `sim.outcome` / `SIM_OUTCOME`: FINISHED (default), FAILED, KILLED, LOST, ERROR, DROPPED, GONE,
  or STAGING / STARTING / RUNNING to stay in that state until killed
- `sim.start_delay` / `SIM_START_DELAY`: seconds from launch to RUNNING (STARTING half-way)

States only PARTITION_AWARE frameworks may see are sent to others as TASK_LOST. See README.md.
"""

from scale_scheduler.simulator.cluster import SimulatedCluster
from scale_scheduler.simulator.config import AgentSpec, SimConfig
from scale_scheduler.simulator.faults import RAW_KINDS
from scale_scheduler.simulator.record import ClusterRecord

__all__ = ["RAW_KINDS", "AgentSpec", "ClusterRecord", "SimConfig", "SimulatedCluster"]
