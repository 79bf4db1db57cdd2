"""Where each file of an ingest lives in the raw container: the one definition of the blob layout.

Every name an ingest writes derives from the file's whole path under ``incoming/<table>/`` and
from the run, never from its base name alone: two files with one name in different folders, or
one name sent twice on one day (a corrected extract), each keep their own archived copy and their
own rejects file.

| what | name |
| --- | --- |
| waiting | ``incoming/<table>/<path>`` |
| hand-over between the run's tasks | ``processing/<table>/<run>/<path>.valid.csv.zst`` and ``.rejects.csv`` |
| archived after the ingest | ``archive/<table>/<YYYY-MM-DD>/<run>/<path>`` |
| its rejected rows | ``rejected/<table>/<YYYY-MM-DD>/<run>/<path without .csv>.rejects.csv`` |
| a file that could not be read | ``rejected/<table>/<YYYY-MM-DD>/<run>/<path>`` and ``<path>.reason.txt`` |

``<run>`` is the Airflow run id with every character outside ``A-Za-z0-9._-`` replaced by ``_``;
a retried task of the same run reuses the same names, so a retry never duplicates a file.
"""

from __future__ import annotations

import re


def incoming_prefix(table: str) -> str:
    return f"incoming/{table}/"


def run_folder(run_id: str) -> str:
    """The run id as one safe path segment."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def relative_path(table: str, source: str) -> str:
    """A waiting file's path below ``incoming/<table>/``."""
    prefix = incoming_prefix(table)
    if not source.startswith(prefix):
        raise ValueError(f"{source} is not under {prefix}")
    return source[len(prefix) :]


def processing_prefix(table: str, run_id: str) -> str:
    return f"processing/{table}/{run_folder(run_id)}/"


def valid_rows_name(table: str, run_id: str, source: str) -> str:
    return f"{processing_prefix(table, run_id)}{relative_path(table, source)}.valid.csv.zst"


def pending_rejects_name(table: str, run_id: str, source: str) -> str:
    return f"{processing_prefix(table, run_id)}{relative_path(table, source)}.rejects.csv"


def archive_name(table: str, day: str, run_id: str, source: str) -> str:
    return f"archive/{table}/{day}/{run_folder(run_id)}/{relative_path(table, source)}"


def rejects_name(table: str, day: str, run_id: str, source: str) -> str:
    path = relative_path(table, source)
    stem = path[:-4] if path.lower().endswith(".csv") else path
    return f"rejected/{table}/{day}/{run_folder(run_id)}/{stem}.rejects.csv"


def unreadable_file_name(table: str, day: str, run_id: str, source: str) -> str:
    """Where a file that cannot be read goes, whole, beside the rejects files."""
    return f"rejected/{table}/{day}/{run_folder(run_id)}/{relative_path(table, source)}"
