"""Schemathesis against the running daemon: every operation of ``/openapi.json``, valid and
invalid inputs, on a real port, with the scheduling core live against the simulated cluster.

Every response must be documented (status, content type, headers, body schema), no 5xx may
appear (the only documented 500, a missing scheduler row, cannot happen here), valid inputs must
be accepted and invalid ones rejected. The daemon runs with the API token on and the fuzzer sends
it, so the documented 401s are not what is exercised here (``test_auth`` does that).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

schemathesis = pytest.importorskip("schemathesis")

import requests  # noqa: E402  (a dependency of schemathesis: import it after the skip)
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from securitykit import AUTH, running_daemon, token_file  # noqa: E402

from scale_scheduler.api.limits import MAX_CPUS  # noqa: E402

MIN_CASES = 1000
EXAMPLES = int(os.environ.get("SCALE_FUZZ_EXAMPLES", "50"))
"""Generated cases per operation and mode (valid, invalid); fewer where fewer inputs exist.
Runs are reproducible; ``SCALE_FUZZ_RANDOM=1`` (and more examples) explores new inputs."""
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


class Fuzzer:
    """Runs each operation in both modes (blocking: meant for a worker thread)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cases: Counter[str] = Counter()
        self.failures: list[str] = []
        self.operations: set[str] = set()

    def run(self) -> None:
        raw = requests.get(f"{self.base_url}/openapi.json", headers=AUTH, timeout=10).json()
        # One event of the endless dashboard stream is enough to check it.
        config = schemathesis.Config.from_dict({"max-stream-events": 1, "request-timeout": 10})
        schema = schemathesis.openapi.from_dict(raw, config=config)
        schema.validate()
        with requests.Session() as session:
            for result in schema.get_all_operations():
                operation = result.ok()
                self.operations.add(operation.label)
                for mode in MODES:
                    if mode is MODES[1] and not _has_inputs(operation):
                        continue  # nothing to make invalid
                    try:
                        self._fuzz(operation, mode, session)
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except BaseException as exc:  # schemathesis raises BaseExceptionGroups
                        self.failures.append(f"{operation.label} ({mode.value}):\n{exc}")

    def _fuzz(self, operation: Any, mode: Any, session: requests.Session) -> None:
        label = operation.label

        @settings(
            max_examples=EXAMPLES,
            database=None,
            deadline=None,
            derandomize=not os.environ.get("SCALE_FUZZ_RANDOM"),
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            self.cases[label] += 1
            case.call_and_validate(base_url=self.base_url, session=session, headers=AUTH)

        check()


def _has_inputs(operation: Any) -> bool:
    return bool(operation.body) or any(True for _ in operation.iter_parameters())


async def _seed_tasks(url: str) -> None:
    """Tasks for ids to find, cancel and kill: finished, running for long, and never placeable."""
    tasks = [
        {"name": f"seed-{i}", "command": "true", "cpus": 0.1, "mem": 8, **extra}
        for i, extra in enumerate([{}, {"labels": {"sim.duration": "600"}}, {"cpus": MAX_CPUS}] * 4)
    ]
    async with (
        aiohttp.ClientSession() as client,
        client.post(f"{url}/queue/", json=tasks, headers=AUTH) as response,
    ):
        assert response.status == 201, await response.text()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_fuzz_every_operation(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, api={"token_file": str(token_file(tmp_path))}) as daemon:
        await _seed_tasks(daemon.url)
        fuzzer = Fuzzer(daemon.url)
        await asyncio.to_thread(fuzzer.run)
    assert not fuzzer.failures, "\n\n".join(fuzzer.failures)
    assert set(fuzzer.cases) == fuzzer.operations  # every operation was called
    assert sum(fuzzer.cases.values()) >= MIN_CASES, fuzzer.cases
