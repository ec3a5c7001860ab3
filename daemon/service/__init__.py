"""The service shell: the process around the scheduler.

Owns the process life cycle (``service``: signals, start-up, stop), the supervisor and the exit
status per fatal reason, sd_notify, logging setup, the configuration registry, the pre-flight
checks, leadership among instances (the election, its terms and the guard on Mesos calls), and
the background pruner of finished tasks.

May import: the Mesos connection, scheduling, itself, ``api/`` (it serves the application) and
``state/`` (it opens the chosen backend). Never the CLI.
"""
