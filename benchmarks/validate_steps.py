"""The validate task's steps timed one by one, in one process, on a generated ``hired_employees``
file read from local disk: the first pass (``scan``), Arrow's parse into chunks, the derived
columns, Great Expectations' suite, the canonical rows and their CSV and zstd encoding. Not one
of ``make bench``'s figures; what benchmarks/RESULTS.md's per-step figures come from.

    .venv/bin/python -m benchmarks.validate_steps [rows] [rounds]   # default 1000000 3

Unlike cProfile, nothing here slows the code it times. Each step runs over the whole file at the
validation's chunk size, once per round; the figure is the median round. The suite is also timed
on the whole file as one chunk, which separates its fixed cost per run from its cost per row.
No download, upload or thread: the task overlaps those with these steps.
"""

from __future__ import annotations

import statistics
import sys
import time
from functools import partial

from benchmarks.common import WORK_DIR, generate_hires_csv


def _timed(step) -> tuple[float, object]:
    started = time.perf_counter()
    result = step()
    return time.perf_counter() - started, result


def _round(path, contract, chunk_rows: int) -> dict[str, float]:
    import io

    from hr_pipeline.ingest.expectations import ChunkValidator
    from hr_pipeline.ingest.reader import read_chunks, scan
    from hr_pipeline.ingest.validate import _ValidRowsOut

    seconds: dict[str, float] = {}
    seconds["first pass (scan: UTF-8, ids, duplicates)"], file_scan = _timed(lambda: scan(path, contract))
    validator = ChunkValidator(
        contract, {"departments": range(1, 13), "jobs": range(1, 184)}, file_scan.duplicate_ids
    )
    seconds["parse into chunks (Arrow CSV)"], chunks = _timed(
        lambda: list(read_chunks(path, contract, chunk_rows))
    )
    steps = {"derived columns": 0.0, "Great Expectations suite": 0.0, "canonical rows": 0.0}
    tables = []
    for chunk in chunks:
        took, (frame, instants) = _timed(lambda chunk=chunk: validator.frame(chunk))
        steps["derived columns"] += took
        took, result = _timed(lambda frame=frame: validator._run_suite(frame))
        assert result is None, "the generated file has no invalid row"
        steps["Great Expectations suite"] += took
        took, table = _timed(lambda frame=frame, instants=instants: validator._canonical(frame, instants, []))
        steps["canonical rows"] += took
        tables.append(table)
    seconds.update(steps)

    def encode(tables: list) -> None:  # as the task's background writer does, into memory
        valid_rows = _ValidRowsOut(io.BytesIO())
        for table in tables:
            valid_rows.write(table)
        valid_rows.close()

    seconds["canonical CSV + zstd"], _ = _timed(partial(encode, tables))
    del chunks, tables  # before the whole file is read as one chunk
    (single,) = list(read_chunks(path, contract, 1 << 62, chunk_bytes=1 << 62))
    frame, _ = validator.frame(single)
    seconds["(Great Expectations suite, the file as one chunk)"], _ = _timed(
        lambda: validator._run_suite(frame)
    )
    return seconds


def main(rows: int, rounds: int) -> None:
    from hr_pipeline.contract.tables import get_contract
    from hr_pipeline.ingest.reader import use_system_allocator
    from hr_pipeline.runtime.settings import validation_chunk_rows

    use_system_allocator()
    contract = get_contract("hired_employees")
    path = generate_hires_csv(WORK_DIR / f"hired_employees_{rows}.csv", rows)
    chunk_rows = validation_chunk_rows()
    results = [_round(path, contract, chunk_rows) for _ in range(rounds)]
    print(f"\n{rows:,} rows, chunks of {chunk_rows:,}, median of {rounds} rounds:\n")
    print("| step | seconds |\n| --- | --- |")
    total = 0.0
    for step in results[0]:
        median = statistics.median(r[step] for r in results)
        if not step.startswith("("):
            total += median
        print(f"| {step} | {median:.2f} |")
    print(f"| sum of the steps | {total:.2f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000, int(sys.argv[2]) if len(sys.argv) > 2 else 3)
