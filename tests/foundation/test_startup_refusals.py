"""Start-up refusals of the real ``scale-scheduler``: a bad database, token file or config.

``run`` and ``check-config`` refuse the same configurations with the same exit status (2 for the
configuration, 3 for the database) and ONE line on stderr naming the setting, without a
traceback; ``run`` also logs it as one ``daemon_fatal`` event once logging is configured.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon_process import SCRIPT, DaemonProcess, write_config
from ports import free_port

from scale_scheduler.api.app import build_app
from scale_scheduler.daemon.service.config import Config
from scale_scheduler.daemon.service.exit_codes import ExitCode
from scale_scheduler.daemon.service.service import serve
from scale_scheduler.state.store import Store

CONFIG_ERROR, STORE_ERROR = 2, 3


def _environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALE_SCHEDULER_")}
    return {**env, **(extra or {})}


def scale_scheduler(
    command: str,
    config: Path,
    *,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, str(SCRIPT), command, "--config", str(config)],
        capture_output=True,
        text=True,
        env=_environ(env),
        timeout=60,
        check=False,
    )


def daemon_config(tmp_path: Path, state_path: Path | None = None, **sections: Any) -> Path:
    """A config whose daemon would serve (loopback, a free port, no Mesos master listening)."""
    values: dict[str, Any] = {
        "api": {"host": "127.0.0.1", "port": free_port()},
        "state": {"path": str(state_path or tmp_path / "state.db")},
        "mesos": {"master": f"http://127.0.0.1:{free_port()}", "backoff_max": 1.0},
    }
    for section, overrides in sections.items():
        values.setdefault(section, {}).update(overrides)
    return write_config(tmp_path / "config.yaml", **values)


def log_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def assert_refused(
    config: Path,
    status: int,
    expected: str,
    *,
    logged: bool,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> str:
    """``check-config`` and ``run`` both exit ``status`` with one stderr line holding
    ``expected``; ``run`` logs it as one event when ``logged`` (else stdout stays empty)."""
    lines = []
    for command in ("check-config", "run"):
        done = scale_scheduler(command, config, env=env, prefix=prefix)
        output = done.stdout + done.stderr
        assert done.returncode == status, f"{command}: {output}"
        assert "Traceback" not in output
        assert len(done.stderr.splitlines()) == 1, f"{command}: {done.stderr}"
        line = done.stderr.strip()
        assert expected in line, line
        lines.append(line)
        if command == "run":
            events = log_events(done.stdout)
            if logged:
                assert [e["event"] for e in events] == ["daemon_fatal"], done.stdout
                assert events[0]["exit_code"] == status
                assert line.endswith(events[0]["message"])
            else:
                assert done.stdout == ""
    assert lines[0] == lines[1]  # the same words from both commands
    return lines[0]


# --- item 8: a database the store cannot use exits 3 with one line -------------------------------


def _real_database(path: Path) -> Path:
    async def create() -> None:
        await (await Store.open(path)).close()

    asyncio.run(create())
    return path


def _directory(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    path.mkdir()
    return path


def _random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    path.write_bytes(os.urandom(8192))
    return path


def _truncated_header(tmp_path: Path) -> Path:
    real = _real_database(tmp_path / "real.db")
    path = tmp_path / "state.db"
    path.write_bytes(real.read_bytes()[:40])  # the magic string and part of the header
    return path


def _newer_schema(tmp_path: Path) -> Path:
    path = _real_database(tmp_path / "state.db")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    return path


def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "plain-file").write_text("x")
    return tmp_path / "plain-file" / "sub" / "state.db"


def _foreign_database(tmp_path: Path) -> Path:
    """Another program's SQLite file, which happens to have a ``tasks`` table."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tasks (x)")
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_directory, "is a directory, not a database file"),
        (_random_bytes, "file is not a database"),
        (_truncated_header, "database disk image is malformed"),
        (_newer_schema, "the database schema is version 99, newer than this program knows"),
        (_under_a_file, "cannot create it: "),
        (_foreign_database, "it holds 1 table(s) but no scale-scheduler schema version"),
    ],
)
def test_a_bad_database_exits_3_with_one_line(tmp_path: Path, make: Any, problem: str) -> None:
    path = make(tmp_path)
    line = assert_refused(
        daemon_config(tmp_path, path), STORE_ERROR, f"state.path {path}: {problem}", logged=True
    )
    assert line.startswith("scale-scheduler: database error: ")


def _without_root_powers() -> list[str]:
    """A prefix that makes file permissions bind (root ignores them), or skips the test."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be made to bind")
    dropped = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, f"--bounding-set={dropped}", f"--inh-caps={dropped}", "--"]


def test_an_unwritable_directory_exits_3_with_one_line(tmp_path: Path) -> None:
    prefix = _without_root_powers()
    locked = tmp_path / "locked"
    locked.mkdir()
    existing = _real_database(locked / "existing.db")
    locked.chmod(0o555)
    try:
        assert_refused(
            daemon_config(tmp_path, locked / "new.db"),
            STORE_ERROR,
            f"state.path {locked / 'new.db'}: cannot create it: {locked} is not writable",
            logged=True,
            prefix=prefix,
        )
        assert_refused(
            daemon_config(tmp_path, existing),
            STORE_ERROR,
            f"state.path {existing}: its directory {locked} is not writable",
            logged=True,
            prefix=prefix,
        )
    finally:
        locked.chmod(0o755)


async def test_a_database_failing_after_the_checks_still_exits_3_with_one_line(
    make_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``serve`` itself (what runs after the checks; the demo calls it directly) maps a store
    that cannot open to exit 3 and one stderr line, not a traceback."""
    path = tmp_path / "state.db"
    path.write_bytes(os.urandom(4096))
    config: Config = make_config(state={"path": str(path)})
    status = await serve(config, app=build_app(config, connect_mesos=False))
    assert status is ExitCode.STORE_ERROR
    err = capsys.readouterr().err
    assert err == f"scale-scheduler: database error: state.path {path}: file is not a database\n"


def test_damage_past_the_checked_pages_exits_3_with_one_line(tmp_path: Path) -> None:
    """Pages the start-up checks do not read (they read the header and the schema) are damaged:
    the daemon finds out while loading its state and still exits 3 with one line."""
    path = _real_database(tmp_path / "state.db")
    with sqlite3.connect(path) as db:
        db.executemany(  # queued tasks, which start-up loads: rows on many pages
            "INSERT INTO tasks (id, name, state, priority, cpus, mem, disk, gpus, ports, spec, "
            "max_attempts, attempts, created, queued, last_modified) "
            "VALUES (?, ?, 'QUEUED', 100, 1, 1, 0, 0, 0, '{}', 1, 0, 0, 0, 0)",
            [(i, "t" * 200) for i in range(1, 3001)],
        )
        page = db.execute("PRAGMA page_size").fetchone()[0]
    with sqlite3.connect(path) as db:  # every page into the file itself, none left in the WAL
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    for offset in range(8 * page, len(data), 3 * page):  # header, schema pages left intact
        data[offset : offset + page] = os.urandom(page)
    path.write_bytes(bytes(data))
    config = daemon_config(tmp_path, path)
    done = scale_scheduler("run", config)
    output = done.stdout + done.stderr
    assert done.returncode == STORE_ERROR, output
    assert "Traceback" not in output
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "state.path: the database cannot be read" in done.stderr
    events = log_events(done.stdout)
    assert [e["event"] for e in events if e.get("level") == "error"] == ["daemon_fatal"]


# --- item 9: check-config runs run's checks, and changes nothing -------------------------------


@pytest.mark.parametrize(
    ("content", "problem"), [(None, "cannot read {token}: "), ("", "{token} is empty")]
)
def test_an_unusable_token_file_exits_2_from_both_commands(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    token = tmp_path / "api-token"
    if content is not None:
        token.write_text(content)
        token.chmod(0o600)
    line = assert_refused(
        daemon_config(tmp_path, api={"token_file": str(token)}),
        CONFIG_ERROR,
        "api.token_file: " + problem.format(token=token),
        logged=True,
    )
    assert line.startswith("scale-scheduler: config error: api.token_file: ")
    assert not (tmp_path / "state.db").exists()  # refused before the store opens


def test_check_config_creates_no_database_and_no_journal(tmp_path: Path) -> None:
    missing = tmp_path / "sub" / "state.db"
    done = scale_scheduler("check-config", daemon_config(tmp_path, missing))
    assert (done.returncode, done.stderr) == (0, "")
    assert not missing.parent.exists()
    existing = _real_database(tmp_path / "existing.db")
    before = sorted(p.name for p in tmp_path.iterdir())
    done = scale_scheduler("check-config", daemon_config(tmp_path, existing))
    assert (done.returncode, done.stderr) == (0, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no -wal, no -shm


# --- item 10: risky combinations ------------------------------------------------------------------


def test_read_auth_without_a_token_file_exits_2(tmp_path: Path) -> None:
    assert_refused(
        daemon_config(tmp_path, api={"read_auth": True}),
        CONFIG_ERROR,
        "api.read_auth: true needs api.token_file",
        logged=False,
    )


def test_a_duplicate_yaml_key_exits_2_naming_key_and_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"api:\n  port: {free_port()}\n  host: 127.0.0.1\n  port: 1\n")
    assert_refused(
        config,
        CONFIG_ERROR,
        f"{config}: not valid YAML: line 4, column 3: duplicate key 'port' (first at line 2)",
        logged=False,
    )


async def test_a_token_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    token = tmp_path / "api-token"
    token.write_text("warned-token-0123456789\n")
    token.chmod(0o644)
    config = daemon_config(tmp_path, api={"token_file": str(token)})
    done = scale_scheduler("check-config", config)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        f"scale-scheduler: warning: api.token_file: {token} is open to users other than its "
        f"owner (mode 0644); make it private: chmod 600 {token}\n"
    )
    assert done.stdout == f"{config}: OK (1 warning)\n"

    port = yaml.safe_load(config.read_text())["api"]["port"]
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        await daemon.wait_ready()
    finally:
        daemon.stop_quietly()
    warnings = [e for e in log_events(daemon.all_logs()) if e["event"] == "config_warning"]
    assert [(e["key"], e["level"]) for e in warnings] == [("api.token_file", "warning")]
    assert "warned-token" not in daemon.all_logs()

    token.chmod(0o600)
    done = scale_scheduler("check-config", config)
    assert (done.returncode, done.stderr) == (0, "")


# --- item 11: messages ------------------------------------------------------------------------


def test_a_bad_environment_value_is_reported_by_its_variable(tmp_path: Path) -> None:
    assert_refused(
        daemon_config(tmp_path),
        CONFIG_ERROR,
        "config error: api.port: expected int, got str (from SCALE_SCHEDULER_API__PORT)",
        logged=False,
        env={"SCALE_SCHEDULER_API__PORT": "abc"},
    )


def test_invalid_yaml_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("api:\n  port: [1\n")
    assert_refused(
        config, CONFIG_ERROR, f"{config}: not valid YAML: line 3, column 1: ", logged=False
    )


def test_an_upper_case_log_level_is_accepted(tmp_path: Path) -> None:
    done = scale_scheduler("check-config", daemon_config(tmp_path, logging={"level": "INFO"}))
    assert (done.returncode, done.stderr) == (0, "")


def test_a_nul_character_in_a_file_name_exits_2_from_both_commands(tmp_path: Path) -> None:
    """check-config passed it and run died with exit 1 (ValueError from the store's open)."""
    config = daemon_config(tmp_path, state={"path": str(tmp_path / "a\0b.db")})
    assert_refused(
        config,
        CONFIG_ERROR,
        "config error: state.path: a file name cannot contain a NUL character",
        logged=False,
    )
