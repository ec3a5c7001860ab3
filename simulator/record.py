"""What a simulated cluster saw, kept for tests: launches, calls, TEARDOWN, FrameworkInfos.

Owns `ClusterRecord`. It survives master failovers (it belongs to the cluster, not a master), so
a test can assert "no task was ever launched twice" across the whole run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ClusterRecord:
    """Counters and logs of everything the frameworks asked the cluster for."""

    # task id -> times it was actually launched on an agent (valid LAUNCH on valid offers)
    launch_counts: Counter[str] = field(default_factory=Counter)
    # task id -> times it appeared in any LAUNCH, valid or not
    launch_attempts: Counter[str] = field(default_factory=Counter)
    # call type -> number of well-formed calls that reached a leading master (SUBSCRIBE too)
    calls: Counter[str] = field(default_factory=Counter)
    teardown_received: bool = False
    # every FrameworkInfo exactly as received in SUBSCRIBE, in order
    framework_infos: list[dict[str, Any]] = field(default_factory=list)

    def launched_more_than_once(self) -> dict[str, int]:
        """Task ids launched two or more times (empty when no task ran twice)."""
        return {task_id: n for task_id, n in self.launch_counts.items() if n > 1}

    def to_json(self) -> dict[str, Any]:
        return {
            "launch_counts": dict(self.launch_counts),
            "launch_attempts": dict(self.launch_attempts),
            "calls": dict(self.calls),
            "teardown_received": self.teardown_received,
            "framework_infos": self.framework_infos,
            "launched_more_than_once": self.launched_more_than_once(),
        }
