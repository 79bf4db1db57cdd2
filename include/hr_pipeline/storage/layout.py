"""Where each file of an ingest lives in the raw container: the one definition of the blob layout.

Every name an ingest writes derives from the file's whole path under ``incoming/<table>/`` and
from the run, never from its base name alone: two files with one name in different folders, or
one name sent twice on one day (a corrected extract), each keep their own archived copy and their
own rejects file.

| what | name |
| --- | --- |
| waiting | ``incoming/<table>/<path>`` |
| claimed by a run | ``processing/<table>/<run>/claimed/<path>`` |
| hand-over between the run's tasks | ``processing/<table>/<run>/<path>.valid.csv.zst`` and ``.rejects.csv`` |
| what the run's archive step is finishing | ``processing/<table>/<run>/archive-manifest.json`` |
| the table's ingest lock | ``processing/locks/<table>.lock`` |
| the run waiting for the table's next files | ``processing/waiting/<table>`` |
| archived after the ingest | ``archive/<table>/<YYYY-MM-DD>/<run>/<path>`` |
| its rejected rows | ``rejected/<table>/<YYYY-MM-DD>/<run>/<path without .csv>.rejects.csv`` (1) |
| a file that could not be read | ``rejected/<table>/<YYYY-MM-DD>/<run>/<path>`` and ``<path>.reason.txt`` |
| the rows a load committed (journal) | ``archive/journal/<table>/<run>/<path>.<sha256 prefix>.rows.csv.zst`` (2) |

(1) ``.CSV`` in another case keeps it (``<stem>.rejects.CSV``), and a path not ending in ``.csv``
is kept whole (``<path>-rejects.csv``): two files never share a rejects file.

(2) Named by its content (the first 16 hex digits of the sha256 its journal row records): a load
retried with other rows (one whose references vanished meanwhile) writes another file, never
over one that a journal row already names.

``<run>`` is the Airflow run id with every character outside ``A-Za-z0-9._-`` replaced by ``_``;
a retried task of the same run reuses the same names, so a retry never duplicates a file.

Azure takes blob names of up to 1,024 characters. A derived name that would be longer keeps the
end of ``<path>`` and puts a digest of the whole path before it (``~<digest>~<tail>``): still one
name per file, and the file's full name stays in the ledger and the claim's metadata. Lengths are
counted in UTF-16 code units (``name_length``).
"""

from __future__ import annotations

import hashlib
import re

MAX_BLOB_NAME = 1024  # Azure Blob Storage's limit, in characters (see name_length)
_DIGEST_CHARS = 24


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


def name_length(name: str) -> int:
    """A name's length in UTF-16 code units: a character outside the Basic Multilingual Plane (an
    emoji) counts two. Azure does not document how it counts those; this count is never below
    the count of code points, and is what SQL Server's NVARCHAR counts, so a name within the
    limit fits both ways and fits the ledger's columns."""
    return len(name.encode("utf-16-le", "surrogatepass")) // 2


def _tail(path: str, room: int) -> str:
    """The longest end of ``path`` of at most ``room`` UTF-16 code units."""
    start, used = len(path), 0
    while start and used + (width := 2 if ord(path[start - 1]) > 0xFFFF else 1) <= room:
        start, used = start - 1, used + width
    return path[start:]


def fitted(prefix: str, path: str, suffix: str = "") -> str:
    """``prefix + path + suffix``, or, when that is longer than Azure allows, the same with the
    path replaced by a digest of it and as much of its end as fits."""
    name = prefix + path + suffix
    if name_length(name) <= MAX_BLOB_NAME:
        return name
    digest = hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]
    room = MAX_BLOB_NAME - name_length(prefix) - name_length(suffix) - _DIGEST_CHARS - 2
    if room < 0:
        raise ValueError(f"{prefix!r} and {suffix!r} leave no room for a file name")
    return f"{prefix}~{digest}~{_tail(path, room)}{suffix}"


def lock_name(table: str) -> str:
    """The table's ingest lock (see ``hr_pipeline.storage.claims``)."""
    return f"processing/locks/{table}.lock"


def waiting_marker_name(table: str) -> str:
    """Names the one run waiting for the table's next files (see ``hr_pipeline.ops.sensors``)."""
    return f"processing/waiting/{table}"


def processing_root(table: str) -> str:
    """Every run's folder of the table is below this."""
    return f"processing/{table}/"


def processing_prefix(table: str, run_id: str) -> str:
    return f"{processing_root(table)}{run_folder(run_id)}/"


def claimed_prefix(table: str, run_id: str) -> str:
    return f"{processing_prefix(table, run_id)}claimed/"


def claimed_name(table: str, run_id: str, source: str) -> str:
    return fitted(claimed_prefix(table, run_id), relative_path(table, source))


def archive_manifest_name(table: str, run_id: str) -> str:
    return f"{processing_prefix(table, run_id)}archive-manifest.json"


def valid_rows_name(table: str, run_id: str, source: str) -> str:
    return fitted(processing_prefix(table, run_id), relative_path(table, source), ".valid.csv.zst")


def pending_rejects_name(table: str, run_id: str, source: str) -> str:
    return fitted(processing_prefix(table, run_id), relative_path(table, source), ".rejects.csv")


def load_rejects_name(table: str, run_id: str, source: str) -> str:
    """Rows the load rejected (their reference was removed after validation), until archived."""
    return fitted(processing_prefix(table, run_id), relative_path(table, source), ".load-rejects.csv")


def archive_name(table: str, day: str, run_id: str, source: str) -> str:
    return fitted(f"archive/{table}/{day}/{run_folder(run_id)}/", relative_path(table, source))


def rejects_name(table: str, day: str, run_id: str, source: str) -> str:
    path = relative_path(table, source)
    # One name per path: a.csv, a.CSV and a each get their own.
    if path[-4:].lower() == ".csv":
        stem, suffix = path[:-4], ".rejects" + path[-4:]
    else:
        stem, suffix = path, "-rejects.csv"
    return fitted(f"rejected/{table}/{day}/{run_folder(run_id)}/", stem, suffix)


def unreadable_file_name(table: str, day: str, run_id: str, source: str) -> str:
    """Where a file that cannot be read goes, whole, beside the rejects files."""
    return fitted(f"rejected/{table}/{day}/{run_folder(run_id)}/", relative_path(table, source))


def set_aside_reason_name(table: str, day: str, run_id: str, source: str) -> str:
    """The reason a file set aside whole was not loaded, beside it."""
    return fitted(
        f"rejected/{table}/{day}/{run_folder(run_id)}/", relative_path(table, source), ".reason.txt"
    )


def journal_rows_prefix(table: str) -> str:
    """Every rows file of the table's journal is below this (retention lists them)."""
    return f"archive/journal/{table}/"


def journal_rows_name(table: str, run_id: str, source: str, sha256: str) -> str:
    """The rows one file's load committed, as replayed by a point-in-time restore (2)."""
    return fitted(
        f"{journal_rows_prefix(table)}{run_folder(run_id)}/",
        relative_path(table, source),
        f".{sha256[:16]}.rows.csv.zst",
    )
