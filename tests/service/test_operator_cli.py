"""Every operator command against a running daemon (the real process, against the simulator).

The commands run in-process through ``cli.main`` (they are synchronous HTTP clients), so their
output and exit status are read directly. The daemon's stdout is then checked for the events an
operator relies on in the journal.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from servicekit import DaemonProcess, SimProcess, daemon_config, free_port, wait_for

from scale_scheduler.daemon.cli import main as cli


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, sim: SimProcess) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("operator-cli")
    # format "auto" on a pipe: JSON lines, as journald gets them.
    config = daemon_config(tmp, sim.url, port=free_port(), fmt="auto")
    process = DaemonProcess.start(tmp, config)
    try:
        process.wait_for_event("mesos_connection_changed", state="SUBSCRIBED")
        yield process
    finally:
        process.send(signal.SIGTERM)
        process.wait(timeout=10)
        process.kill()


@pytest.fixture
def url(daemon: DaemonProcess) -> str:
    return daemon.api_url()


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str], url: str) -> None:
        self.capsys = capsys
        self.url = url

    def __call__(self, *argv: str, url: bool = True) -> tuple[int, str, str]:
        args = [*argv, "--url", self.url] if url else list(argv)
        code = cli.main(args)
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> Any:
        code, out, err = self(*argv, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], url: str) -> Run:
    return Run(capsys, url)


def test_status_as_a_table_and_as_json(run: Run) -> None:
    code, out, err = run("status")
    assert code == 0, err
    assert "master" in out
    assert "scheduler" in out
    assert "queue depth: " in out
    leader_line = out.splitlines()[-1]
    assert leader_line.startswith("leader: ")
    assert "epoch 1, since " in leader_line
    assert "(leader, http://" in leader_line  # the instance asked leads: a single instance
    body = run.json("status")
    assert body["scheduler"]["hostname"] == "sched.test"
    assert body["master"]["is_online"] is True


def test_default_url_comes_from_the_config(run: Run, daemon: DaemonProcess) -> None:
    code, out, err = run("status", "--config", str(daemon.config_path), url=False)
    assert code == 0, err
    assert "queue depth" in out


def test_pause_and_resume(run: Run) -> None:
    code, out, _ = run("pause")
    assert code == 0
    assert out.startswith("scheduler paused")
    assert run.json("status")["scheduler"]["is_paused"] is True
    code, out, _ = run("resume")
    assert code == 0
    assert out == "scheduler resumed\n"
    assert run.json("status")["scheduler"]["is_paused"] is False


def test_nodes_and_node_pause_resume(run: Run) -> None:
    nodes = wait_for(lambda: run.json("nodes"))
    hostname = nodes[0]["hostname"]
    code, out, _ = run("nodes")
    assert code == 0
    assert hostname in out
    assert "HOSTNAME" in out

    code, out, _ = run("node-pause", hostname, "--reason", "disk swap")
    assert (code, out) == (0, f"node {hostname} paused (disk swap)\n")
    node = next(n for n in run.json("nodes") if n["hostname"] == hostname)
    assert (node["is_paused"], node["pause_reason"]) == (True, "disk swap")

    code, out, _ = run("node-resume", hostname)
    assert code == 0
    assert out.startswith(f"node {hostname} resumed")
    node = next(n for n in run.json("nodes") if n["hostname"] == hostname)
    assert (node["is_paused"], node["pause_reason"]) == (False, None)

    code, out, err = run("node-pause", "no-such-host")
    assert code == 1
    assert out == ""
    assert "no node with hostname 'no-such-host'" in err


def test_submit_from_options_and_files_then_tasks_lists_them(run: Run, tmp_path: Path) -> None:
    created = run.json(
        "submit", "--name", "opt", "--command", "true", "--cpus", "0.5", "--mem", "32",
        "--label", "sim.duration=0.1", "--env", "A=1", "--count", "2",
    )  # fmt: skip
    assert [t["name"] for t in created] == ["opt-1", "opt-2"]
    assert created[0]["env"] == {"A": "1"}
    assert created[0]["labels"] == {"sim.duration": "0.1"}

    yaml_file = tmp_path / "tasks.yaml"
    yaml_file.write_text(
        yaml.safe_dump(
            [{"name": "from-yaml", "command": "true", "cpus": 0.5, "mem": 32, "priority": 5}]
        )
    )
    code, out, err = run("submit", "--file", str(yaml_file))
    assert code == 0, err
    assert "from-yaml" in out
    assert "1 task(s) queued" in out
    json_file = tmp_path / "task.json"
    json_file.write_text(json.dumps({"name": "from-json", "command": "true", "cpus": 1, "mem": 8}))
    single = run.json("submit", "--file", str(json_file))
    assert single["name"] == "from-json"
    assert single["state"] == "QUEUED"

    ids = {t["id"] for t in created} | {single["id"]}

    def finished() -> bool:
        listed = run.json("tasks", "--state", "finished", "--page-size", "1000")["results"]
        return ids <= {t["id"] for t in listed}

    wait_for(finished)
    code, out, _ = run("tasks", "--state", "FINISHED")
    assert code == 0
    assert "opt-1" in out
    assert "from-json" in out
    assert "FINISHED" in out


def test_submit_takes_constraints_and_a_group_from_flags_and_yaml(run: Run, tmp_path: Path) -> None:
    created = run.json(
        "submit", "--name", "c", "--command", "true", "--cpus", "0.1", "--mem", "8",
        "--group", "etl", "--constraint", "hostname:UNIQUE", "--constraint", "rack:GROUP_BY:3",
        "--constraint", "zone:LIKE:us-.*", "--constraint", "os=linux",
    )  # fmt: skip
    assert created["group"] == "etl"
    assert created["constraints"] == [
        ["hostname", "UNIQUE"],
        ["rack", "GROUP_BY", "3"],
        ["zone", "LIKE", "us-.*"],
        ["os", "IS", "linux"],
    ]
    yaml_file = tmp_path / "grouped.yaml"
    yaml_file.write_text(
        "name: y\ncommand: 'true'\ncpus: 0.1\nmem: 8\ngroup: web\n"
        "constraints:\n  - [hostname, MAX_PER, '2']\n"
    )
    from_yaml = run.json("submit", "--file", str(yaml_file))
    assert (from_yaml["group"], from_yaml["constraints"]) == ("web", [["hostname", "MAX_PER", "2"]])
    code, _, err = run("submit", "--name", "x", "--command", "true", "--constraint", "rack")
    assert code == 2
    assert "--constraint expects FIELD:OPERATOR[:VALUE] or KEY=VALUE" in err
    code, _, err = run(
        "submit", "--name", "x", "--command", "true", "--cpus", "1", "--mem", "8",
        "--constraint", "hostname:UNIQUE",
    )  # fmt: skip
    assert code == 1
    assert "the task needs a group" in err


def test_submit_errors_come_from_the_server_or_the_usage(run: Run, tmp_path: Path) -> None:
    code, out, err = run("submit", "--name", "x", "--command", "true", "--mem", "32")
    assert code == 1
    assert out == ""
    assert "400 Bad Request: Field 'cpus' is required." in err

    code, _, err = run("submit", "--file", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "cannot read" in err
    task_file = tmp_path / "t.json"
    task_file.write_text("{}")
    code, _, err = run("submit", "--file", str(task_file), "--name", "x")
    assert code == 2
    assert "either --file or task options" in err
    code, _, err = run("submit", "--name", "x", "--env", "NOEQUALS")
    assert code == 2
    assert "--env expects KEY=VALUE" in err
    code, _, err = run("submit", "--name", "x", "--retry-backoff", "1,x")
    assert code == 2
    assert "--retry-backoff expects INITIAL[,FACTOR[,MAX]]" in err


def test_submit_takes_the_lifecycle_options(run: Run) -> None:
    created = run.json(
        "submit", "--name", "life", "--command", "true", "--cpus", "0.1", "--mem", "8",
        "--max-attempts", "3", "--kill-grace-period", "30", "--max-runtime", "3600",
        "--retry-backoff", "10,2,600",
    )  # fmt: skip
    assert (created["kill_grace_period"], created["max_runtime"]) == (30.0, 3600.0)
    assert created["retry_backoff"] == {"initial": 10.0, "factor": 2.0, "max": 600.0}


def test_kill_cancels_queued_kills_running_and_refuses_finished(run: Run) -> None:
    run("pause")
    try:
        queued = run.json("submit", "--name", "q", "--command", "true", "--cpus", "0.1",
                          "--mem", "8")  # fmt: skip
        code, out, _ = run("kill", str(queued["id"]))
        assert (code, out) == (0, f"task {queued['id']} canceled before launch (now CANCELED)\n")
    finally:
        run("resume")

    long = run.json("submit", "--name", "long", "--command", "sleep 60", "--cpus", "0.1",
                    "--mem", "8", "--label", "sim.duration=60")  # fmt: skip
    task_path = f"{long['id']}"

    def in_state(state: str) -> bool:
        listed = run.json("tasks", "--state", state, "--page-size", "1000")["results"]
        return any(t["id"] == long["id"] for t in listed)

    wait_for(lambda: in_state("RUNNING"))
    code, out, _ = run("kill", task_path)
    assert code == 0
    assert out.startswith(f"kill of task {long['id']} sent to Mesos (it stays KILLING")
    wait_for(lambda: in_state("KILLED"))

    code, out, err = run("kill", task_path)
    assert code == 1
    assert out == ""
    assert err.startswith("scale-scheduler: 409 Conflict: Task")
    assert "already KILLED" in err
    code, _, err = run("kill", "999999")
    assert code == 1
    assert "404 Not Found: No task with id 999999." in err


def test_an_unreachable_daemon_is_exit_3_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()  # nothing listens there
    code = cli.main(["status", "--url", f"http://127.0.0.1:{port}/"])
    err = capsys.readouterr().err
    assert code == 3
    assert f"cannot reach the daemon at http://127.0.0.1:{port}/ (Connection refused)" in err


def test_a_bad_config_for_the_default_url_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("api: {port: many}\n")
    assert cli.main(["tasks", "--config", str(bad)]) == 2
    assert "config error: api.port" in capsys.readouterr().err


def test_the_journal_gets_one_json_event_per_change(run: Run, daemon: DaemonProcess) -> None:
    # Runs last in this module: the commands above made every kind of change.
    events = daemon.events()  # raises if any line is not JSON
    names = {event["event"] for event in events}
    for expected in (
        "mesos_connection_changed",
        "scheduler_pause_changed",
        "node_flags_changed",
        "task_state_changed",
        "task_states_changed",
        "tasks_queued",
    ):
        assert expected in names, expected
    states = {(e["old"], e["new"]) for e in events if e["event"] == "task_state_changed"}
    assert ("QUEUED", "CANCELED") in states
    # Routine progress is counted at info (one event per pass or burst), per task at debug.
    assert any(e["event"] == "offer_pass" and e["launched"] for e in events)
    reached = {s for e in events if e["event"] == "task_states_changed" for s in e["by_state"]}
    assert "FINISHED" in reached
