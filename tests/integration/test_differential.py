"""Differential tests: the whole ingest, end to end on real services, equals the reference.

Generated extracts (tests/reference/extracts.py) go into Azurite under ``incoming/<table>/`` and
through the pipeline's own functions, as the ingest_table DAG calls them - ``validate_incoming``,
``load_validated``, ``archive_ingested`` - then ``publish_metrics``; SQLite and PostgreSQL. The
same bytes go through the independent reference of the contract (tests/reference/contract.py).
Required, exactly:

- per file: unreadable or not; data rows, valid and rejected counts of the validation; the rejects
  file (found by listing ``rejected/<table>/``): one row per rejected record, whose reason maps to
  the reference's (record number, rule, column) set, whose fields are the raw fields as written
  with formula neutralisation (rows with the right number of fields);
- the warehouse's three tables, row for row (typed) after every round;
- the four metric tables (means within 1e-9), in their order.

Small read blocks (``HR_READ_BLOCK_BYTES``), validation chunks and load batches make the files
cross block, chunk and batch ends. Bounded by counts: seeded cases, not time.
"""

from __future__ import annotations

import math
import random

import pytest

from hr_pipeline.contract.instants import parse_stored_timestamp
from tests.integration.ingest_helpers import blob_names, drop_file, load_dag, raw_container
from tests.reference.contract import (
    LOAD_ORDER,
    METRIC_NAMES,
    METRIC_ORDER,
    TABLES,
    Observed,
    differences,
    read_rejects_csv,
    reference_file,
    reference_metrics,
    reference_pipeline,
)
from tests.reference.extracts import Mess, messy_extract, random_mess
from tests.reference.observing import note_rejected

pytestmark = pytest.mark.usefixtures("airflow_db")

DAY = "2026-01-02"


# -- reading what the pipeline did ----------------------------------------------------------------


def warehouse_tables(warehouse) -> dict[str, dict[int, tuple]]:
    tables = {}
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        for table, columns in TABLES.items():
            cursor.execute(f"SELECT {', '.join(c.name for c in columns)} FROM {table}")
            rows = {}
            for row in cursor.fetchall():
                values = tuple(
                    parse_stored_timestamp(v) if c.type == "timestamp" else v for c, v in zip(columns, row)
                )
                rows[values[0]] = values
            tables[table] = rows
    return tables


def rejects_of(store, table: str, names: list[str], file_name: str) -> list[list[str]] | None:
    """The records of the rejects file of ``file_name`` among ``names`` (None if there is none)."""
    stem = file_name[:-4] if file_name.endswith(".csv") else file_name
    found = [n for n in names if n.rsplit("/", 1)[-1] == f"{stem}.rejects.csv"]
    assert len(found) <= 1, f"several rejects files for {file_name}: {found}"
    if not found:
        return None
    return read_rejects_csv(store.download_bytes(raw_container(), found[0]))


def observed_file(store, table: str, validation: dict, new_rejected: list[str]) -> Observed:
    file_name = validation["source"].rsplit("/", 1)[-1]
    if validation.get("unreadable_reason"):
        moved = [n for n in new_rejected if n.rsplit("/", 1)[-1] == file_name]
        assert moved, f"{file_name} was unreadable but is not under rejected/{table}/"
        return Observed(unreadable=True)
    width = len(TABLES[table])
    observed = Observed(data_rows=validation["rows"], valid=validation["valid"])
    records = rejects_of(store, table, new_rejected, file_name)
    if records is None:  # no rejects file: accepted only when nothing was rejected
        assert validation["rejected"] == 0, f"{file_name}: {validation['rejected']} rejected, no rejects file"
        return observed
    header, rows = records[0], records[1:]
    if header != [c.name for c in TABLES[table]] + ["reason"]:
        observed.problems.append(f"rejects file header {header!r}")
    if len(rows) != validation["rejected"]:
        observed.problems.append(
            f"the rejects file reads as {len(rows)} records, the validation"
            f" rejected {validation['rejected']} rows"
        )
    for row in rows:
        if len(row) != width + 1:
            observed.problems.append(f"a rejects record of {len(row)} fields: {row!r}"[:300])
            continue
        note_rejected(observed, table, row[width], row[:width])
    return observed


# -- running the pipeline's functions --------------------------------------------------------------


def ingest_round(
    store, warehouse, files: dict[str, list[tuple[str, bytes]]], run: str, chunk_rows: int, batch_size: int
) -> dict[str, list[tuple[dict, Observed]]]:
    """One ingest of every table that has files (in load order), as the DAG's tasks run it."""
    from hr_pipeline.ingest.archive import archive_ingested
    from hr_pipeline.ingest.load import load_validated
    from hr_pipeline.ingest.validate import validate_incoming

    seen: dict[str, list[tuple[dict, Observed]]] = {}
    for table in LOAD_ORDER:
        if not files.get(table):
            continue
        before = set(blob_names(store, f"rejected/{table}/"))
        for name, data in files[table]:
            drop_file(store, table, data, name)
        run_id = f"{run}-{table}"
        validations = validate_incoming(table, run_id=run_id, day=DAY, chunk_rows=chunk_rows)
        load_validated(table, validations, batch_size=batch_size)
        archive_ingested(table, validations, day=DAY)
        new = [n for n in blob_names(store, f"rejected/{table}/") if n not in before]
        seen[table] = [(v, observed_file(store, table, v, new)) for v in validations]
        assert blob_names(store, f"incoming/{table}/") == [], "files left waiting"
    return seen


def compare_round(files, expected, seen, warehouse) -> list[str]:
    """Every difference between one round's pipeline results and the reference's."""
    problems = []
    for table, outcomes in expected.files.items():
        got = seen.get(table, [])
        names = [name for name, _ in outcomes]
        sources = [v["source"].rsplit("/", 1)[-1] for v, _ in got]
        if sources != names:
            problems.append(f"{table}: files validated {sources}, expected {names}")
            continue
        data = dict(files[table])
        for (name, reference), (_validation, observed) in zip(outcomes, got):
            for problem in differences(reference, observed, data[name], written=True):
                problems.append(f"{table}/{name}: {problem}")
    tables = warehouse_tables(warehouse)
    for table in LOAD_ORDER:
        want, have = expected.tables[table], tables[table]
        if want != have:
            wrong = [key for key in set(want) | set(have) if want.get(key) != have.get(key)]
            problems.append(
                f"table {table}: {len(wrong)} rows differ, e.g. "
                + "; ".join(
                    f"id {k}: pipeline {have.get(k)!r}, reference {want.get(k)!r}" for k in sorted(wrong)[:3]
                )
            )
    return problems


def metric_differences(warehouse, tables, publish: bool = True) -> list[str]:
    """The published metric tables against the reference's: same rows (means within 1e-9), and
    the pipeline's rows in the table's order (ties beyond the order may come either way)."""
    from hr_pipeline.metrics import publish_metrics, read_metric

    if publish:
        try:
            publish_metrics(warehouse)
        except Exception as error:  # noqa: BLE001 - any failure of the pipeline under test is a difference, reported with the others
            return [f"publish_metrics failed: {type(error).__name__}: {str(error)[:300]}"]
    expected = reference_metrics(tables)
    problems = []
    for name in METRIC_NAMES:
        got = [tuple(row) for row in read_metric(warehouse, name)]
        want = expected[name]
        has_mean = name == "departments_above_mean"

        def key(row, has_mean=has_mean):
            return row[:-1] if has_mean else row

        same = sorted(map(key, got)) == sorted(map(key, want))
        if same and has_mean:
            same = all(
                math.isclose(g[-1], w[-1], rel_tol=0, abs_tol=1e-9)
                for g, w in zip(sorted(got, key=key), sorted(want, key=key))
            )
        if not same:
            extra = sorted(set(map(key, got)) - set(map(key, want)))[:3]
            missing = sorted(set(map(key, want)) - set(map(key, got)))[:3]
            problems.append(
                f"{name}: {len(got)} rows, reference {len(want)}; not in the reference"
                f" {extra}; missing {missing}"
            )
        # the order columns; a descending one is a count, so its negation sorts it
        order = [
            tuple(-row[i] if descending else row[i] for i, descending in METRIC_ORDER[name]) for row in got
        ]
        if order != sorted(order):
            problems.append(f"{name}: rows out of order")
    return problems


# -- scenarios -------------------------------------------------------------------------------------


def scenario(seed: int, start: dict | None = None):
    """1-2 rounds of 1-3 files per table (the hires referring to what the departments and jobs
    will hold), ids overlapping between files and rounds; and the pipeline settings."""
    rng = random.Random(seed)
    state = {table: dict(rows) for table, rows in (start or {}).items()}
    rounds = []
    sizes = {"departments": [1, 5, 12, 40], "jobs": [1, 20, 183], "hired_employees": [3, 40, 300, 2500]}
    # Departments sharing a name (one metric groups by name, the other by id): in a third of cases.
    distinct_names = rng.random() < 0.67
    for round_number in range(rng.choice([1, 1, 2])):
        files: dict[str, list[tuple[str, bytes]]] = {}
        for table in LOAD_ORDER:
            count = (
                rng.choice([0, 1, 1, 1, 2, 3])
                if round_number or table != "hired_employees"
                else rng.choice([1, 1, 2])
            )
            if table != "hired_employees" and not state.get(table) and count == 0:
                count = 1
            keys = reference_pipeline(files, state).tables
            for index in range(count):
                rows = rng.choice(sizes[table])
                mess = random_mess(
                    rng,
                    first_id=rng.choice([1, 1, rows // 2 + 1, 1000]),
                    distinct_names=distinct_names,
                    huge_field_rate=rng.choice([0.0, 0.0, 0.0, 0.002]),
                    odd_quoting=rng.random() < 0.2,
                    unreadable=rng.choice(["nul", "latin1"]) if rng.random() < 0.08 else None,
                )
                data = messy_extract(
                    table, rows, rng.randrange(1 << 30), keys["departments"], keys["jobs"], mess=mess
                )
                files.setdefault(table, []).append((f"r{round_number}-f{index}-{table}.csv", data))
        rounds.append(files)
        state = reference_pipeline(files, state).tables
    # Tiny chunks only for small files: each chunk costs a Great Expectations run or two.
    largest = max(
        reference_file(t, d).data_rows for files in rounds for t, fs in files.items() for _, d in fs
    )
    settings = {
        "block": rng.choice([1024, 1500, 4096]),
        "chunk_rows": rng.choice([7, 61, 333, 5000] if largest <= 400 else [61, 333, 5000]),
        "batch_size": rng.choice([3, 50, 1000]),
    }
    return rounds, settings


def run_scenario(seed, blob_store, warehouse, monkeypatch):
    rounds, settings = scenario(seed)
    monkeypatch.setenv("HR_READ_BLOCK_BYTES", str(settings["block"]))
    state: dict = {}
    problems = []
    for number, files in enumerate(rounds):
        expected = reference_pipeline(files, state)
        seen = ingest_round(
            blob_store,
            warehouse,
            files,
            f"diff-{seed}-{number}",
            settings["chunk_rows"],
            settings["batch_size"],
        )
        problems += [f"round {number}: {p}" for p in compare_round(files, expected, seen, warehouse)]
        state = expected.tables
    problems += metric_differences(warehouse, state)
    rows = sum(reference_file(t, d).data_rows for files in rounds for t, fs in files.items() for _, d in fs)
    assert not problems, f"seed {seed} ({settings}, {rows} data rows):\n  " + "\n  ".join(problems[:25])


SEEDS = range(25)


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_ingests_equal_the_reference(seed, blob_store, warehouse, monkeypatch):
    """25 seeded scenarios per warehouse (SQLite, PostgreSQL): 1-2 rounds of 1-3 messy files
    per table (up to 2,500 rows a file; every rule broken, misshapen rows, duplicates, odd
    quoting, now and then a record longer than the read block or an unreadable file), ids
    overlapping between files and rounds (upserts). Every file's counts and rejects, the three
    tables after every round and the four metric tables equal the reference's."""
    run_scenario(seed, blob_store, warehouse, monkeypatch)


def test_several_files_per_table_and_a_second_ingest_over_existing_rows(blob_store, warehouse, monkeypatch):
    """Three files per table in one run, the later ones re-using ids of the earlier ones (the
    later file's row wins), then a second run whose files replace some rows, break others, and
    name departments and jobs that only the second run brings; tables, rejects and metrics
    equal the reference's after each."""
    monkeypatch.setenv("HR_READ_BLOCK_BYTES", "1024")
    calm = Mess(
        bad_rate=0.1,
        misshapen_rate=0.02,
        duplicate_rate=0.02,
        header="none",
        unreadable=None,
        distinct_names=True,
    )
    first = {
        "departments": [
            (
                f"a{i}-departments.csv",
                messy_extract("departments", 12, 100 + i, mess=calm, first_id=1 + 4 * i),
            )
            for i in range(3)
        ],
        "jobs": [
            (f"a{i}-jobs.csv", messy_extract("jobs", 60, 200 + i, mess=calm, first_id=1 + 20 * i))
            for i in range(3)
        ],
    }
    keys = reference_pipeline(first).tables
    first["hired_employees"] = [
        (
            f"a{i}-hires.csv",
            messy_extract(
                "hired_employees",
                400,
                300 + i,
                keys["departments"],
                keys["jobs"],
                mess=calm,
                first_id=1 + 150 * i,
            ),
        )
        for i in range(3)
    ]
    expected = reference_pipeline(first)
    seen = ingest_round(blob_store, warehouse, first, "multi-0", chunk_rows=64, batch_size=25)
    problems = compare_round(first, expected, seen, warehouse)
    state = expected.tables
    assert len(state["hired_employees"]) > 500  # the files overlap and upsert, they do not vanish

    second = {
        "departments": [("b0-departments.csv", messy_extract("departments", 10, 400, mess=calm, first_id=8))],
        "jobs": [("b0-jobs.csv", messy_extract("jobs", 30, 401, mess=calm, first_id=150))],
    }
    keys = reference_pipeline(second, state).tables
    second["hired_employees"] = [
        (
            "b0-hires.csv",
            messy_extract(
                "hired_employees", 600, 402, keys["departments"], keys["jobs"], mess=calm, first_id=200
            ),
        ),
        (
            "b1-hires.csv",
            messy_extract(
                "hired_employees", 100, 403, keys["departments"], keys["jobs"], mess=calm, first_id=1
            ),
        ),
    ]
    expected = reference_pipeline(second, state)
    seen = ingest_round(blob_store, warehouse, second, "multi-1", chunk_rows=100, batch_size=7)
    problems += compare_round(second, expected, seen, warehouse)
    problems += metric_differences(warehouse, expected.tables)
    assert not problems, "\n  ".join(problems[:25])


def test_the_real_extracts_equal_the_reference(blob_store, warehouse, monkeypatch):
    """The three real extracts (12 departments, 183 jobs, 1,999 hires of which 70 rejected):
    the pipeline and the reference agree on everything, metrics included."""
    from pathlib import Path

    monkeypatch.setenv("HR_READ_BLOCK_BYTES", "4096")
    folder = Path(__file__).resolve().parents[2] / "include" / "sample_data"  # the real extracts
    files = {t: [(f"{t}.csv", (folder / f"{t}.csv").read_bytes())] for t in LOAD_ORDER}
    expected = reference_pipeline(files)
    seen = ingest_round(blob_store, warehouse, files, "real", chunk_rows=500, batch_size=300)
    problems = compare_round(files, expected, seen, warehouse) + metric_differences(
        warehouse, expected.tables
    )
    assert not problems, "\n  ".join(problems[:25])
    assert len(expected.tables["hired_employees"]) == 1929


def test_departments_sharing_a_name(blob_store, warehouse):
    """Two departments named alike: hires_by_quarter counts them together (it is by name),
    departments_above_mean apart (it is by id). 2021: A(1) 3 hires, A(2) 1, B(3) 1; mean 5/3,
    so department 1 alone is above it, while the row of "A" in hires_by_quarter counts 4."""
    hires = "".join(f"{i},H{i},2021-05-0{i}T00:00:00Z,{d},1\n" for i, d in enumerate([1, 1, 1, 2, 3], 1))
    files = {
        "departments": [("d.csv", b"1,A\n2,A\n3,B\n")],
        "jobs": [("j.csv", b"1,J\n")],
        "hired_employees": [("h.csv", hires.encode())],
    }
    expected = reference_pipeline(files)
    assert reference_metrics(expected.tables)["departments_above_mean_2021"] == [(1, "A", 3)]
    assert reference_metrics(expected.tables)["quarterly_hires_2021"] == [
        ("A", "J", 0, 4, 0, 0),
        ("B", "J", 0, 1, 0, 0),
    ]
    seen = ingest_round(blob_store, warehouse, files, "names", chunk_rows=100, batch_size=100)
    problems = compare_round(files, expected, seen, warehouse) + metric_differences(
        warehouse, expected.tables
    )
    assert not problems, "\n  ".join(problems)


# -- the whole DAGs, one big file ------------------------------------------------------------------


@pytest.mark.slow
def test_a_300000_row_file_through_the_dags_equals_the_reference(blob_store, sqlite_warehouse):
    """ingest_table (dag.test()) for departments, jobs and a 300,000-row hired_employees file
    with bad rows of every kind spread throughout (about 2.5% of rows; misshapen rows far past
    the first block and chunk, duplicates near and far), then the publish_metrics DAG: counts,
    rejects, tables and metrics equal the reference's. SQLite; the DAGs' default settings but
    ``max_reject_ratio`` 1 (no file set aside for its share of rejects)."""
    from tests.integration.ingest_helpers import run_ingest

    files = {
        "departments": [
            (
                "departments.csv",
                messy_extract("departments", 30, 7001, bad_rate=0.2, header="exact", distinct_names=True),
            )
        ],
        "jobs": [("jobs.csv", messy_extract("jobs", 200, 7002, bad_rate=0.1, bom=True))],
    }
    keys = reference_pipeline(files).tables
    files["hired_employees"] = [
        (
            "hired_employees.csv",
            messy_extract(
                "hired_employees",
                300_000,
                7003,
                keys["departments"],
                keys["jobs"],
                mess=Mess(
                    bad_rate=0.02,
                    misshapen_rate=0.002,
                    duplicate_rate=0.001,
                    tricky_rate=0.02,
                    padding_rate=0.02,
                    long_field_rate=0.0001,
                    blank_line_rate=0.001,
                    header="exact",
                    bom=True,
                    line_ends="crlf",
                    final_newline=False,
                ),
            ),
        )
    ]
    expected = reference_pipeline(files)
    problems = []
    for table in LOAD_ORDER:
        before = set(blob_names(blob_store, f"rejected/{table}/"))
        for name, data in files[table]:
            drop_file(blob_store, table, data, name)
        run = run_ingest(table, max_reject_ratio=1.0)  # every file loaded, however bad
        assert str(run.state) == "success", f"ingest_table {table}: {run.state}"
        validations = run.get_task_instance("validate").xcom_pull(task_ids="validate")
        assert validations is not None, "no XCom of validate"
        new = [n for n in blob_names(blob_store, f"rejected/{table}/") if n not in before]
        name, data = files[table][0]
        (validation,) = validations
        observed = observed_file(blob_store, table, validation, new)
        ((_, reference),) = expected.files[table]
        problems += [f"{table}: {p}" for p in differences(reference, observed, data, written=True)]
    tables = warehouse_tables(sqlite_warehouse)
    for table in LOAD_ORDER:
        if tables[table] != expected.tables[table]:
            problems.append(
                f"table {table} differs ({len(tables[table])} rows, reference {len(expected.tables[table])})"
            )
    run = load_dag("publish_metrics").test()
    assert str(run.state) == "success"
    problems += metric_differences(sqlite_warehouse, expected.tables, publish=False)
    assert not problems, "\n  ".join(problems[:25])
    assert len(expected.tables["hired_employees"]) > 290_000
