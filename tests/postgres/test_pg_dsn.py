"""state.dsn: what is accepted, and that a password in it is never shown."""

from __future__ import annotations

import pytest

from scale_scheduler.state.postgres.dsn import (
    describe_target,
    dsn_has_password,
    dsn_problem,
    redact_dsn,
)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://scheduler@db1:5432/scale",
        "postgres://db1/scale",
        "postgresql://scheduler@db1,db2:5433/scale",
        "postgresql://scheduler@[::1]:5432/scale",
        "postgresql:///scale?host=/var/run/postgresql",
        "postgresql://scheduler:s3cret@db1/scale?sslmode=require",
    ],
)
def test_usable_dsns(dsn: str) -> None:
    assert dsn_problem(dsn) == ""


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("db1:5432", "expected a URL such as postgresql://"),
        ("host=db1 dbname=scale", "expected a URL such as postgresql://"),
        ("mysql://db1/scale", "expected a URL such as postgresql://"),
        ("postgresql:///scale", "no host"),
        ("postgresql://db1:99999/scale", "the port must be a number from 1 to 65535"),
        ("postgresql://db1:x/scale", "is not host or host:port"),
        ("postgresql://db1/a/b", "cannot contain '/'"),
    ],
)
def test_unusable_dsns_are_named(dsn: str, problem: str) -> None:
    assert problem in dsn_problem(dsn)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:s3cret@db1:5432/scale", "postgresql://u:***@db1:5432/scale"),
        ("postgresql://u:p%40ss@db1/scale", "postgresql://u:***@db1/scale"),
        (
            "postgresql://u@db1/scale?sslmode=require&password=s3cret",
            "postgresql://u@db1/scale?sslmode=require&password=***",
        ),
        ("postgresql://u@db1/scale?sslpassword=s3cret", "postgresql://u@db1/scale?sslpassword=***"),
        ("postgresql://u@db1/scale", "postgresql://u@db1/scale"),
        ("s3cret", "***"),
    ],
)
def test_redaction_hides_every_password(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown
    assert "s3cret" not in dsn_problem(dsn)
    assert "s3cret" not in describe_target(dsn)


def test_password_detection() -> None:
    assert dsn_has_password("postgresql://u:x@db1/scale")
    assert dsn_has_password("postgresql://u@db1/scale?password=x")
    assert not dsn_has_password("postgresql://u@db1/scale?sslmode=require")
    assert not dsn_has_password("postgresql://db1/scale")


def test_target_names_hosts_and_database() -> None:
    assert describe_target("postgresql://u:x@db1:5432/scale") == "db1:5432/scale"
    assert describe_target("postgresql:///scale?host=/run/pg") == "/run/pg/scale"
