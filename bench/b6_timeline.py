"""B6's longest stalls, each with what led to it: a timeline from a B6 work directory's logs.

A stall is a gap between two of the daemon's ``task_states_changed`` events that finished
tasks. Around each of the longest, this lines up in time order the daemon's offer passes
(launched, declined and why, flow control's budget, tasks in flight, update backlog and its
limit), its REVIVE and SUPPRESS calls, the backlog limit's moves (with the slowest
acknowledgement of the window), bursts of state changes, and, if the run was traced
(``python -m bench.b6_soak --trace``), the simulator's offer cycles, update resends and
garbage collections over 10 ms.

    python -m bench.b6_timeline bench/out/work-b6 [--stalls 3] [--before 2.0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

SIM_LINE = re.compile(r"^(\S+Z) \[(\w+)\s*\] (\w+)\s*(.*)$")


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def daemon_events(path: Path) -> list[tuple[float, dict[str, Any]]]:
    out: list[tuple[float, dict[str, Any]]] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "timestamp" in event:
            out.append((_stamp(event["timestamp"]), event))
    return out


def simulator_events(path: Path) -> list[tuple[float, dict[str, Any]]]:
    out: list[tuple[float, dict[str, Any]]] = []
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        found = SIM_LINE.match(line)
        if found is None:
            continue
        event: dict[str, Any] = {"event": found.group(3)}
        for pair in found.group(4).split():
            key, _, value = pair.partition("=")
            event[key] = value
        out.append((_stamp(found.group(1)), event))
    return out


def finishes(events: list[tuple[float, dict[str, Any]]]) -> list[tuple[float, int]]:
    """(time, tasks finished by then) at each state change that finished tasks."""
    done = 0
    out: list[tuple[float, int]] = []
    for at, event in events:
        if event.get("event") == "task_states_changed":
            count = (event.get("by_state") or {}).get("FINISHED", 0)
            if count:
                done += count
                out.append((at, done))
    return out


def longest_gaps(points: list[tuple[float, int]], count: int) -> list[tuple[float, float]]:
    gaps = [(b[0] - a[0], a[0], b[0]) for a, b in itertools.pairwise(points)]
    gaps.sort(reverse=True)
    return [(start, end) for _length, start, end in gaps[:count]]


def describe(event: dict[str, Any]) -> str | None:
    kind = event.get("event")
    if kind == "offer_pass":
        flow = event.get("flow") or {}
        reasons = ",".join(f"{k}:{v}" for k, v in (event.get("decline_reasons") or {}).items())
        return (
            f"pass      offers={event['offers']} launched={event['launched']} "
            f"declined={event['declined']} [{reasons}] budget={flow.get('budget')} "
            f"in_flight={flow.get('in_flight')}/{flow.get('bound')} "
            f"backlog={flow.get('backlog')}/{flow.get('backlog_limit')} "
            f"queued={event.get('queue_depth')} ms={event.get('ms')}"
        )
    if kind == "backlog_limit_moved":
        return (
            f"limit     {event['previous']} -> {event['limit']} "
            f"worst_ack={event['worst_ack_s']} held_back={event['held_back']}"
        )
    if kind in ("offers_revived", "offers_suppressed"):
        return f"{kind}"
    if kind == "sim_offers_made":
        return f"sim       offers={event.get('offers')} periodic={event.get('periodic')}"
    if kind == "sim_gc":
        return f"sim       gc generation={event.get('generation')} ms={event.get('ms')}"
    if kind == "sim_update_resent":
        return f"sim       resent task={event.get('task_id')} after={event.get('after_s')}"
    if kind == "task_states_changed":
        states = ",".join(f"{k}:{v}" for k, v in (event.get("by_state") or {}).items())
        return f"states    {states}"
    return None


def timeline(work: Path, stalls: int, before: float) -> str:
    events = daemon_events(work / "daemon.log") + simulator_events(work / "simulator.log")
    events.sort(key=lambda item: item[0])
    points = finishes(events)
    if not points:
        return "no finished tasks in the log"
    origin = points[0][0]
    lines: list[str] = []
    for start, end in longest_gaps(points, stalls):
        lines.append(
            f"== stall of {end - start:.2f} s: from {start - origin:.2f} s to {end - origin:.2f} s"
        )
        merged: list[tuple[float, str]] = []
        for at, event in events:
            if start - before <= at <= end + 0.05:
                text = describe(event)
                if text is not None:
                    merged.append((at, text))
        # Bursts of state changes collapse into one line per 50 ms.
        last_states = -1.0
        for at, text in merged:
            if text.startswith("states"):
                if at - last_states < 0.05:
                    continue
                last_states = at
            lines.append(f"{at - origin:9.3f}  {text}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.b6_timeline")
    parser.add_argument("work", type=Path)
    parser.add_argument("--stalls", type=int, default=3)
    parser.add_argument("--before", type=float, default=2.0, help="seconds shown before a stall")
    args = parser.parse_args()
    print(timeline(args.work, args.stalls, args.before))


if __name__ == "__main__":
    main()
