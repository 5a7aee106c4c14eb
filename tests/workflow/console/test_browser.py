"""The console in a real browser: Playwright driving Debian's Chromium (`make browser` installs it;
the `browser` and `page` fixtures are in conftest.py).

One walk through what a user does: open the printed token URL, find a failed execution,
see its graph and history, fix the cause, press Redrive and watch it succeed. Screenshots
go to build/screenshots/ as test artifacts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = Path(__file__).resolve().parents[3] / "build" / "screenshots"
TOKEN = "test-token-0123456789"  # conftest.TOKEN


def _shot(page: Any, name: str, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"), full_page=full_page)


def test_redrive_a_failed_execution_from_the_console(setup: Any, console: str, fail: Any, page: Any) -> None:
    fail("first-try")
    page.goto(f"{console}/?token={TOKEN}")
    assert page.url == f"{console}/"  # the token moved into a cookie and out of the address bar
    page.wait_for_selector("#session >> text=actions enabled")
    page.wait_for_selector("tr[data-execution='first-try'] >> text=FAILED")
    _shot(page, "1-executions")

    page.click("text=first-try")
    page.wait_for_selector("svg.graph g.state.status-failed[data-state='CallFlaky']")
    assert page.locator("svg.graph g.state.status-succeeded[data-state='Prepare']").count() == 1
    assert page.locator("svg.graph g.group[data-state='FanOut']").count() == 1  # the Map is drawn as a group
    assert page.locator("svg.graph g.state[data-state='Double']").count() == 1
    assert page.locator("svg.graph .edge-label", has_text="default").count() == 1
    page.wait_for_selector("#history-body >> text=ExecutionFailed")
    page.click("svg.graph g.state[data-state='CallFlaky']")
    page.wait_for_selector("#state-detail >> text=broken is present")
    _shot(page, "2-failed-execution")

    setup.flag.unlink()  # "fix the bug", then redrive from the page
    page.click("#redrive-button")
    page.wait_for_selector("h1 .badge.status-succeeded")
    page.wait_for_selector("svg.graph g.state.status-succeeded[data-state='FanOut']")
    page.wait_for_selector("svg.graph g.state.status-succeeded[data-state='CallFlaky']")
    assert page.text_content("#redrive-count") == "1"
    page.wait_for_selector("#history-body >> text=ExecutionRedriven")
    page.wait_for_selector("#history-body >> text=ExecutionSucceeded")
    assert page.is_disabled("#redrive-button")
    _shot(page, "3-redriven-execution")

    report_url = page.get_attribute("#report-link", "href")
    page.goto(f"{console}{report_url}")
    page.wait_for_selector("text=Time per state")
    assert "first-try" in page.title()
    _shot(page, "4-run-report", full_page=True)


def test_without_the_token_the_console_is_read_only(setup: Any, console: str, fail: Any, page: Any) -> None:
    arn = fail("read-only")
    page.goto(f"{console}/#/execution/{arn}")
    page.wait_for_selector("svg.graph g.state.status-failed[data-state='CallFlaky']")
    page.wait_for_selector("#session >> text=read-only")
    assert page.is_disabled("#redrive-button")
    status = page.evaluate("""async (arn) => (await fetch('/api/redrive', {method: 'POST', body: JSON.stringify({arn}),
                                                          headers: {'Content-Type': 'application/json'}})).status""", arn)
    assert status == 403
    assert setup.engine.describe_execution(arn)["redriveCount"] == 0


def test_start_with_input_then_stop(setup: Any, console: str, page: Any) -> None:
    page.goto(f"{console}/?token={TOKEN}")
    page.click("#machine-list >> text=waiting")
    page.click("#start-form summary")
    page.fill("#start-input", '{"from": "the browser"}')
    page.fill("#start-name", "from-browser")
    page.click("#start-button")
    page.wait_for_selector("h1 >> text=from-browser")
    page.wait_for_selector("svg.graph g.state.status-running[data-state='Hold']")  # drawn live while it runs
    _shot(page, "5-running-execution")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#stop-button")
    page.wait_for_selector("h1 .badge.status-aborted")
    page.wait_for_selector("svg.graph g.state.status-aborted[data-state='Hold']")
    description = setup.engine.describe_execution("from-browser")
    assert description["status"] == "ABORTED" and description["input"] == '{"from": "the browser"}'
