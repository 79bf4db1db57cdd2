"""ingest_table on files of the contract's own form that cross the reader's internal limits, run
with dag.test() on Azurite and a real warehouse: a misshapen row past the first read block, a
record longer than a block, one id in two spellings, names that must never collide."""

from __future__ import annotations

import pytest

from tests.integration.ingest_helpers import (
    blob_names,
    drop_file,
    read_rejects,
    run_ingest,
)

pytestmark = pytest.mark.usefixtures("airflow_db")


def hire(i: int, name: str | None = None) -> str:
    return f"{i},{name or f'Name {i}'},2021-01-01T00:00:00Z,1,1"


def with_reference_rows(blob_store):
    drop_file(blob_store, "departments", "1,Sales\n", "d.csv")
    drop_file(blob_store, "jobs", "1,Nurse\n", "j.csv")
    assert str(run_ingest("departments", max_reject_ratio=1).state) == "success"
    assert str(run_ingest("jobs", max_reject_ratio=1).state) == "success"


def only_rejects(blob_store, table: str) -> list[dict]:
    names = [n for n in blob_names(blob_store, f"rejected/{table}/") if n.endswith(".rejects.csv")]
    assert len(names) == 1, names
    return read_rejects(blob_store, names[0])


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_a_misshapen_row_past_the_first_block_is_rejected_and_the_rest_loaded(
    blob_store, sqlite_warehouse, line_end
):
    """10,000 good rows and one 4-field row after them (the file that crashed validation)."""
    with_reference_rows(blob_store)
    lines = [hire(i) for i in range(1, 10_001)]
    lines.insert(6_800, "20000,Short,2021-01-01T00:00:00Z,1")
    lines.append("20001,Short too,2021-01-01T00:00:00Z,1")
    drop_file(blob_store, "hired_employees", line_end.join(lines) + line_end, "big.csv")

    run = run_ingest("hired_employees", max_reject_ratio=1)

    assert str(run.state) == "success"
    assert sqlite_warehouse.row_count("hired_employees") == 10_000
    rejects = only_rejects(blob_store, "hired_employees")
    assert [row["reason"].split(":")[0] for row in rejects] == ["row 6801", "row 10002"]
    assert all("has 4 fields, expected 5" in row["reason"] for row in rejects)
    assert [row["id"] for row in rejects] == ["20000", "20001"]


@pytest.mark.parametrize("quoted", [True, False])
def test_a_row_longer_than_a_block_is_rejected_by_the_length_rule(blob_store, sqlite_warehouse, quoted):
    """A 10 MB name: that row is rejected with the contract's length rule, the others load."""
    with_reference_rows(blob_store)
    long_name = "y" * 10_000_000
    lines = [hire(1), hire(2, f'"{long_name}"' if quoted else long_name), hire(3)]
    drop_file(blob_store, "hired_employees", "\n".join(lines) + "\n", "long.csv")

    run = run_ingest("hired_employees", max_reject_ratio=1)

    assert str(run.state) == "success"
    assert sqlite_warehouse.key_values("hired_employees") == {1, 3}
    rejects = only_rejects(blob_store, "hired_employees")
    assert [row["reason"] for row in rejects] == ["row 2: name: longer than 255 characters"]
    assert rejects[0]["name"] == long_name  # kept whole: nothing is lost


def test_one_id_in_two_spellings_is_a_duplicate(blob_store, warehouse):
    """'1' and '0000000000000000001' are one id: both rows are rejected, on SQLite and
    PostgreSQL, and loaded + rejected = rows."""
    drop_file(
        blob_store,
        "jobs",
        "1,Nurse\nx,header-like\n0000000000000000001,Doctor\n+2,Cook\n3,Pilot\n02,Baker\n",
        "ids.csv",
    )

    run = run_ingest("jobs", max_reject_ratio=1)

    assert str(run.state) == "success"
    assert warehouse.key_values("jobs") == {3}
    rejects = only_rejects(blob_store, "jobs")
    assert len(rejects) == 5
    duplicates = {row["id"]: row["reason"] for row in rejects if "appears" in row["reason"]}
    assert set(duplicates) == {"1", "0000000000000000001", "'+2", "02"}
    assert "appears 2 times" in duplicates["0000000000000000001"]


def test_rejected_fields_cannot_run_as_spreadsheet_formulas(blob_store, sqlite_warehouse):
    drop_file(blob_store, "departments", '=1+2,Sales\n-5,"=HYPERLINK(""http://x"")"\n@x,ok\n', "f.csv")

    assert str(run_ingest("departments", max_reject_ratio=1).state) == "success"

    rejects = only_rejects(blob_store, "departments")
    assert [row["id"] for row in rejects] == ["'=1+2", "'@x"]
    # -5 is a valid id: it loads, untouched
    with sqlite_warehouse.transaction() as connection:
        assert connection.execute("SELECT department FROM departments").fetchall() == [
            ('=HYPERLINK("http://x")',)
        ]


def test_a_file_sent_twice_on_one_day_keeps_both_archives_and_rejects(blob_store, sqlite_warehouse):
    for content in ("1,Nurse\nx,bad\n", "1,Nurse (corrected)\ny,bad\n"):
        drop_file(blob_store, "jobs", content, "jobs.csv")
        assert str(run_ingest("jobs", max_reject_ratio=1).state) == "success"

    archived = blob_names(blob_store, "archive/jobs/")
    rejects = [n for n in blob_names(blob_store, "rejected/jobs/") if n.endswith(".rejects.csv")]
    assert len(archived) == 2
    assert len(rejects) == 2
    assert {blob_store.download_bytes(blob_store_container(), n) for n in archived} == {
        b"1,Nurse\nx,bad\n",
        b"1,Nurse (corrected)\ny,bad\n",
    }
    assert {read_rejects(blob_store, n)[0]["id"] for n in rejects} == {"x", "y"}


def test_files_with_one_name_in_two_folders_keep_their_own_names(blob_store, sqlite_warehouse):
    drop_file(blob_store, "jobs", "1,Nurse\nbad,row\n", "a.csv")
    drop_file(blob_store, "jobs", "2,Cook\nworse,row\n", "sub/a.csv")

    assert str(run_ingest("jobs", max_reject_ratio=1).state) == "success"

    assert sqlite_warehouse.key_values("jobs") == {1, 2}
    archived = blob_names(blob_store, "archive/jobs/")
    assert len(archived) == 2
    assert any(n.endswith("/sub/a.csv") for n in archived)
    rejects = [n for n in blob_names(blob_store, "rejected/jobs/") if n.endswith(".rejects.csv")]
    assert sorted(read_rejects(blob_store, n)[0]["id"] for n in rejects) == ["bad", "worse"]
    assert blob_names(blob_store, "incoming/") == []
    assert blob_names(blob_store, "processing/") == []


def blob_store_container():
    import os

    return os.environ["AZURE_BLOB_CONTAINER_RAW_DATA"]


def test_a_file_the_warehouse_refuses_is_set_aside_and_the_others_load(blob_store, warehouse):
    """A rule of the database the contract does not know (here a CHECK, or on SQLite a trigger)
    refuses one file's rows: that file goes whole to rejected/ with the database's reason, the
    other file of the run loads and is archived, the run fails naming the file, and the next run
    of the table is not held up by it."""
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        if warehouse.dialect == "postgres":
            cursor.execute("ALTER TABLE jobs ADD CONSTRAINT no_forbidden CHECK (job <> 'Forbidden')")
        else:
            cursor.execute(
                "CREATE TRIGGER no_forbidden BEFORE INSERT ON jobs WHEN NEW.job = 'Forbidden' "
                "BEGIN SELECT RAISE(ABORT, 'no_forbidden'); END"
            )
    drop_file(blob_store, "jobs", "1,Nurse\n2,Forbidden\n", "a.csv")
    drop_file(blob_store, "jobs", "3,Cook\n", "b.csv")

    run = run_ingest("jobs", max_reject_ratio=1)

    assert str(run.state) == "failed"
    assert 3 in warehouse.key_values("jobs")
    assert 2 not in warehouse.key_values("jobs")
    assert [n.rsplit("/", 1)[-1] for n in blob_names(blob_store, "archive/jobs/")] == ["b.csv"]
    set_aside = blob_names(blob_store, "rejected/jobs/")
    assert [n.rsplit("/", 1)[-1] for n in set_aside] == ["a.csv", "a.csv.reason.txt"]
    reason = blob_store.download_bytes(blob_store_container(), set_aside[1]).decode()
    assert "incoming/jobs/a.csv: the warehouse refused its rows" in reason
    assert "no_forbidden" in reason
    assert blob_names(blob_store, "incoming/") == []
    assert blob_names(blob_store, "processing/") == []

    drop_file(blob_store, "jobs", "4,Pilot\n", "c.csv")
    assert str(run_ingest("jobs", max_reject_ratio=1).state) == "success"
    assert 4 in warehouse.key_values("jobs")
