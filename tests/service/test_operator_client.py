"""The operator commands' HTTP client against a stand-in server: the bearer token, a 401, an
answer that is not the API's, and the table renderer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scale_scheduler.daemon.cli import main as cli
from scale_scheduler.daemon.cli.operator_cli import table


class StandIn(BaseHTTPRequestHandler):
    """``PATCH /scheduler/`` needs ``Bearer s3cret``; ``GET /status/`` answers HTML."""

    seen: list[str | None] = []

    def do_PATCH(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        if self.headers.get("Authorization") != "Bearer s3cret":
            self._send(401, b"A valid bearer token is required.\n", "text/plain")
        else:
            self._send(201, json.dumps(body).encode(), "application/json")

    def do_GET(self) -> None:
        self._send(200, b"<html>not the API</html>", "text/html")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[str]:
    StandIn.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_token_comes_from_token_file_or_the_config(
    stand_in: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    assert cli.main(["pause", "--url", stand_in, "--token-file", str(token)]) == 0
    assert capsys.readouterr().out.startswith("scheduler paused")

    config = tmp_path / "config.yaml"
    config.write_text(f"api: {{token_file: {token}}}\n")
    assert cli.main(["resume", "--url", stand_in, "--config", str(config)]) == 0
    assert StandIn.seen == ["Bearer s3cret", "Bearer s3cret"]


def test_without_the_token_the_server_message_and_a_hint(
    stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["pause", "--url", stand_in]) == 1
    err = capsys.readouterr().err
    assert "401 Unauthorized: A valid bearer token is required." in err
    assert "--token-file" in err
    assert StandIn.seen == [None]


def test_an_unreadable_token_file_is_a_usage_error(
    stand_in: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert cli.main(["pause", "--url", stand_in, "--token-file", str(missing)]) == 2
    assert f"cannot read the token file {missing}" in capsys.readouterr().err
    assert StandIn.seen == []


def test_an_answer_that_is_not_json_is_reported(
    stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "--url", stand_in]) == 1
    assert "did not answer with JSON" in capsys.readouterr().err


def test_table_aligns_columns_and_shows_missing_values() -> None:
    assert table(["ID", "NAME", "OK"], [[1, "a", True], [22, None, False], [3, "ccc", 0.5]]) == (
        "ID  NAME  OK\n1   a     yes\n22  -     no\n3   ccc   0.5"
    )
