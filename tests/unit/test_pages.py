"""The UI pages (``hr_pipeline.api.pages``) on their own: the numbers they draw from the published
tables and the ledger, escaping of hostile text (a CSV cell is never markup), the reasons of
rejected rows, and the routes' authentication and authorization. The browser test
(tests/stack/test_pages_browser.py) opens them in Airflow's UI on the real stack."""

from __future__ import annotations

import csv
import io
import sqlite3
from contextlib import contextmanager
from datetime import datetime
from html.parser import HTMLParser

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from hr_pipeline.api.app import app
from hr_pipeline.api.pages import charts, metrics_page, quality_page
from hr_pipeline.api.pages.markup import Html, escape, html
from hr_pipeline.api.pages.metrics_page import Publication, Selection
from hr_pipeline.api.pages.routes import run_quality
from hr_pipeline.warehouse import ledger
from hr_pipeline.warehouse.dialects import adapter_for

QUARTER_ROWS = [
    {"year": 2020, "department": "Sales", "job": "Rep", "q1": 1, "q2": 0, "q3": 2, "q4": 0},
    {"year": 2021, "department": "Sales", "job": "Rep", "q1": 3, "q2": 1, "q3": 0, "q4": 4},
    {"year": 2021, "department": "Sales", "job": "Lead", "q1": 0, "q2": 2, "q3": 0, "q4": 0},
    {"year": 2021, "department": "Support", "job": "Rep", "q1": 5, "q2": 5, "q3": 5, "q4": 5},
    {"year": 2021, "department": "Legal", "job": "Counsel", "q1": 0, "q2": 0, "q3": 1, "q4": 0},
]
ABOVE_ROWS = [
    {"year": 2020, "id": 1, "department": "Sales", "hired": 3, "mean": 3.0},
    {"year": 2021, "id": 2, "department": "Support", "hired": 20, "mean": 34 / 3},
]
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    '=HYPERLINK("http://evil","x")',
    "' onmouseover='alert(1)",
    "&amp; &lt;b&gt;",
    "}{0}{",
]
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "link", "script", "body", "main", "h1", "h2", "h3", "h4", "h5",
    "p", "strong", "span", "a", "form", "label", "select", "option", "button", "div", "svg", "g",
    "rect", "text", "line", "table", "thead", "tbody", "tr", "th", "td", "code", "section", "dl",
    "dt", "dd",
}  # fmt: skip


class Markup(HTMLParser):
    """Every tag and attribute of a page, and its text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def marks(self, chart: str) -> list[dict]:
        """The data-* attributes of the marks of one chart (after its <svg data-chart=...>)."""
        marks, inside = [], False
        for tag, attrs in self.tags:
            if tag == "svg":
                inside = attrs.get("data-chart") == chart
            elif inside and "data-value" in attrs:
                marks.append(attrs)
        return marks


def assert_only_our_markup(page: str) -> None:
    parsed = Markup(page)
    for tag, attrs in parsed.tags:
        assert tag in ALLOWED_TAGS, tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
    assert [attrs.get("src") for tag, attrs in parsed.tags if tag == "script"] in (
        [],
        ["/hr/pages/static/pages.js"],
    )


# -- markup ----------------------------------------------------------------------------------------


@given(st.text())
def test_escaped_text_has_no_markup_and_reads_back_whole(text):
    import html as std_html

    escaped = escape(text)
    assert not set("<>\"'") & set(escaped)
    assert std_html.unescape(escaped) == text
    assert escape(escaped) == escaped  # markup is not escaped twice


def test_html_escapes_its_values_but_not_markup():
    assert html("<b>{}</b>{}", "<i>", Html("<i>ok</i>")) == "<b>&lt;i&gt;</b><i>ok</i>"


# -- the metrics page's numbers ----------------------------------------------------------------------


def test_the_latest_year_by_default_with_the_years_the_tables_hold():
    view = metrics_page.build_view(QUARTER_ROWS, ABOVE_ROWS, Selection())
    assert view.years == [2020, 2021]
    assert view.year == 2021
    assert view.departments == ["Legal", "Sales", "Support"]
    assert view.quarters_by("department") == [
        ("Legal", [0, 0, 1, 0]),
        ("Sales", [3, 3, 0, 4]),
        ("Support", [5, 5, 5, 5]),
    ]
    assert view.per_year == [(2020, 3), (2021, 31)]
    assert view.mean == pytest.approx(34 / 3)
    assert [row["department"] for row in view.above_mean] == ["Support"]


def test_narrowing_to_departments_and_jobs_follows_through_every_number():
    view = metrics_page.build_view(QUARTER_ROWS, ABOVE_ROWS, Selection(2021, ("Sales",), ("Rep",)))
    assert view.quarters_by("job") == [("Rep", [3, 1, 0, 4])]
    assert view.per_year == [(2020, 3), (2021, 8)]
    assert view.above_mean == []  # Support is above the mean, but not selected
    assert view.mean == pytest.approx(34 / 3)  # the year's mean does not move


def test_a_year_or_name_the_tables_do_not_hold_is_said_and_left_out():
    view = metrics_page.build_view(QUARTER_ROWS, ABOVE_ROWS, Selection(1999, ("Nobody",)))
    assert view.year == 2021
    assert view.selection.departments == ()
    assert any("1999" in notice for notice in view.notices)
    assert any("'Nobody'" in notice for notice in view.notices)


def test_no_published_rows_says_so():
    view = metrics_page.build_view([], [], Selection())
    page = metrics_page.render(view, None, "/hr", "")
    assert "no hires yet" in page


def test_the_charts_draw_the_numbers_of_the_tables():
    view = metrics_page.build_view(QUARTER_ROWS, ABOVE_ROWS, Selection())
    publication = Publication("publish_metrics", "manual__1", datetime(2026, 1, 2, 3, 4, 5), {})
    parsed = Markup(metrics_page.render(view, publication, "/hr", "/base"))
    cells = {
        (m["data-row"], m["data-column"]): int(m["data-value"])
        for m in parsed.marks("quarters-by-department")
    }
    assert cells[("Support", "Q3")] == 5
    assert cells[("Sales", "Q4")] == 4
    assert sum(cells.values()) == 31
    above = parsed.marks("departments-above-mean")
    assert [(m.get("data-row"), m["data-value"]) for m in above] == [("Support", "20"), (None, "11.33")]
    assert [(m["data-row"], int(m["data-value"])) for m in parsed.marks("hires-per-year")] == [
        ("2020", 3),
        ("2021", 31),
    ]
    links = [attrs for tag, attrs in parsed.tags if tag == "a" and "data-airflow-link" in attrs]
    assert links[0]["href"] == "/base/dags/publish_metrics/runs/manual__1"


@settings(max_examples=40, deadline=None)
@given(names=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=6, unique=True))
def test_any_department_or_job_name_is_text_on_the_page(names):
    rows = [
        {"year": 2021, "department": name, "job": names[-1 - i], "q1": i, "q2": 1, "q3": 0, "q4": 2}
        for i, name in enumerate(names)
    ]
    above = [{"year": 2021, "id": 1, "department": names[0], "hired": 9, "mean": 1.5}]
    view = metrics_page.build_view(rows, above, Selection(2021, (names[0],)))
    page = metrics_page.render(view, None, "/hr", "")
    assert_only_our_markup(page)
    rows_drawn = {m["data-row"] for m in Markup(page).marks("quarters-by-department")}
    assert rows_drawn == {names[0]}


def test_hostile_names_are_escaped_in_the_page():
    rows = [{"year": 2021, "department": h, "job": h, "q1": 1, "q2": 0, "q3": 0, "q4": 0} for h in HOSTILE]
    page = metrics_page.render(metrics_page.build_view(rows, [], Selection()), None, "/hr", "")
    assert_only_our_markup(page)
    for hostile in HOSTILE:
        assert hostile not in page or hostile == escape(hostile)


def test_every_dataset_is_the_charts_data_and_csv_cells_cannot_run_formulas():
    from hr_pipeline.ingest.run import spreadsheet_safe

    rows = QUARTER_ROWS + [
        {"year": 2021, "department": "=1+1", "job": "@SUM(A1)", "q1": 1, "q2": 0, "q3": 0, "q4": 0}
    ]
    view = metrics_page.build_view(rows, ABOVE_ROWS, Selection())
    header, data = metrics_page.dataset(view, "quarters-by-department")
    assert header == ["department", "q1", "q2", "q3", "q4", "total"]
    assert ["Support", 5, 5, 5, 5, 20] in data
    text = metrics_page.to_csv(header, data, spreadsheet_safe)
    parsed = list(csv.reader(io.StringIO(text)))
    assert ["'=1+1", "1", "0", "0", "0", "1"] in parsed
    for name in metrics_page.DATASETS:
        metrics_page.dataset(view, name)
    assert metrics_page.dataset(view, "hires-per-year") == (["year", "hired"], [[2020, 3], [2021, 32]])


# -- charts ----------------------------------------------------------------------------------------


def test_long_labels_are_shortened_with_the_whole_label_in_the_tooltip():
    label = "Research and Development of Very Long Department Names Incorporated"
    svg = charts.heatmap("c", "t", [label], ["Q1"], [[3]])
    parsed = Markup(svg)
    assert label in "".join(parsed.text)  # in <title>
    drawn = [t for t in parsed.text if t.endswith("…")]
    assert drawn
    assert len(drawn[0]) * charts.CHAR_WIDTH <= charts.MAX_LABEL_PX


def test_the_darkest_cells_have_white_numbers():
    assert charts.ink_on(10, 10) == "#ffffff"
    assert charts.ink_on(1, 10) != "#ffffff"
    assert charts.shade(0, 0) == "#effaff" or charts.shade(0, 0).startswith("#")


def test_many_years_are_drawn_as_horizontal_bars():
    bars = [charts.Bar(str(1990 + i), i) for i in range(charts.MAX_COLUMNS + 1)]
    assert "data-chart" in charts.columns("years", "Hires per year", bars)
    assert Markup(charts.columns("years", "t", bars)).marks("years")[0]["data-row"] == "1990"


# -- the data quality page -------------------------------------------------------------------------


def _rejects_file(rows: list[list[str]]) -> list[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["id", "name", "datetime", "department_id", "job_id", "reason"])
    writer.writerows(rows)
    return out.getvalue().splitlines(keepends=True)


REJECTED = [
    ["1", "<script>alert(1)</script>", "x", "2", "3", "row 2: datetime: 'x' is not an ISO 8601 UTC instant like 2021-11-07T02:48:42Z"],
    ["2", "'=cmd|' /C calc'!A0", "2021-01-01T00:00:00Z", "", "3", "row 3: department_id: required field is empty"],
    ["3", "", "", "99", "", "row 4: name: required field is empty; datetime: required field is empty; department_id: 99 does not exist in departments; job_id: required field is empty"],
    ["4", "Ann", "2021-01-01T00:00:00Z", "", "1", "row 5: department_id: required field is empty"],
]  # fmt: skip


def test_reasons_are_ranked_by_rows_and_a_row_counts_under_each_of_its_reasons():
    summary = quality_page.summarize_rejects(_rejects_file(REJECTED))
    assert summary.rows_read == 4
    assert summary.ranked() == [
        ("department_id: required field is empty", 2),
        ("datetime: not an ISO 8601 UTC instant", 1),
        ("datetime: required field is empty", 1),
        ("department_id: not in departments", 1),
        ("job_id: required field is empty", 1),
        ("name: required field is empty", 1),
    ]
    assert [row[0] for row in summary.examples["department_id: required field is empty"]] == ["2", "4"]


def test_only_the_first_rows_of_a_long_rejects_file_are_ranked_and_the_page_says_so():
    summary = quality_page.summarize_rejects(_rejects_file(REJECTED * 3), examples_per_reason=1, max_rows=5)
    assert (summary.rows_read, summary.complete) == (5, False)
    assert all(len(rows) == 1 for rows in summary.examples.values())


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1 << 16])
def test_text_lines_reassemble_lines_and_characters_split_across_blocks(size):
    data = 'a,é\n"multi\nline",😀\nlast'.encode()
    blocks = [data[i : i + size] for i in range(0, len(data), size)]
    assert "".join(quality_page.text_lines(blocks)) == data.decode()


def test_every_reason_the_contract_gives_has_a_kind_without_its_value():
    from hr_pipeline.contract.tables import CONTRACTS
    from hr_pipeline.ingest.expectations import build_rules

    for contract in CONTRACTS.values():
        for rule in build_rules(contract):
            # the unique key's reason counts the id's rows: its value is an id
            raw = "12" if rule.column == contract.key and "unique" in rule.name else "12<b>;x"
            reason = rule.explain(raw, {12: 3})
            (kind,) = quality_page.reason_kinds(f"row 7: {reason}")
            assert kind.startswith(f"{rule.column}: "), (reason, kind)
            assert "<b>" not in kind, (reason, kind)


def test_a_misshapen_row_is_one_kind_with_its_header_note():
    reason = "row 1: has 2 fields, expected 5 (id, name, datetime, department_id, job_id); this looks like the header row of table jobs: wrong folder?"
    assert quality_page.reason_kinds(reason) == ["wrong number of fields (expected 5)"]


def _quality(files: list[dict]) -> quality_page.RunQuality:
    summary = quality_page.summarize_rejects(_rejects_file(REJECTED))
    return quality_page.RunQuality(
        "ingest_table", "manual__<b>", "raw-data", files, {"incoming/hired_employees/a.csv": summary}
    )


def _ledger_row(file: str, status: str = "loaded", **values) -> dict:
    row = {
        "run_id": "manual__<b>", "file": file, "table_name": "hired_employees", "status": status,
        "sha256": "ab" * 32, "bytes": 10, "rows": 10, "loaded": 6, "rejected": 4,
        "archived_as": f"archive/hired_employees/2026-01-02/manual___b_/{file}",
        "rejects_file": "rejected/hired_employees/2026-01-02/manual___b_/a.rejects.csv",
        "same_as_run": None, "detail": None, "ingested_at": datetime(2026, 1, 2),
    }  # fmt: skip
    row.update(values)
    return row


def test_the_quality_page_draws_the_ledger_and_shows_rejected_cells_as_text():
    files = [
        _ledger_row("incoming/hired_employees/a.csv"),
        _ledger_row(
            "incoming/hired_employees/<img src=x onerror=alert(1)>.csv",
            status="unreadable",
            rows=0,
            loaded=0,
            rejected=0,
            rejects_file=None,
            detail="cannot be read (not UTF-8 text); set aside whole in raw-data/rejected/...",
        ),  # fmt: skip
    ]
    page = quality_page.render(_quality(files), "")
    assert_only_our_markup(page)
    parsed = Markup(page)
    values = {
        attrs["id"]: int(attrs["data-value"])
        for tag, attrs in parsed.tags
        if "data-value" in attrs and "id" in attrs
    }
    assert values == {
        "files-count": 2,
        "rows-read": 10,
        "rows-loaded": 6,
        "rows-rejected": 4,
        "files-set-aside": 1,
    }
    text = "".join(parsed.text)
    assert "<script>alert(1)</script>" in text  # shown as text
    assert "'=cmd|' /C calc'!A0" in text
    assert "raw-data/archive/hired_employees/2026-01-02/manual___b_/incoming/hired_employees/a.csv" in text
    assert "not UTF-8 text" in text
    reasons = Markup(page).marks("reasons")
    assert reasons[0] == {
        "class": "bar",
        "data-row": "department_id: required field is empty",
        "data-value": "2",
    }


def test_a_run_with_no_ledger_rows_says_why_that_can_be():
    page = quality_page.render(quality_page.RunQuality("ingest_table", "r", "raw-data", [], {}), "")
    assert "no file of this run" in page


@contextmanager
def _sqlite_transaction(connection):
    yield connection


def test_the_ledger_is_read_for_the_run_only_with_the_run_id_bound(tmp_path):
    connection = sqlite3.connect(tmp_path / "w.db")
    adapter = adapter_for("sqlite")
    connection.execute(ledger.create_table_if_missing(adapter))
    for run_id, file in [("run 1", "b.csv"), ("run 1", "a.csv"), ("run 2", "c.csv")]:
        row = _ledger_row(file, run_id=run_id, ingested_at="2026-01-02T00:00:00Z")
        connection.execute(ledger.upsert(adapter), [row[name] for name in ledger.COLUMNS])

    class SqliteWarehouse:
        def __init__(self):
            self.adapter = adapter

        def transaction(self):
            return _sqlite_transaction(connection)

    assert [r["file"] for r in quality_page.read_ledger(SqliteWarehouse(), "run 1")] == ["a.csv", "b.csv"]
    assert quality_page.read_ledger(SqliteWarehouse(), "x' OR '1'='1") == []
    for dialect in ("sqlite", "postgres", "mssql"):
        assert "run 1" not in quality_page.ledger_query(adapter_for(dialect))


# -- the routes: Airflow's authentication and authorization ------------------------------------------

PAGES = ["/pages/metrics", "/pages/metrics/hires-per-year.csv", "/pages/quality?dag_id=ingest_table&run_id=r"]


@pytest.mark.parametrize("path", PAGES)
def test_no_login_no_page(path):
    response = TestClient(app).get(path)
    assert response.status_code == 401


class _User:
    def get_name(self) -> str:
        return "reader"


@pytest.fixture
def signed_in(monkeypatch):
    """The app with a signed-in user (Airflow's auth manager is not running here), its reads of
    the warehouse and metadata replaced by the rows above."""
    from hr_pipeline.api import app as http_api
    from hr_pipeline.api.pages import routes

    tables = {"hires_by_quarter": QUARTER_ROWS, "departments_above_mean": ABOVE_ROWS}
    monkeypatch.setattr(http_api, "read_metric_table", lambda name: tables[name])
    monkeypatch.setattr(routes, "last_publication", lambda: None)
    monkeypatch.setattr(
        routes,
        "run_quality",
        lambda dag_id, run_id: _quality([_ledger_row("incoming/hired_employees/a.csv")]),
    )
    app.dependency_overrides[http_api.airflow_user] = _User
    yield TestClient(app, root_path="/hr")
    app.dependency_overrides.pop(http_api.airflow_user, None)


@pytest.fixture
def denied(monkeypatch):
    """Airflow's auth manager answering no to every question; what it was asked."""
    import airflow.api_fastapi.app as airflow_app

    asked = []

    class Refusing:
        def is_authorized_dag(self, **question):
            asked.append(question)
            return False

    monkeypatch.setattr(airflow_app, "get_auth_manager", lambda: Refusing())
    return asked


@pytest.mark.parametrize(
    ("path", "dag_id"),
    [(PAGES[0], "publish_metrics"), (PAGES[1], "publish_metrics"), (PAGES[2], "ingest_table")],
)
def test_a_user_who_may_not_read_the_dag_gets_403(signed_in, denied, path, dag_id):
    response = signed_in.get(path)
    assert response.status_code == 403, response.text
    assert f"may not read {dag_id}" in response.json()["detail"]
    assert denied[0]["method"] == "GET"
    assert denied[0]["details"].id == dag_id


def test_the_pages_answer_a_reader(signed_in, monkeypatch):
    from hr_pipeline.api import app as http_api

    monkeypatch.setattr(http_api, "_authorize", lambda *args, **kwargs: None)
    metrics = signed_in.get("/pages/metrics", params={"year": 2021, "department": ["Sales"]})
    assert metrics.status_code == 200
    assert 'href="/hr/pages/static/pages.css"' in metrics.text
    csv_answer = signed_in.get("/pages/metrics/quarters-by-department.csv", params={"year": 2021})
    assert (
        csv_answer.headers["content-disposition"] == 'attachment; filename="quarters-by-department-2021.csv"'
    )
    assert "Support,5,5,5,5,20" in csv_answer.text
    assert signed_in.get("/pages/metrics/nothing.csv").status_code == 404
    quality = signed_in.get("/pages/quality", params={"dag_id": "ingest_table", "run_id": "r"})
    assert quality.status_code == 200
    assert "Data quality" in quality.text
    other = signed_in.get("/pages/quality", params={"dag_id": "backup_tables", "run_id": "r"})
    assert "recorded for ingest_table runs" in other.text
    assert TestClient(app).get("/pages/static/pages.js").status_code == 200  # public: no data in it


def test_the_pages_are_not_in_the_api_document():
    assert not [path for path in app.openapi()["paths"] if path.startswith("/pages")]


def test_an_unreadable_ledger_is_503_with_a_reference_and_no_host(monkeypatch, caplog):
    def unreachable(*args, **kwargs):
        raise OSError("db.internal:5432 refused")

    monkeypatch.setattr(quality_page, "read_ledger", unreachable)
    with pytest.raises(HTTPException) as refused:
        run_quality("ingest_table", "r")
    assert refused.value.status_code == 503
    assert "db.internal" not in refused.value.detail
    reference = refused.value.detail.rsplit("reference ", 1)[1].rstrip(".")
    assert any(reference in record.getMessage() for record in caplog.records)
