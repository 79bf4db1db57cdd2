"""Warehouse.load_batches with validated CSV batches, on SQLite and PostgreSQL (real servers).

On PostgreSQL a batch goes straight into the table by COPY while no key conflicts, and several
connections write at once; these tests pin down that the result is still an upsert by key,
whatever the mix of new and existing keys, and that a failing batch fails the load.
"""

from __future__ import annotations

import csv
import io

import pytest

from hr_pipeline.contract.tables import CONTRACTS
from hr_pipeline.warehouse.facade import csv_batches

JOBS = CONTRACTS["jobs"]


def job_csv(ids, label: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(
        [[str(i), f'{label} {i}, "quoted"'] for i in ids]
    )
    return out.getvalue().encode()


def table(warehouse) -> dict[int, str]:
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT id, job FROM jobs")
        return dict(cursor.fetchall())


@pytest.mark.parametrize("connections", [1, 2, 3])
def test_new_rows_then_a_file_overlapping_them_is_an_upsert(warehouse, connections):
    loaded = warehouse.load_batches(
        JOBS, csv_batches([job_csv(range(1, 501), "old")], 7), connections=connections
    )
    assert loaded == 500
    assert table(warehouse) == {i: f'old {i}, "quoted"' for i in range(1, 501)}

    # 251..750: the first batches are new ids, later ones overlap ids already there.
    seen = []
    loaded = warehouse.load_batches(
        JOBS,
        csv_batches([job_csv(range(751, 1001), "new"), job_csv(range(251, 751), "new")], 10),
        on_batch=seen.append,
        connections=connections,
    )
    assert loaded == 750
    assert seen == sorted(seen)
    assert seen[-1] == 750
    expected = {i: f'old {i}, "quoted"' for i in range(1, 251)}
    expected.update({i: f'new {i}, "quoted"' for i in range(251, 1001)})
    assert table(warehouse) == expected


def test_a_bad_batch_fails_the_load_and_leaves_no_part_of_itself(postgres_warehouse):
    good = job_csv(range(1, 101), "job")
    bad = b'"101","fine"\n"x102","not an integer"\n'
    with pytest.raises(Exception, match="x102"):
        postgres_warehouse.load_batches(JOBS, csv_batches([good, bad], 10), connections=2)
    rows = table(postgres_warehouse)
    assert 101 not in rows
    assert 102 not in rows
    assert set(rows) <= set(range(1, 101))  # batches committed before the failure stay


def test_postgres_loads_through_several_connections(postgres_warehouse):
    assert postgres_warehouse.load_connections() == 2
    assert postgres_warehouse.load_batches(JOBS, csv_batches([job_csv(range(1, 2001), "j")], 100)) == 2000
    assert len(table(postgres_warehouse)) == 2000


def test_sqlite_loads_through_one_connection(sqlite_warehouse):
    assert sqlite_warehouse.load_connections() == 1
