"""The pipeline's pages in Airflow's UI, in a real browser (Debian's headless Chromium, driven by
Playwright) on the real stack: log in, open "HR metrics" from the UI's navigation and "Data
quality" from an ingest_table run's tabs, and check that the numbers drawn are those of the
published tables and the ingest ledger (read with SQL from the warehouse). Screenshots at
1280x800 go to test-artifacts/ (git-ignored).

The browser reaches nothing but this machine: a request that fails (a CDN, say) fails the test.
"""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import quote

import httpx
import pytest
from stack_support import PROJECT_ROOT
from test_ui_browser import browser, chromium  # noqa: F401 - the module's browser fixtures, reused

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres, pytest.mark.azurite]

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
VIEWPORT = {"width": 1280, "height": 800}
SCROLL_TO_TOP = "element => element.scrollIntoView({block: 'start'})"


@pytest.fixture
def signed_in(local_stack, browser):  # noqa: F811 - the fixture imported above
    """A page of the UI, signed in as the admin; requests that fail are collected."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
    page.set_default_timeout(60_000)
    expect.set_options(timeout=60_000)
    page.failed_requests = []
    page.on(
        "requestfailed",
        lambda request: (
            page.failed_requests.append(request.url)
            # blob: URLs are the UI's own in-memory objects (revoked once used), not requests
            if request.resource_type in ("script", "stylesheet", "font", "image", "document")
            and not request.url.startswith("blob:")
            else None
        ),
    )
    page.goto(f"{local_stack.url}/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("admin")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{local_stack.url}/")
    yield page
    page.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def _marks(frame, chart: str) -> list[dict]:
    """The data-* attributes of a chart's marks, as the page drew them."""
    return frame.locator(f'svg[data-chart="{chart}"] [data-value]').evaluate_all(
        "marks => marks.map(m => ({row: m.dataset.row, column: m.dataset.column, value: m.dataset.value}))"
    )


def _quarters_by_department(local_stack, year: int, departments: tuple[str, ...] = ()) -> dict:
    where, params = "WHERE year = %s", [year]
    if departments:
        where += " AND department = ANY(%s)"
        params.append(list(departments))
    rows = local_stack.sql(
        f"SELECT department, SUM(q1), SUM(q2), SUM(q3), SUM(q4) FROM hires_by_quarter {where} "
        "GROUP BY department",
        tuple(params),
    )
    return {
        (department, quarter): int(value)
        for department, *quarters in rows
        for quarter, value in zip(("Q1", "Q2", "Q3", "Q4"), quarters)
    }


def _newest_publication(local_stack) -> str:
    events = local_stack.api.json(
        "GET",
        "/api/v2/assets/events",
        params={"source_dag_id": "publish_metrics", "order_by": "-timestamp", "limit": 1},
    )["asset_events"]
    return events[0]["source_run_id"]


def test_hr_metrics_from_the_navigation_draws_the_published_tables(local_stack, published, signed_in):
    from playwright.sync_api import expect

    page = signed_in
    page.get_by_role("link", name="HR metrics").click()
    page.wait_for_url(re.compile(r"/plugin/hr-metrics"))
    frame = page.frame_locator('iframe[title="HR metrics"]')
    expect(frame.get_by_role("heading", name="HR metrics")).to_be_visible()

    # Who published, linked to the run in the UI.
    run_id = _newest_publication(local_stack)
    link = frame.locator("#publication a")
    expect(link).to_have_text(run_id)
    assert link.get_attribute("href").endswith(f"/dags/publish_metrics/runs/{quote(run_id, safe='')}")

    # The year offered first is the latest the tables hold; its heatmap is the table's sums.
    years = sorted(row[0] for row in local_stack.sql("SELECT DISTINCT year FROM hires_by_quarter"))
    latest = frame.locator('select[name="year"]')
    expect(latest).to_have_value(str(years[-1]))
    drawn = {(m["row"], m["column"]): int(m["value"]) for m in _marks(frame, "quarters-by-department")}
    assert drawn == _quarters_by_department(local_stack, years[-1])
    _shot(page, "pages_hr_metrics.png")

    # 2021, picked in the form: the published 2021 tables, and every year's total.
    latest.select_option("2021")
    expect(frame.locator("#year-total")).to_have_attribute("data-value", "1643")
    drawn = {(m["row"], m["column"]): int(m["value"]) for m in _marks(frame, "quarters-by-department")}
    assert drawn == _quarters_by_department(local_stack, 2021)
    above = [(m["row"], int(m["value"])) for m in _marks(frame, "departments-above-mean") if m["row"]]
    assert above == [
        (department, hired)
        for department, hired in local_stack.sql(
            "SELECT department, hired FROM departments_above_mean_2021 ORDER BY hired DESC, department"
        )
    ]
    per_year = {m["row"]: int(m["value"]) for m in _marks(frame, "hires-per-year")}
    assert per_year == {
        str(year): int(hired)
        for year, hired in local_stack.sql(
            "SELECT year, SUM(q1 + q2 + q3 + q4) FROM hires_by_quarter GROUP BY year"
        )
    }
    frame.locator('svg[data-chart="departments-above-mean"]').evaluate(SCROLL_TO_TOP)
    _shot(page, "pages_hr_metrics_2021_above_mean.png")

    # Narrowed to one department: the charts and the CSV follow.
    frame.locator('select[name="department"]').select_option("Support")
    frame.get_by_role("button", name="Apply").click()
    # The new page has one department's four quarters (the old one, every department's)
    expect(frame.locator('svg[data-chart="quarters-by-department"] .cell')).to_have_count(4)
    assert {m["row"] for m in _marks(frame, "quarters-by-department")} == {"Support"}
    with page.expect_download() as download:
        frame.get_by_role("link", name="Hires per quarter by department (CSV)").click()
    rows = list(csv.reader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))
    expected = _quarters_by_department(local_stack, 2021, ("Support",))
    assert rows[0] == ["department", "q1", "q2", "q3", "q4", "total"]
    assert rows[1][:5] == ["Support", *(str(expected[("Support", q)]) for q in ("Q1", "Q2", "Q3", "Q4"))]
    assert page.failed_requests == []


# The first cell of each rejected row (its id) whose text the browser laid out on more than one line.
IDS_ON_MORE_THAN_ONE_LINE = """table => [...table.querySelectorAll("tbody tr td:first-child")]
    .filter(cell => {
        if (!cell.firstChild) return false;
        const range = document.createRange();
        range.selectNodeContents(cell);
        return new Set([...range.getClientRects()].map(rect => Math.round(rect.top))).size > 1;
    })
    .map(cell => cell.textContent)"""


def test_data_quality_of_an_ingest_run_draws_its_ledger_rows(local_stack, ingested, signed_in):
    from playwright.sync_api import expect

    page = signed_in
    run_id = ingested["hired_employees"]["dag_run_id"]
    page.goto(f"{local_stack.url}/dags/ingest_table/runs/{quote(run_id, safe='')}")
    page.get_by_role("tab", name="Data quality").or_(
        page.get_by_role("link", name="Data quality")
    ).first.click()
    frame = page.frame_locator('iframe[title="Data quality"]')
    expect(frame.get_by_role("heading", name="Data quality")).to_be_visible()

    ((files, rows, loaded, rejected),) = local_stack.sql(
        "SELECT COUNT(*), SUM(rows), SUM(loaded), SUM(rejected) FROM ingest_files WHERE run_id = %s",
        (run_id,),
    )
    for element_id, value in [
        ("files-count", files),
        ("rows-read", rows),
        ("rows-loaded", loaded),
        ("rows-rejected", rejected),
    ]:
        expect(frame.locator(f"#{element_id}")).to_have_attribute("data-value", str(value))
    assert rejected > 0  # the sample extract has rows the contract refuses

    # The reasons add up to at least the rejected rows (a row may break more than one rule),
    # most frequent first, and each shows its first rows as text.
    reasons = [int(m["value"]) for m in _marks(frame, "reasons")]
    assert reasons == sorted(reasons, reverse=True)
    assert sum(reasons) >= rejected
    ((rejects_file,),) = local_stack.sql("SELECT rejects_file FROM ingest_files WHERE run_id = %s", (run_id,))
    expect(frame.get_by_text(rejects_file, exact=False).first).to_be_visible()
    expect(frame.locator("table.cells").first).to_be_visible()
    cut = frame.locator("table.cells").first.evaluate(IDS_ON_MORE_THAN_ONE_LINE)
    assert cut == [], f"rejected rows' ids cut across lines: {cut}"
    _shot(page, "pages_data_quality.png")
    frame.locator('svg[data-chart="reasons"]').first.evaluate(SCROLL_TO_TOP)
    _shot(page, "pages_data_quality_reasons.png")
    assert page.failed_requests == []


def test_no_login_no_page(local_stack):
    anonymous = httpx.Client(base_url=f"{local_stack.url}/hr", timeout=30)
    for path in (
        "/pages/metrics",
        "/pages/metrics/hires-per-year.csv",
        "/pages/quality?dag_id=ingest_table&run_id=x",
    ):
        assert anonymous.get(path).status_code == 401, path
    forged = anonymous.get("/pages/metrics", headers={"Authorization": "Bearer not.a.jwt"})
    assert forged.status_code in (401, 403)
