"""The "Data quality" page of an ``ingest_table`` run: what became of each file the run took.

Its sources are the run's own records, nothing recomputed:

- the ingest ledger (``ingest_files``, ``hr_pipeline.warehouse.ledger``): one row per file, with
  rows read / loaded / rejected, its outcome (``status``) and reason (``detail``), and where the
  file and its rejects file went (blob names of ``hr_pipeline.storage.layout``);
- each rejects file (``rejected/<table>/<day>/<run>/...rejects.csv`` in the raw container): the
  rejected rows with the contract's columns and a ``reason`` column, ``row N: <reason>; <reason>``.
  Its reasons are grouped by kind (the column and the rule broken, without the offending value)
  and ranked by how many rows broke them; the first rows of each kind are shown as text.

Every cell of a rejects file is data from an extract: it is escaped like any other text, never
markup (``markup.escape``).
"""

from __future__ import annotations

import codecs
import csv
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from hr_pipeline.api.pages import charts
from hr_pipeline.api.pages.document import airflow_link, run_url
from hr_pipeline.api.pages.markup import Html, element, html, join, table
from hr_pipeline.warehouse import ledger

INGEST_DAG = "ingest_table"
EXAMPLES_PER_REASON = 5
MAX_REJECTS_READ = 200_000  # rejected rows read per file to rank the reasons; the ledger counts all
LOADED = "loaded"
LOADED_COLOUR, REJECTED_COLOUR = "#3b73b9", "#c2410c"
REASON_LABEL_PX = 420  # "department_id: required field is empty" whole, in the run page's frame

# The reasons the contract's rules give (hr_pipeline.ingest.expectations), as kinds: the column
# and the rule, without the value that broke it (a value repr may hold any text, "; " included).
_REASON_KINDS = [
    (re.compile(r"(?P<column>\w+): required field is empty$"), "required field is empty"),
    (re.compile(r"(?P<column>\w+): .* is not an integer$", re.S), "not an integer"),
    (
        re.compile(r"(?P<column>\w+): .* is outside the 32-bit integer range$", re.S),
        "outside the 32-bit integer range",
    ),
    (re.compile(r"(?P<column>\w+): longer than (?P<n>\d+) characters$"), "longer than {n} characters"),
    (re.compile(r"(?P<column>\w+): .* is not an ISO 8601 UTC instant", re.S), "not an ISO 8601 UTC instant"),
    (re.compile(r"(?P<column>\w+): .* is not a real date and time$", re.S), "not a real date and time"),
    (re.compile(r"(?P<column>\w+): .* does not exist in (?P<table>\w+)$", re.S), "not in {table}"),
    (
        re.compile(r"(?P<column>\w+): .* appears \d+ times in this file", re.S),
        "appears more than once in the file",
    ),
    (re.compile(r"has \d+ fields, expected (?P<n>\d+)"), "wrong number of fields (expected {n})"),
]
_ROW_PREFIX = re.compile(r"^row (?P<row>\d+): ")
# Where one reason ends and the next starts: "; " before a column name and a colon, or before
# the note a misshapen first row gets.
_REASON_SPLIT = re.compile(r"; (?=\w+: |this looks like the header row)")


def reason_kinds(reason: str) -> list[str]:
    """The kinds of a rejected row's ``reason`` cell: ``"<column>: <rule>"`` for each reason,
    without the offending value; a reason of no known form is kept as it is (shortened)."""
    text = _ROW_PREFIX.sub("", reason, count=1)
    kinds = []
    for part in _REASON_SPLIT.split(text):
        if part.startswith("this looks like the header row"):
            continue  # a note on the "wrong number of fields" before it, not a reason of its own
        kinds.append(_kind(part))
    return list(dict.fromkeys(kinds))


def _kind(part: str) -> str:
    for pattern, template in _REASON_KINDS:
        found = pattern.match(part)
        if found:
            rule = template.format(**found.groupdict())
            column = found.groupdict().get("column")
            return f"{column}: {rule}" if column else rule
    return part if len(part) <= 120 else part[:119] + "…"


def row_number(reason: str) -> int | None:
    found = _ROW_PREFIX.match(reason)
    return int(found["row"]) if found else None


@dataclass
class RejectsSummary:
    """The reasons of one rejects file: rows per kind, and the first rows of each kind."""

    header: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[list[str]]] = field(default_factory=dict)
    rows_read: int = 0
    complete: bool = True

    def ranked(self) -> list[tuple[str, int]]:
        """Kinds by rows, most first (ties by name)."""
        return sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))


def summarize_rejects(
    lines: Iterable[str], examples_per_reason: int = EXAMPLES_PER_REASON, max_rows: int = MAX_REJECTS_READ
) -> RejectsSummary:
    """A rejects file's lines (its header first) read into a ``RejectsSummary``; a row with
    several reasons counts under each."""
    summary = RejectsSummary()
    reader = csv.reader(lines)
    summary.header = next(reader, [])
    for row in reader:
        if summary.rows_read >= max_rows:
            summary.complete = False
            break
        summary.rows_read += 1
        for kind in reason_kinds(row[-1] if row else ""):
            summary.counts[kind] += 1
            shown = summary.examples.setdefault(kind, [])
            if len(shown) < examples_per_reason:
                shown.append(row)
    return summary


def text_lines(blocks: Iterable[bytes]) -> Iterator[str]:
    """Lines (with their ends) of UTF-8 text arriving in blocks of any size."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for block in blocks:
        pending += decoder.decode(block)
        *complete, pending = pending.split("\n")
        yield from (line + "\n" for line in complete)
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


# -- the ledger ----------------------------------------------------------------------------------


def ledger_query(adapter) -> str:
    """The ledger rows of one run (the run id is a bound parameter), by file name."""
    quote = adapter.quote
    columns = ", ".join(quote(name) for name in ledger.COLUMNS)
    return (
        f"SELECT {columns} FROM {quote(ledger.TABLE)} "
        f"WHERE {quote('run_id')} = {adapter.marker} ORDER BY {quote('file')}"
    )


def read_ledger(warehouse, run_id: str) -> list[dict]:
    """The run's ledger rows as dicts of ``ledger.COLUMNS``."""
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(ledger_query(warehouse.adapter), (run_id,))
        return [dict(zip(ledger.COLUMNS, row)) for row in cursor.fetchall()]


# -- the page ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunQuality:
    """What the page shows for one run."""

    dag_id: str
    run_id: str
    container: str
    files: list[dict]
    rejects: dict[str, RejectsSummary]  # by the file's name in the ledger
    unreadable_rejects: dict[str, str] = field(
        default_factory=dict
    )  # file -> why its rejects could not be read


def _number(value: int, **attrs) -> Html:
    return element("strong", f"{value:,}", data_value=value, **attrs)


def _summary(quality: RunQuality) -> Html:
    totals = {key: sum(f[key] for f in quality.files) for key in ("rows", "loaded", "rejected")}
    set_aside = sum(1 for f in quality.files if f["status"] != LOADED)
    return html(
        '<p id="run-totals">{} file(s): {} rows read, {} loaded, {} rejected; {} file(s) set aside.</p>',
        _number(len(quality.files), id="files-count"),
        _number(totals["rows"], id="rows-read"),
        _number(totals["loaded"], id="rows-loaded"),
        _number(totals["rejected"], id="rows-rejected"),
        _number(set_aside, id="files-set-aside"),
    )


def _files_table(quality: RunQuality) -> Html:
    rows = [
        [
            element("code", f["file"]),
            element("span", f["status"], class_="status-loaded" if f["status"] == LOADED else "status-other"),
            f"{f['rows']:,}",
            f"{f['loaded']:,}",
            f"{f['rejected']:,}",
        ]
        for f in quality.files
    ]
    return table(["File", "Outcome", "Rows read", "Loaded", "Rejected"], rows, numeric=(2, 3, 4), id="files")


def _where(quality: RunQuality, item: dict) -> Html:
    entries = [("File", item["archived_as"]), ("Rejected rows", item["rejects_file"])]
    if item.get("same_as_run"):
        entries.append(("Same bytes as run", item["same_as_run"]))
    return element(
        "dl",
        join(
            html(
                "<dt>{}</dt><dd class='blob'>{}</dd>",
                label,
                f"{quality.container}/{value}" if label != "Same bytes as run" else value,
            )
            for label, value in entries
            if value
        ),
        class_="where",
    )


def _reasons(summary: RejectsSummary, file_name: str) -> Html:
    ranked = summary.ranked()
    note = (
        ""
        if summary.complete
        else f"Ranked over the first {summary.rows_read:,} rejected rows of the file (the counts above are of all)."
    )
    chart = charts.horizontal_bars(
        "reasons",
        f"Reasons of the rejected rows of {file_name}",
        [charts.Bar(kind, n) for kind, n in ranked],
        plot_width=420,
        label_px=REASON_LABEL_PX,
    )
    parts = [element("h4", "Reasons, by rows"), element("p", note, class_="muted") if note else Html("")]
    parts.append(element("div", chart, class_="chart", data_file=file_name))
    for kind, count in ranked:
        examples = summary.examples.get(kind, [])
        parts.append(
            html(
                "<h5>{} <span class='muted'>({} rows; the first {})</span></h5>",
                kind,
                f"{count:,}",
                len(examples),
            )
        )
        parts.append(element("div", table(summary.header, examples, class_="cells"), class_="scroll"))
    return join(parts)


def _file_section(quality: RunQuality, item: dict) -> Html:
    parts = [html("<h3><code>{}</code></h3>", item["file"])]
    if item["status"] != LOADED:
        parts.append(
            html(
                "<p class='error'>Not loaded ({}): {}</p>",
                item["status"],
                item["detail"] or "no reason recorded",
            )
        )
    elif item["detail"]:
        parts.append(element("p", item["detail"], class_="muted"))
    parts.append(
        charts.split_bar(
            "file-rows",
            f"Rows of {item['file']}",
            [("loaded", item["loaded"], LOADED_COLOUR), ("rejected", item["rejected"], REJECTED_COLOUR)],
        )
    )
    parts.append(_where(quality, item))
    summary = quality.rejects.get(item["file"])
    if summary is not None and summary.counts:
        parts.append(_reasons(summary, item["file"]))
    elif item["file"] in quality.unreadable_rejects:
        parts.append(element("p", quality.unreadable_rejects[item["file"]], class_="error"))
    return element("section", join(parts), class_="file", data_file=item["file"])


def render(quality: RunQuality, airflow: str) -> Html:
    """The page's body for an ``ingest_table`` run."""
    link = airflow_link(run_url(airflow, quality.dag_id, quality.run_id), quality.run_id)
    tables = sorted({f["table_name"] for f in quality.files})
    parts = [
        element("h1", "Data quality"),
        html(
            "<p class='muted'>{} run {}{}</p>",
            quality.dag_id,
            link,
            f", table {', '.join(tables)}" if tables else "",
        ),
    ]
    if not quality.files:
        parts.append(
            element(
                "p",
                "The ingest ledger has no file of this run: it had no file to ingest, or it has not "
                "reached its archive step yet (the ledger is written once a file's rows are committed). "
                "The run's task logs say which.",
                class_="notice",
            )
        )
        return join(parts)
    parts += [_summary(quality), _files_table(quality)]
    set_aside = [f for f in quality.files if f["status"] != LOADED]
    if set_aside:
        parts.append(element("h2", "Files set aside"))
        parts.append(
            table(
                ["File", "Outcome", "Reason"],
                [[f["file"], f["status"], f["detail"] or ""] for f in set_aside],
                id="set-aside",
            )
        )
    parts.append(element("h2", "Each file"))
    parts += [_file_section(quality, item) for item in quality.files]
    return join(parts)


def not_an_ingest(dag_id: str, run_id: str, airflow: str) -> Html:
    """The page on a run of another DAG (Airflow shows the tab on every run)."""
    return join(
        [
            element("h1", "Data quality"),
            html(
                "<p class='notice'>Data quality is recorded for {} runs; {} is a run of {}.</p>",
                INGEST_DAG,
                airflow_link(run_url(airflow, dag_id, run_id), run_id),
                dag_id,
            ),
        ]
    )
