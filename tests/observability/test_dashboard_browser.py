"""The dashboard in a real browser (headless Debian Chromium driven by Playwright) against the
daemon and the simulated cluster: live numbers, global pause, node pause, the submit form, the
token prompt; a screenshot is saved under ``tests/artifacts/``.

Never runs ``playwright install``: it drives the system's ``/usr/bin/chromium``. Without it (or
without the ``playwright`` package) these tests skip, except under ``CI``, where they fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
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
        await page.goto(daemon.url)
        await page.wait_for_selector('#live[data-state="live"]')
        await page.wait_for_function(
            "document.querySelectorAll('#nodes-table tbody tr').length === 4"
        )
        assert await _text(page, "#launches") == "0"

        # Live numbers: work submitted through the API shows up without a reload.
        await daemon.submit([task(f"live{i}", labels={"sim.duration": "0.4"}) for i in range(40)])
        await page.wait_for_function("Number(document.getElementById('launches').textContent) > 0")
        await page.wait_for_function(
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
        await page.wait_for_function(
            "document.getElementById('pause-button').textContent === 'Resume scheduler'"
        )
        assert "paused" in await _text(page, "#banner")

        # While paused, the submit form queues work that waits, with its reason on the page.
        await page.fill('#submit-form input[name="name"]', "from-ui")
        await page.fill('#submit-form input[name="count"]', "3")
        await page.click("#submit-button")
        await daemon.until(lambda: daemon.core.queue_depth == 3, timeout=10)
        await page.wait_for_function("document.getElementById('queue-depth').textContent === '3'")
        queue = await _text(page, "#queue-table")
        assert "from-ui-1" in queue
        assert "the scheduler is paused" in queue

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
        await page.wait_for_function(
            f"document.querySelector('{row}').textContent.includes('disk replacement')"
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
