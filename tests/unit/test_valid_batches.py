"""Splitting the validated file into load batches on record boundaries, without parsing it."""

import csv
import io

from hr_pipeline.ingest import _valid_batches


def test_batches_split_on_records_even_with_newlines_in_quoted_values(tmp_path):
    rows = [["1", "plain"], ["2", 'two\nlines "quoted"'], ["3", "x"], ["4", "a, b"], ["5", "\n\n"]]
    path = tmp_path / "valid.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    batches = list(_valid_batches(path, 2))
    assert [b.rows for b in batches] == [2, 2, 1]
    assert [r for b in batches for r in csv.reader(io.StringIO(b.text))] == rows
    assert batches[0].parsed() == rows[:2]
