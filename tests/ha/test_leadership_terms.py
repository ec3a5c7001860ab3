"""The pure rules of leadership: roles, epochs that only increase, acting within the term, the
exit status of the master's ERROR, and how an instance names itself."""

from __future__ import annotations

import pytest

from scale_scheduler.daemon.service.exit_codes import ExitCode
from scale_scheduler.daemon.service.leadership_terms import (
    EpochWentBackError,
    Role,
    TermState,
    exit_status_of_mesos_error,
    this_instance,
)


def test_a_term_lets_its_leader_act_until_valid_until() -> None:
    state = TermState()
    assert not state.may_act(0.0)
    state.elected(3, valid_until=10.0)
    assert (state.role, state.epoch, state.changes) == (Role.LEADER, 3, 1)
    assert state.may_act(9.99)
    assert not state.may_act(10.0)
    state.renewed(3, valid_until=12.0)
    assert state.may_act(11.0)


def test_a_renewal_of_another_epoch_or_after_the_loss_changes_nothing() -> None:
    state = TermState()
    state.elected(1, valid_until=5.0)
    state.renewed(2, valid_until=50.0)
    assert not state.may_act(6.0)
    assert state.lost() is True
    state.renewed(1, valid_until=50.0)
    assert state.role is Role.STANDBY
    assert not state.may_act(1.0)
    assert state.lost() is False  # once
    assert state.changes == 2


def test_epochs_only_increase() -> None:
    state = TermState()
    state.saw(7)  # another instance's term, read as a standby
    with pytest.raises(EpochWentBackError, match="epoch 7, not above the 7"):
        state.elected(7, valid_until=1.0)
    assert state.role is Role.STANDBY
    state.elected(8, valid_until=1.0)
    state.lost()
    with pytest.raises(EpochWentBackError):
        state.elected(5, valid_until=1.0)


@pytest.mark.parametrize(
    ("message", "high_availability", "status"),
    [
        ("Framework failed over", True, ExitCode.DEPOSED),
        ("Framework failed over", False, ExitCode.FRAMEWORK_REFUSED),
        ("Framework has been removed", True, ExitCode.FRAMEWORK_REFUSED),
        ("Framework has been removed", False, ExitCode.FRAMEWORK_REFUSED),
    ],
)
def test_the_exit_status_of_the_masters_error(
    message: str, high_availability: bool, status: ExitCode
) -> None:
    assert exit_status_of_mesos_error(message, high_availability=high_availability) is status


def test_an_instance_names_itself_from_the_machine_and_the_port() -> None:
    derived = this_instance(
        instance="",
        advertise_url="",
        api_host="0.0.0.0",
        api_port=8000,
        machine="sched-1.example",
        hostname="sched-1.example",
    )
    assert (derived.instance, derived.api_url, derived.hostname) == (
        "sched-1:8000",
        "http://sched-1.example:8000/",
        "sched-1.example",
    )
    bound = this_instance(
        instance="",
        advertise_url="",
        api_host="10.0.0.5",
        api_port=9000,
        machine="sched-1.example",
        hostname="mesos-name",
    )
    assert (bound.api_url, bound.hostname) == ("http://10.0.0.5:9000/", "mesos-name")
    given = this_instance(
        instance="east",
        advertise_url="https://sched.example/api",
        api_host="0.0.0.0",
        api_port=8000,
        machine="m",
        hostname="m",
    )
    assert (given.instance, given.api_url) == ("east", "https://sched.example/api/")
