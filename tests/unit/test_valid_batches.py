"""Cutting the validated file into load batches on record boundaries, without parsing it, as its
bytes arrive from Blob Storage in blocks of any size."""

import csv
import io

import pytest

from hr_pipeline.warehouse.facade import csv_batches

ROWS = [
    ["1", "plain"],
    ["2", 'two\nlines "quoted"'],
    ["3", "x"],
    ["4", "a, b"],
    ["5", "\n\n"],
    ["6", '""'],
    ["7", "Zoë, Ångström"],
]


def csv_bytes(rows, quote_all=False) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL).writerows(
        rows
    )
    return out.getvalue().encode()


def blocks_of(data: bytes, size: int):
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("quote_all", [False, True])
def test_batches_split_on_records_whatever_the_blocks(block_size, quote_all):
    data = csv_bytes(ROWS, quote_all)
    batches = list(csv_batches(blocks_of(data, block_size), 2))
    assert [b.rows for b in batches] == [2, 2, 2, 1]
    assert [r for b in batches for r in b.parsed()] == ROWS
    assert b"".join(b.data for b in batches) == data


def test_a_last_record_without_its_newline_counts():
    batches = list(csv_batches([b'1,a\n2,"b\nc"'], 5))
    assert [(b.rows, b.parsed()) for b in batches] == [(2, [["1", "a"], ["2", "b\nc"]])]


def test_batch_size_one_and_larger_than_the_file():
    data = csv_bytes(ROWS)
    assert [b.rows for b in csv_batches([data], 1)] == [1] * len(ROWS)
    assert [b.rows for b in csv_batches(blocks_of(data, 5), 1000)] == [len(ROWS)]
    assert list(csv_batches([b"", b""], 10)) == []
