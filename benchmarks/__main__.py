"""`python -m benchmarks [name ...]`: run the benchmarks (all by default)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("ingest_bench", "metrics_bench", "backup_bench", "point_in_time_bench", "latency_bench")


def main(names: list[str]) -> int:
    selected = names or list(BENCHMARKS)
    missed = 0
    for name in selected:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"\n== {name} ==", flush=True)
        missed += 0 if module.main() else 1
    print(f"\n{len(selected) - missed} of {len(selected)} benchmarks met their targets")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
