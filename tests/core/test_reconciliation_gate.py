"""After a (re)subscription nothing is launched until Mesos has answered for every task
believed launched, or the gate's timeout passed (a new leader's first offers wait for its
reconciliation)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from corekit import CoreHarness, make_offer, status

from scale_scheduler.daemon.mesos.driver import Subscription
from scale_scheduler.daemon.scheduling.reconciliation_gate import ReconciliationGate
from scale_scheduler.daemon.service.config import Config


def test_the_gate_opens_when_every_task_was_heard_of_or_at_the_deadline() -> None:
    gate = ReconciliationGate()
    assert not gate.holding(0.0)
    assert gate.arm(["1-1", "2-1"], now=0.0, timeout=10.0) == 2
    assert gate.holding(1.0)
    assert not gate.heard("9-9")
    assert not gate.heard("1-1")
    assert gate.holding(2.0)
    assert gate.heard("2-1")
    assert not gate.holding(2.0)
    gate.arm(["3-1"], now=20.0, timeout=10.0)
    assert gate.holding(29.9)
    assert not gate.holding(30.0)  # the timeout: launches go on without the answer
    assert gate.arm([], now=40.0, timeout=10.0) == 0
    assert not gate.holding(40.0)


@pytest.fixture
def core_config(make_config: Callable[..., Config]) -> Config:
    """The suite's config with a gate timeout (reconcile_retry x 3) far beyond the test."""
    return make_config(
        scheduler={"reconcile_retry": 30.0, "reconcile_interval": 3600.0, "revive_interval": 0.1}
    )


def _subscribed() -> Subscription:
    return Subscription("fw-1", 15.0, None, resubscribed=True)


async def test_a_resubscribed_core_launches_only_after_reconciliation_answered(
    harness: CoreHarness,
) -> None:
    core = await harness.start()
    first = await harness.submit(1)
    await harness.offer_pass(make_offer("o1", "a1", cpus=4, mem=1024))
    assert harness.driver.launched_ids() == [f"{first[0]}-1"]
    core.on_subscribed(_subscribed())  # a new leader's (or a restart's) subscription
    await harness.submit(1)
    await harness.offer_pass(make_offer("o2", "a2", cpus=4, mem=1024))
    assert harness.driver.launched_ids() == [f"{first[0]}-1"]  # held
    await harness.updates(status(f"{first[0]}-1", "TASK_RUNNING", reason="REASON_RECONCILIATION"))
    await harness.offer_pass(make_offer("o3", "a2", cpus=4, mem=1024))
    assert len(harness.driver.launched_ids()) == 2
