"""Flow control on launches: the pure bound (``LaunchFlow``, settable clock) and the matcher's
launch budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from corekit import Clock, CoreHarness, make_offer, status, wait_for
from test_matcher import SETTINGS, Q

from scale_scheduler.daemon.scheduling.flow_control import (
    ACK_TARGET,
    BACKLOG_FLOOR,
    BACKLOG_MAX,
    CUT,
    FLOOR,
    GROWTH,
    HORIZON,
    PASS_SHARE,
    WINDOW,
    LaunchFlow,
)
from scale_scheduler.daemon.scheduling.matcher import DeclineReason, WaitReason, match
from scale_scheduler.daemon.service.config import Config
from scale_scheduler.state.changes import Change, NodesSighted
from scale_scheduler.state.sqlite import SqliteState
from scale_scheduler.state.store import Store


def confirm_steadily(flow: LaunchFlow, per_second: float, seconds: float, start: float) -> float:
    """Confirmations at a steady rate with work in flight; returns the time reached."""
    now = start
    step = WINDOW / 5
    while now < start + seconds:
        now += step
        flow.note(in_flight=100, now=now)
        flow.confirmed(round(per_second * step), now)
    return now


def test_a_cold_start_launches_up_to_the_floor() -> None:
    flow = LaunchFlow(20_000, now=0.0)
    assert flow.rate is None
    assert flow.bound(0.0) == FLOOR
    assert flow.budget(in_flight=120, now=0.0) == FLOOR - 120
    assert flow.budget(in_flight=FLOOR + 5, now=0.0) == 0


def test_a_bound_under_the_floor_is_the_configured_one() -> None:
    flow = LaunchFlow(50, now=0.0)
    assert flow.bound(0.0) == 50
    assert flow.budget(in_flight=10, now=0.0) == 40


def test_the_bound_follows_a_fast_confirmation_rate_up_to_the_maximum() -> None:
    flow = LaunchFlow(20_000, now=0.0)
    now = confirm_steadily(flow, per_second=3_000, seconds=5.0, start=0.0)
    assert flow.rate == pytest.approx(3_000, rel=0.05)
    assert flow.bound(now) == pytest.approx(3_000 * HORIZON, rel=0.05)
    confirm_steadily(flow, per_second=50_000, seconds=5.0, start=now)
    assert flow.bound(now + 5.0) == 20_000


def test_the_bound_shrinks_when_confirmations_slow_down_but_never_under_the_floor() -> None:
    flow = LaunchFlow(20_000, now=0.0)
    now = confirm_steadily(flow, per_second=8_000, seconds=3.0, start=0.0)
    high = flow.bound(now)
    now = confirm_steadily(flow, per_second=1_000, seconds=4.0, start=now)
    assert flow.bound(now) < high / 4
    # Work in flight, nothing confirmed (a stuck agent): down to the floor, not to zero.
    now = confirm_steadily(flow, per_second=0, seconds=5.0, start=now)
    assert flow.bound(now) == FLOOR


def test_idle_windows_leave_the_measured_rate_alone() -> None:
    flow = LaunchFlow(20_000, now=0.0)
    now = confirm_steadily(flow, per_second=4_000, seconds=3.0, start=0.0)
    rate = flow.rate
    # Nothing in flight and nothing confirmed for a minute (no work queued).
    flow.note(in_flight=0, now=now + 30.0)
    flow.note(in_flight=0, now=now + 60.0)
    assert flow.rate == pytest.approx(rate, rel=0.05)
    assert flow.bound(now + 60.0) == pytest.approx(4_000 * HORIZON, rel=0.05)


def test_the_matcher_places_no_more_than_the_budget() -> None:
    queue = Q([(i, {"cpus": 1, "mem": 10}, 100) for i in range(1, 21)])
    index, _tasks = queue.build()
    offers = [make_offer("o1", "a1", cpus=8, mem=1000), make_offer("o2", "a2", cpus=8, mem=1000)]
    result = match(
        offers, index, scheduler_paused=False, blocked_hosts={}, settings=SETTINGS, launch_budget=5
    )
    assert [p.task_id for launch in result.launches for p in launch.placements] == [1, 2, 3, 4, 5]
    # The agent left without launches is declined briefly; the rest of the group waits.
    (decline,) = result.declines
    assert decline.offer_ids == ("o2",)
    assert decline.reason is DeclineReason.FLOW_CONTROL
    assert decline.refuse_seconds == SETTINGS.flow_refuse_seconds
    assert [w.reason for w in result.waiting] == [WaitReason.FLOW_CONTROL]


def test_a_budget_spent_across_groups_and_priorities() -> None:
    queue = Q(
        [(1, {"cpus": 1, "mem": 10}, 1), (2, {"cpus": 2, "mem": 10}, 1)]
        + [(i, {"cpus": 1, "mem": 10}, 5) for i in range(3, 8)]
    )
    index, _tasks = queue.build()
    offers = [make_offer("o1", "a1", cpus=32, mem=1000)]
    result = match(
        offers, index, scheduler_paused=False, blocked_hosts={}, settings=SETTINGS, launch_budget=3
    )
    assert [p.task_id for p in result.launches[0].placements] == [1, 2, 3]
    assert {w.priority for w in result.waiting} == {5}
    assert all(w.reason is WaitReason.FLOW_CONTROL for w in result.waiting)


def test_a_zero_budget_declines_every_offer_briefly() -> None:
    queue = Q([(i, {"cpus": 1, "mem": 10}, 100) for i in range(1, 4)])
    index, _tasks = queue.build()
    offers = [make_offer("o1", "a1", cpus=8, mem=1000)]
    result = match(
        offers, index, scheduler_paused=False, blocked_hosts={}, settings=SETTINGS, launch_budget=0
    )
    assert result.launches == ()
    assert [(d.reason, d.refuse_seconds) for d in result.declines] == [
        (DeclineReason.FLOW_CONTROL, SETTINGS.flow_refuse_seconds)
    ]
    assert [w.reason for w in result.waiting] == [WaitReason.FLOW_CONTROL]


def test_no_budget_means_no_limit() -> None:
    queue = Q([(i, {"cpus": 1, "mem": 10}, 100) for i in range(1, 41)])
    index, _tasks = queue.build()
    offers = [make_offer("o1", "a1", cpus=64, mem=1000)]
    result = match(offers, index, scheduler_paused=False, blocked_hosts={}, settings=SETTINGS)
    assert result.placed == 40
    assert result.declines == ()


def test_launches_fill_only_the_room_under_the_backlog_limit() -> None:
    flow = LaunchFlow(20_000, now=0.0)
    now = confirm_steadily(flow, 10_000, 2.0, 0.0)  # the bound (2 s of those) is not binding
    limit = flow.backlog_limit(now)
    assert limit == BACKLOG_FLOOR  # where it starts
    assert flow.budget(in_flight=0, now=now, backlog=limit - 300) == 300
    assert flow.budget(in_flight=0, now=now, backlog=limit + 1) == 0
    # Before any rate is known, the floors leave room.
    assert LaunchFlow(20_000, now=0.0).budget(in_flight=0, now=0.0, backlog=0) == min(
        FLOOR, BACKLOG_FLOOR
    )


def test_one_pass_fills_at_most_a_share_of_the_backlog_limit() -> None:
    # Filled by one pass, the limit made one wave of the whole room: its updates moved in step,
    # its first task finished over a second after its launch, and the pipeline sat empty
    # before it (B6's gaps without a finished task).
    flow = LaunchFlow(20_000, now=0.0)
    now = confirm_steadily(flow, 10_000, 2.0, 0.0)  # the bound (2 s of those) is not binding
    limit = flow.backlog_limit(now)
    share = int(limit * PASS_SHARE)
    assert 0 < share < limit
    assert flow.budget(in_flight=0, now=now, backlog=0) == share
    assert flow.budget(in_flight=0, now=now, backlog=limit - share // 2) == share // 2
    # A pass held back by its share grows the limit as one held back by the room does.
    flow.held_back(now)
    flow.handled(now, ACK_TARGET / 2)
    assert flow.backlog_limit(now + WINDOW) == int(limit * GROWTH)


def run_windows(
    flow: LaunchFlow, windows: int, now: float, *, latency: float, backlog: int
) -> float:
    """``windows`` windows in which a pass asks for launches at ``backlog`` and acknowledgements
    are answered ``latency`` seconds after their update; returns the time reached."""
    for _ in range(windows):
        flow.note(in_flight=100, now=now)
        flow.confirmed(5_000, now)
        if flow.budget(in_flight=0, now=now, backlog=backlog) == 0:
            flow.held_back(now)  # the pass declines offers for flow control
        flow.handled(now, latency)
        now += WINDOW
    return now


def test_the_backlog_limit_grows_while_acknowledgements_are_on_time_and_it_binds() -> None:
    flow = LaunchFlow(20_000, now=0.0)
    now = run_windows(flow, 4, 0.0, latency=ACK_TARGET / 2, backlog=BACKLOG_MAX)
    assert flow.backlog_limit(now) == int(BACKLOG_FLOOR * GROWTH**4)
    now = run_windows(flow, 40, now, latency=0.01, backlog=BACKLOG_MAX)
    assert flow.backlog_limit(now) == BACKLOG_MAX


def test_a_limit_that_does_not_bind_does_not_grow() -> None:
    flow = LaunchFlow(20_000, now=0.0)
    run_windows(flow, 10, 0.0, latency=0.01, backlog=0)  # room left: launches never held back
    assert flow.backlog_limit(10 * WINDOW) == BACKLOG_FLOOR


def test_a_late_acknowledgement_halves_the_backlog_limit() -> None:
    flow = LaunchFlow(20_000, now=0.0)
    now = run_windows(flow, 6, 0.0, latency=0.01, backlog=BACKLOG_MAX)
    grown = flow.backlog_limit(now)
    assert grown > 4 * BACKLOG_FLOOR
    now = run_windows(flow, 1, now, latency=ACK_TARGET * 2, backlog=BACKLOG_MAX)
    assert flow.backlog_limit(now) == int(grown * CUT)
    now = run_windows(flow, 20, now, latency=ACK_TARGET * 2, backlog=BACKLOG_MAX)
    assert flow.backlog_limit(now) == BACKLOG_FLOOR  # never under the floor


def test_a_bound_of_zero_turns_flow_control_off() -> None:
    flow = LaunchFlow(0, now=0.0)
    assert flow.budget(in_flight=1_000_000, now=0.0, backlog=1_000_000) is None


async def test_a_pass_at_the_bound_declines_briefly_then_revives_once_updates_give_room(
    make_config: Callable[..., Config], store: Store, clock: Clock
) -> None:
    config = make_config(scheduler={"max_in_flight": 4, "revive_interval": 3600.0})
    harness = CoreHarness(config, SqliteState(store), clock)
    core = await harness.start()
    try:
        ids = await harness.submit(10)
        await harness.offer_pass(
            make_offer("o1", "a1", cpus=8, mem=8192), make_offer("o2", "a2", cpus=8, mem=8192)
        )
        assert core.board.in_flight == 4
        declines = harness.driver.of("decline")
        # No filter: Mesos stretches any other to an allocation interval (MESOS-4302), which
        # would keep the agent out of the next cycle.
        assert [(call[1], call[2]) for call in declines] == [(("o2",), 0.0)]
        head = next(core.board.index.queued())
        assert core.board.waiting_reason(head, False) == "launch flow control: 4 tasks in flight"
        revives = len(harness.driver.of("revive"))
        launched = [i for i in ids if core.board.tasks[i].state.launched]
        await harness.updates(*(status(f"{i}-1", "TASK_RUNNING", uuid=f"u{i}") for i in launched))
        assert core.board.in_flight == 0
        await wait_for(lambda: len(harness.driver.of("revive")) == revives + 1)
    finally:
        await core.stop()


async def test_offers_declined_at_the_bound_are_revived_even_after_a_pass_that_declined_none(
    make_config: Callable[..., Config], store: Store, clock: Clock
) -> None:
    # A pass between the decline and the room (here one offer that launches all the budget
    # allows) used to forget the declined agents: no REVIVE followed, and they came back only
    # with Mesos's next allocation cycle while the cluster sat idle.
    harness = CoreHarness(
        make_config(scheduler={"max_in_flight": 8, "revive_interval": 3600.0}),
        SqliteState(store),
        clock,
    )
    core = await harness.start()
    try:
        launched = await _fill_the_bound_of_eight(harness)
        # One confirmation frees room for one launch: not yet worth a REVIVE (under a quarter).
        await harness.updates(status(launched[0], "TASK_RUNNING", uuid="u0"))
        revives = len(harness.driver.of("revive"))
        await harness.offer_pass(make_offer("o3", "a3", cpus=1, mem=1024))
        assert len(harness.driver.launched_ids()) == 9
        assert [call[1] for call in harness.driver.of("decline")] == [("o2",)]
        clock.advance(1.0)
        await harness.updates(
            *(status(i, "TASK_RUNNING", uuid=f"u{i}") for i in harness.driver.launched_ids()[1:])
        )
        assert core.board.in_flight == 0
        await wait_for(lambda: len(harness.driver.of("revive")) == revives + 1)
    finally:
        await core.stop()


async def test_room_freed_within_the_revive_interval_revives_once_it_has_passed(
    make_config: Callable[..., Config], store: Store, clock: Clock
) -> None:
    # The second wave is confirmed in full within FLOW_REVIVE_INTERVAL of the first REVIVE:
    # no later update asks again, so the REVIVE must be deferred, not dropped (it was, and the
    # cluster sat idle until Mesos's next allocation cycle).
    config = make_config(scheduler={"max_in_flight": 4, "revive_interval": 3600.0})
    harness = CoreHarness(config, SqliteState(store), clock)
    core = await harness.start()
    try:
        await harness.submit(12)
        for wave in range(2):
            await harness.offer_pass(
                make_offer(f"o{wave}a", "a1", cpus=8, mem=8192),
                make_offer(f"o{wave}b", "a2", cpus=8, mem=8192),
            )
            assert len(harness.driver.of("decline")) == wave + 1  # one offer at the bound
            revives = len(harness.driver.of("revive"))
            await harness.updates(
                *(status(i, "TASK_RUNNING", uuid=f"u{i}") for i in harness.driver.launched_ids())
            )
            assert core.board.in_flight == 0
            await wait_for(lambda: len(harness.driver.of("revive")) == revives + 1)  # noqa: B023
    finally:
        await core.stop()


async def test_room_freed_while_a_pass_declines_at_the_bound_revives_after_its_declines(
    make_config: Callable[..., Config], store: Store, clock: Clock
) -> None:
    # Room freed while a pass that declines offers at the bound is committing: a REVIVE sent
    # then reaches the master before the DECLINEs, so it brings nothing back, and the offers
    # stayed away until Mesos's next allocation cycle. The REVIVE must follow the DECLINEs.
    config = make_config(scheduler={"max_in_flight": 4, "revive_interval": 3600.0})
    harness = CoreHarness(config, SqliteState(store), clock)
    core = await harness.start()
    try:
        await harness.submit(12)
        await harness.offer_pass(make_offer("o1", "a1", cpus=8, mem=8192))
        launched = harness.driver.launched_ids()
        assert len(launched) == 4
        assert not harness.driver.of("decline")
        freed = False

        async def free_room(changes: Sequence[Change]) -> None:
            nonlocal freed
            if freed or not any(isinstance(change, NodesSighted) for change in changes):
                return
            freed = True  # the pass has matched (and held back) its offers; room frees now
            await harness.updates(*(status(i, "TASK_RUNNING", uuid=f"u{i}") for i in launched))

        harness.state.before_commit = free_room
        clock.advance(1.0)
        await harness.offer_pass(
            make_offer("o2", "a2", cpus=8, mem=8192), make_offer("o3", "a3", cpus=8, mem=8192)
        )
        assert freed
        assert core.board.in_flight == 0
        await wait_for(lambda: harness.driver.kinds()[-1] == "revive")
        kinds = harness.driver.kinds()
        assert kinds.index("decline") < len(kinds) - 1 - kinds[::-1].index("revive")
    finally:
        await core.stop()


async def test_offers_declined_at_the_bound_are_revived_once_a_quarter_of_the_bound_is_free(
    make_config: Callable[..., Config], store: Store, clock: Clock
) -> None:
    # At a half, a wave had nearly finished before offers were asked back, and the next wave
    # was launched into an empty pipeline: B6's gaps without a finished task (up to 2.4 s).
    harness = CoreHarness(
        make_config(scheduler={"max_in_flight": 8, "revive_interval": 3600.0}),
        SqliteState(store),
        clock,
    )
    core = await harness.start()
    try:
        launched = await _fill_the_bound_of_eight(harness)
        revives = len(harness.driver.of("revive"))
        await harness.updates(*(status(i, "TASK_RUNNING", uuid=f"u{i}") for i in launched[:2]))
        assert core.board.in_flight == 6
        await wait_for(lambda: len(harness.driver.of("revive")) == revives + 1)
    finally:
        await core.stop()


async def _fill_the_bound_of_eight(harness: CoreHarness) -> list[str]:
    """Twenty queued, two agents offered: the first takes the bound's eight launches, the
    second is declined for flow control. Returns the launched ids."""
    await harness.submit(20)
    await harness.offer_pass(
        make_offer("o1", "a1", cpus=8, mem=8192), make_offer("o2", "a2", cpus=8, mem=8192)
    )
    assert [call[1] for call in harness.driver.of("decline")] == [("o2",)]
    launched = harness.driver.launched_ids()
    assert len(launched) == 8
    return launched
