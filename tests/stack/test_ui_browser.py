"""The Airflow UI in a real browser (Debian's headless Chromium, driven by Playwright): log in,
open ingest_table's trigger form, pick a table in the dropdown, trigger, and see the run succeed.

Playwright never downloads a browser here: the test launches /usr/bin/chromium, installing the
Debian package first when it is missing (scripts/install_chromium.sh). A screenshot of the
finished run is saved to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
from stack_support import PROJECT_ROOT, skip_or_fail

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres, pytest.mark.azurite]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        result = subprocess.run(
            ["bash", str(PROJECT_ROOT / "scripts" / "install_chromium.sh")], capture_output=True, text=True
        )
        if result.returncode != 0 or not CHROMIUM.exists():
            skip_or_fail(f"Chromium is missing and could not be installed: {result.stderr[-2000:]}")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_trigger_ingest_from_the_form_and_see_the_run_succeed(local_stack, browser):
    from playwright.sync_api import expect

    # The file the run will find (an upsert of rows already loaded: the counts stay).
    local_stack.upload_extract("jobs", name="jobs_from_the_ui.csv")
    base = local_stack.url
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)  # actions; a busy 2-core machine renders slowly
    expect.set_options(timeout=60_000)  # assertions
    try:
        page.goto(f"{base}/")
        expect(page).to_have_url(re.compile(r"/auth/login"))
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("admin")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/")

        page.goto(f"{base}/dags/ingest_table")
        page.get_by_role("button", name="Trigger").click()
        form = page.get_by_role("dialog")
        expect(form.get_by_role("heading")).to_contain_text("ingest_table")
        form.get_by_role("combobox").first.click()  # the "Table" dropdown, built from the Param enum
        options = page.get_by_role("option")
        expect(options).to_have_text(["departments", "jobs", "hired_employees"])
        page.get_by_role("option", name="jobs", exact=True).click()
        expect(form).to_contain_text("jobs")
        form.get_by_role("button", name="Trigger").click()

        page.wait_for_url(re.compile(r"/dags/ingest_table/runs/"))
        run_id = unquote(page.url.rsplit("/runs/", 1)[1])
        run = local_stack.api.wait_for_run("ingest_table", run_id, timeout=900)
        assert run["state"] == "success", local_stack.api.failure_report("ingest_table", run_id)
        assert run["conf"]["table_name"] == "jobs"  # what the dropdown picked

        page.reload()
        expect(page.get_by_text(run_id, exact=True).first).to_be_visible()
        expect(page.get_by_text("Success").first).to_be_visible()  # the run's state badge
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ui_ingest_run_success.png"))
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ui_failure.png"))
        raise
    finally:
        page.close()
    assert local_stack.row_count("jobs") == 183


def test_the_hr_api_docs_render_with_no_internet(local_stack, browser):
    """The browser here reaches nothing but this machine: /hr/docs lists the API's operations
    only if its scripts come from the api-server itself."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)
    expect.set_options(timeout=60_000)
    failed: list[str] = []
    # Scripts, styles and fonts must all come from the api-server (ReDoc's footer logo, an
    # image from its vendor's site, is the one thing left to the internet).
    page.on(
        "requestfailed",
        lambda request: (
            failed.append(request.url)
            if request.resource_type in ("script", "stylesheet", "font", "fetch", "xhr")
            else None
        ),
    )
    try:
        page.goto(f"{local_stack.url}/hr/docs")
        operations = page.locator(".opblock-summary-path")
        expect(operations).to_have_count(5)
        expect(operations.first).to_contain_text("/api/ingest/{table_name}")
        page.goto(f"{local_stack.url}/hr/redoc")
        # ReDoc renders each operation's summary as a heading in its main pane
        expect(page.locator("h2", has_text="Ingest the files waiting under").first).to_be_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "hr_api_redoc.png"))
    finally:
        page.close()
    assert failed == []
