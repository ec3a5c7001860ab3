"""The command line: ``scale-scheduler`` and its subcommands.

Owns argument parsing and dispatch (``main``), the operator commands that talk to a running
daemon's REST API (``operator_cli``), and the demo that runs the daemon against an in-process
simulated cluster (``demo``).

May import: anything (it is the outermost layer); nothing imports it but the console script.
"""
