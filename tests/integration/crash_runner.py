"""Runs one step of an ingest in this process and SIGKILLs the process at a chosen log record:
a crash at that exact point between two steps, with no hook in the pipeline's code.

    python -m tests.integration.crash_runner STEP TABLE RUN_ID DAY STATE_JSON PATTERN [OCCURRENCE]

STEP is validate, load or archive; STATE_JSON holds the run's ``validations`` and ``loads`` (read
by the later steps, written by the earlier ones); the process kills itself when the OCCURRENCE-th
log record whose message matches the regular expression PATTERN is emitted (exit status -9). A
step that ends without matching exits 3, so a pattern that no longer occurs fails its test.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
from pathlib import Path


class KillAt(logging.Handler):
    def __init__(self, pattern: str, occurrence: int):
        super().__init__(level=logging.DEBUG)
        self.pattern = re.compile(pattern)
        self.occurrence = occurrence
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.pattern.search(record.getMessage()):
            self.seen += 1
            if self.seen == self.occurrence:
                print(f"KILLED AT: {record.getMessage()}", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)


def main(step: str, table: str, run_id: str, day: str, state_path: str, pattern: str, occurrence: str = "1"):
    # Airflow configures logging on import: the handler goes after.
    from hr_pipeline.ingest import archive, load, validate

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(KillAt(pattern, int(occurrence)))
    # The pipeline's own debug lines too: the load says so after each batch it commits.
    logging.getLogger("hr_pipeline").setLevel(logging.DEBUG)
    logging.getLogger("hr_pipeline").disabled = False
    state_file = Path(state_path)
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if step == "validate":
        state["validations"] = validate.validate_incoming(table, run_id=run_id, day=day)
    elif step == "load":
        state["loads"] = load.load_validated(table, state["validations"], batch_size=1)
    elif step == "archive":
        archive.archive_ingested(table, state["validations"], day=day, run_id=run_id, loads=state["loads"])
    else:
        raise SystemExit(f"unknown step {step}")
    state_file.write_text(json.dumps(state))
    raise SystemExit(3)


if __name__ == "__main__":
    main(*sys.argv[1:])
