"""The Mesos connection: everything that speaks to a Mesos master or agent.

Owns the driver seam the scheduling core calls (``driver``: ``SchedulerDriver``, ``EventHandler``)
and both drivers behind it (the native asyncio v1 client ``native_driver`` with its lean HTTP
calls, RecordIO framing and subscription state machine; the pymesos adapter), master detection
(static lists, ZooKeeper), the operator API, the typed v1 wire structures (``mesos_types``), the
agents' usage API and the arithmetic of their statistics, and the mapping of Mesos task states
and reasons onto the daemon's own (``mesos_task_states``, ``failure_classes``).

May import: itself, the service shell's configuration and exit codes, and ``state/``'s domain
and node model. Never the scheduling logic, the CLI, ``api/`` or a state backend.
"""
