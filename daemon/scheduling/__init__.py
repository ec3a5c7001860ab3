"""Scheduling: offers in, decisions out, and the task state machine behind them.

Owns the pure matcher (``matcher`` and its parts: ``match_model``, ``offer_bins``,
``placement_pass``, ``scoped_search``, ``wait_verdicts``; the constraints' model it applies is
``state.placement_constraints``), the queue index, the offer pipeline (match, persist intent,
accept, revert), flow control, the task commands and their pure resolution, the tracker that
commits them through the state interface and then applies them to the task board (the live
records and counters everything else reads; ``task_path`` wires the two), status intake and
acknowledgements, reconciliation and the reconciliation gate, the launch plans of an offer pass,
retry back-off, run-time limits and kill grace (``lifecycle_timers``), the hosts a retry avoids,
the usage poller, and the scheduling core with the facade the API reaches it through
(``core_facade``).

May import: itself; of the Mesos connection only its seam and types (``mesos.driver``,
``mesos.mesos_types``, ``mesos.mesos_task_states``, ``mesos.failure_classes``, the agents' usage
client and its arithmetic); the service shell's configuration, exit codes and the leadership it
reports; and ``state/``'s interface, changes and model. Never a state backend (``state.sqlite``,
``state.store``, ``state.memory``, ``state.postgres``), ``api/`` or the CLI.
"""
