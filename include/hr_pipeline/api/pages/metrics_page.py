"""The "HR metrics" page: the published metric tables drawn for one year, narrowed to some
departments or jobs, with each chart's data as CSV.

It reads only the tables ``publish_metrics`` publishes (``hires_by_quarter`` and
``departments_above_mean``, all years), the same tables analysts query:

- hires per quarter by department, and by job (the jobs that hired most; the CSV has them all):
  ``hires_by_quarter`` of the year, summed over the selected departments and jobs;
- the departments above the year's mean, with the mean: ``departments_above_mean`` of the year
  (the mean is the year's, over every department that hired that year: narrowing to some
  departments hides bars, it does not move the mean);
- hires per year: the quarters of ``hires_by_quarter`` added up, for every year it holds.

The years offered are the years the tables hold. Everything here is pure: rows in, numbers and
markup out (the routes read the tables).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from hr_pipeline.api.pages import charts
from hr_pipeline.api.pages.document import airflow_link, run_url
from hr_pipeline.api.pages.markup import Html, element, html, join, table
from hr_pipeline.metrics import QUARTERS

QUARTER_LABELS = ("Q1", "Q2", "Q3", "Q4")
JOBS_DRAWN = 20  # the jobs that hired most; more rows would not be readable at 1280x800
DETAIL_ROWS_SHOWN = 200
DATASETS = {
    "quarters-by-department": "Hires per quarter by department",
    "quarters-by-job": "Hires per quarter by job",
    "hires-by-quarter": "Hires per quarter by department and job",
    "departments-above-mean": "Departments above the year's mean",
    "hires-per-year": "Hires per year",
}


@dataclass(frozen=True)
class Selection:
    """What the reader picked: a year (None: the latest), and departments / jobs (none: all)."""

    year: int | None = None
    departments: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Publication:
    """When the tables were last published, and by which run (from its asset events)."""

    dag_id: str
    run_id: str
    published_at: datetime
    rows: dict[str, int] = field(default_factory=dict)


@dataclass
class MetricsView:
    """The numbers the page draws for one selection."""

    years: list[int]
    year: int | None
    departments: list[str]  # every department that hired in the year (the filter's choices)
    jobs: list[str]
    selection: Selection
    notices: list[str]
    detail: list[dict]  # hires_by_quarter rows of the year, narrowed
    above_mean: list[dict]  # departments_above_mean rows of the year, narrowed to departments
    mean: float | None
    per_year: list[tuple[int, int]]

    def quarters_by(self, column: str) -> list[tuple[str, list[int]]]:
        """Hires per quarter summed by ``column`` (department or job), in name order."""
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for row in self.detail:
            for i, quarter in enumerate(QUARTERS):
                sums[row[column]][i] += row[quarter]
        return sorted(sums.items())


def _hired(row: dict) -> int:
    return sum(row[quarter] for quarter in QUARTERS)


def build_view(quarter_rows: Sequence[dict], above_rows: Sequence[dict], selection: Selection) -> MetricsView:
    """The page's numbers from the published rows (``hires_by_quarter``, ``departments_above_mean``)."""
    years = sorted({row["year"] for row in quarter_rows} | {row["year"] for row in above_rows})
    notices = []
    year = selection.year
    if year not in years:
        if year is not None:
            notices.append(f"The published tables hold no hires in {year}; showing the latest year instead.")
        year = years[-1] if years else None
    of_year = [row for row in quarter_rows if row["year"] == year]
    departments = sorted({row["department"] for row in of_year})
    jobs = sorted({row["job"] for row in of_year})
    picked_departments = _known(selection.departments, departments, "department", year, notices)
    picked_jobs = _known(selection.jobs, jobs, "job", year, notices)

    def wanted(row: dict) -> bool:
        return (not picked_departments or row["department"] in picked_departments) and (
            not picked_jobs or row["job"] in picked_jobs
        )

    per_year: dict[int, int] = defaultdict(int)
    for row in quarter_rows:
        if wanted(row):
            per_year[row["year"]] += _hired(row)
    above = [row for row in above_rows if row["year"] == year]
    return MetricsView(
        years=years,
        year=year,
        departments=departments,
        jobs=jobs,
        selection=Selection(year, picked_departments, picked_jobs),
        notices=notices,
        detail=[row for row in of_year if wanted(row)],
        above_mean=[r for r in above if not picked_departments or r["department"] in picked_departments],
        mean=above[0]["mean"] if above else None,
        per_year=sorted(per_year.items()),
    )


def _known(picked: Iterable[str], known: list[str], what: str, year, notices: list[str]) -> tuple[str, ...]:
    """The picked names the year has; a notice names the others (left out)."""
    picked = tuple(dict.fromkeys(picked))
    unknown = [name for name in picked if name not in known]
    if unknown:
        notices.append(
            f"No {what} named {', '.join(map(repr, unknown))} hired in {year}; left out of the filter."
        )
    return tuple(name for name in picked if name in known)


# -- the data behind each chart, as CSV ------------------------------------------------------------


def dataset(view: MetricsView, name: str) -> tuple[list[str], list[list]]:
    """(header, rows) of one chart's data (``DATASETS``); unknown ``name`` raises KeyError."""
    quarter_header = list(QUARTERS) + ["total"]
    if name == "quarters-by-department":
        return ["department", *quarter_header], [[d, *q, sum(q)] for d, q in view.quarters_by("department")]
    if name == "quarters-by-job":
        return ["job", *quarter_header], [[j, *q, sum(q)] for j, q in view.quarters_by("job")]
    if name == "hires-by-quarter":
        columns = ["year", "department", "job", *QUARTERS]
        return columns, [[row[c] for c in columns] for row in view.detail]
    if name == "departments-above-mean":
        columns = ["year", "id", "department", "hired", "mean"]
        return columns, [[row[c] for c in columns] for row in view.above_mean]
    if name == "hires-per-year":
        return ["year", "hired"], [[year, hired] for year, hired in view.per_year]
    raise KeyError(name)


def to_csv(header: Sequence[str], rows: Iterable[Sequence], safe_text) -> str:
    """CSV text; ``safe_text`` makes a text cell safe to open in a spreadsheet (no formula runs)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_text(value) if isinstance(value, str) else value for value in row])
    return out.getvalue()


# -- the page ------------------------------------------------------------------------------------


def _query(view: MetricsView) -> str:
    from urllib.parse import urlencode

    pairs = [("year", view.year)] + [("department", d) for d in view.selection.departments]
    pairs += [("job", j) for j in view.selection.jobs]
    return urlencode(pairs)


def _downloads(view: MetricsView, root: str, *names: str) -> Html:
    links = [
        html(
            '<a href="{}/pages/metrics/{}.csv?{}" download>{} (CSV)</a>',
            root,
            name,
            _query(view),
            DATASETS[name],
        )
        for name in names
    ]
    return element("p", join(links, " · "), class_="downloads")


def _options(choices: Iterable, picked: Iterable) -> Html:
    picked = set(picked)
    return join(
        html(
            '<option value="{}"{}>{}</option>',
            choice,
            Html(" selected") if choice in picked else Html(""),
            choice,
        )
        for choice in choices
    )


def filters(view: MetricsView) -> Html:
    return html(
        '<form class="filters" method="get">'
        '<label>Year<select name="year">{}</select></label>'
        '<label>Departments <span class="muted">(none picked: all; Ctrl+click for several)</span>'
        '<select name="department" multiple>{}</select></label>'
        '<label>Jobs <span class="muted">(none picked: all)</span><select name="job" multiple>{}</select></label>'
        '<span class="actions"><button type="submit">Apply</button> <a href="?">Clear</a></span></form>',
        _options(reversed(view.years), [view.year]),
        _options(view.departments, view.selection.departments),
        _options(view.jobs, view.selection.jobs),
    )


def publication_line(publication: Publication | None, airflow: str) -> Html:
    if publication is None:
        return element(
            "p",
            "No publish_metrics run has published these tables yet (or its record is gone): the "
            "numbers are what the warehouse holds.",
            class_="notice",
        )
    return html(
        '<p class="muted" id="publication">Published {} UTC by {} run {}.</p>',
        f"{publication.published_at:%Y-%m-%d %H:%M:%S}",
        publication.dag_id,
        airflow_link(run_url(airflow, publication.dag_id, publication.run_id), publication.run_id),
    )


def _quarter_section(view: MetricsView, root: str) -> Html:
    by_department = view.quarters_by("department")
    by_job = sorted(view.quarters_by("job"), key=lambda item: (-sum(item[1]), item[0]))
    drawn_jobs = sorted(by_job[:JOBS_DRAWN])
    job_note = (
        f"The {JOBS_DRAWN} jobs that hired most, of {len(by_job)}; narrow to departments or jobs, "
        "or download the CSV, for the others."
        if len(by_job) > JOBS_DRAWN
        else f"All {len(by_job)} jobs."
    )
    total = sum(sum(quarters) for _, quarters in by_department)
    return join(
        [
            html("<h2>Hires per quarter, {}</h2>", view.year),
            html(
                '<p><strong id="year-total" data-value="{}">{}</strong> hires in the selection.</p>',
                total,
                f"{total:,}",
            ),
            element("h3", "By department"),
            _chart(
                charts.heatmap(
                    "quarters-by-department",
                    f"Hires per quarter by department, {view.year}",
                    [name for name, _ in by_department],
                    QUARTER_LABELS,
                    [quarters for _, quarters in by_department],
                )
            ),
            _downloads(view, root, "quarters-by-department", "hires-by-quarter"),
            element("h3", "By job"),
            element("p", job_note, class_="muted"),
            _chart(
                charts.heatmap(
                    "quarters-by-job",
                    f"Hires per quarter by job, {view.year}",
                    [name for name, _ in drawn_jobs],
                    QUARTER_LABELS,
                    [quarters for _, quarters in drawn_jobs],
                )
            ),
            _downloads(view, root, "quarters-by-job"),
        ]
    )


def _chart(svg: Html) -> Html:
    return element("div", svg, class_="chart")


def _above_mean_section(view: MetricsView, root: str) -> Html:
    heading = html("<h2>Departments above the {} mean</h2>", view.year)
    if view.mean is None:
        return heading + element("p", f"No department hired more than the {view.year} mean.", class_="muted")
    bars = [charts.Bar(row["department"], row["hired"]) for row in view.above_mean]
    note = html(
        '<p class="muted">The mean, <strong id="year-mean" data-value="{}">{}</strong> hires, is over every '
        "department that hired in {} (the job filter does not apply: this table is by department).</p>",
        f"{view.mean:.2f}",
        f"{view.mean:,.2f}",
        view.year,
    )
    chart = charts.horizontal_bars(
        "departments-above-mean", f"Departments above the {view.year} mean", bars, ("mean", view.mean)
    )
    return join([heading, note, _chart(chart), _downloads(view, root, "departments-above-mean")])


def _per_year_section(view: MetricsView, root: str) -> Html:
    bars = [charts.Bar(str(year), hired) for year, hired in view.per_year]
    return join(
        [
            element("h2", "Hires per year"),
            element(
                "p", "Every year the tables hold, for the selected departments and jobs.", class_="muted"
            ),
            _chart(charts.columns("hires-per-year", "Hires per year", bars)),
            _downloads(view, root, "hires-per-year"),
        ]
    )


def _detail_section(view: MetricsView) -> Html:
    rows = [
        [r["department"], r["job"], *(f"{r[q]:,}" for q in QUARTERS), f"{_hired(r):,}"] for r in view.detail
    ]
    shown = rows[:DETAIL_ROWS_SHOWN]
    note = (
        f"The first {DETAIL_ROWS_SHOWN} of {len(rows)} rows; the CSV has all."
        if len(rows) > len(shown)
        else ""
    )
    return join(
        [
            html("<h2>Hires per quarter by department and job, {}</h2>", view.year),
            element("p", note, class_="muted") if note else Html(""),
            element(
                "div",
                table(
                    ["Department", "Job", *QUARTER_LABELS, "Total"], shown, numeric=range(2, 7), id="detail"
                ),
                class_="scroll",
            ),
        ]
    )


def render(view: MetricsView, publication: Publication | None, root: str, airflow: str) -> Html:
    """The page's body."""
    parts = [element("h1", "HR metrics"), publication_line(publication, airflow)]
    parts += [element("p", notice, class_="notice") for notice in view.notices]
    if view.year is None:
        parts.append(
            element(
                "p", "The published tables hold no hires yet: ingest hired_employees first.", class_="notice"
            )
        )
        return join(parts)
    parts += [
        filters(view),
        _quarter_section(view, root),
        _above_mean_section(view, root),
        _per_year_section(view, root),
        _detail_section(view),
    ]
    return join(parts)
