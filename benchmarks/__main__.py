"""`python -m benchmarks [name ...]`: run the benchmarks (all by default), print their figures as
one table, and exit non-zero when a figure misses its target or a benchmark does not finish."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("ingest_bench", "metrics_bench", "backup_bench", "point_in_time_bench", "latency_bench")


def main(names: list[str]) -> int:
    from benchmarks.common import ROWS, print_table, report_failure

    selected = names or list(BENCHMARKS)
    missed = 0
    for name in selected:
        print(f"\n== {name} ==", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            met = module.main()
        except Exception as error:  # noqa: BLE001 - the others still run; the table names it
            report_failure(name, error)
            met = False
        missed += 0 if met else 1
    print_table(ROWS)
    print(f"\n{len(selected) - missed} of {len(selected)} benchmarks met their targets")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
