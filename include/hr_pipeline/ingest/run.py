"""What the tasks of one ingest run hand each other: a file's validation, the load results, the run's ingest lock, and the names they share."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from hr_pipeline.contract.tables import TableContract
from hr_pipeline.runtime.settings import (
    raw_container,
)
from hr_pipeline.storage import layout
from hr_pipeline.storage.blob_store import BlobStore
from hr_pipeline.storage.claims import (
    IngestLock,
    RunHasEnded,
)
from hr_pipeline.warehouse.facade import Warehouse

log = logging.getLogger(__name__)


class IngestError(RuntimeError):
    """A failure the user has to act on (the message says what and where)."""


@dataclass
class FileValidation:
    """What validation found in one extract; passed between tasks as a dict (XCom)."""

    table: str
    source: str  # incoming/<table>/<path>: the name the file arrived under
    claimed_blob: str  # where the run holds it (processing/<table>/<run>/claimed/<path>)
    run_id: str
    rows: int
    valid: int
    rejected: int
    valid_blob: str
    rejects_blob: str  # the rejects while the run is in flight (processing/)
    archive_blob: str = ""  # where the file goes once ingested
    rejects_destination: str = ""  # where its rejects go (only written if a row was rejected)
    header_skipped: bool = False
    # referenced table -> the ids the valid rows point at (checked again when they are loaded)
    referenced_ids: dict[str, list[int]] = field(default_factory=dict)
    unreadable_reason: str | None = None
    sha256: str = ""
    bytes: int = 0
    same_as_run: str | None = None  # an earlier run that ingested a file with the same bytes
    # the rejected share is above the run's max_reject_ratio: the file is not loaded
    over_limit_reason: str | None = None

    @property
    def file_name(self) -> str:
        return self.source.rsplit("/", 1)[-1]

    def to_dict(self) -> dict:
        return asdict(self)


VALID_ROWS_COMPRESSION = "zstd"


# A spreadsheet reads a cell starting with one of these as a formula (or, for ', as text).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def spreadsheet_safe(value: str) -> str:
    """A rejected field as the rejects file writes it: with a leading apostrophe when it starts
    like a formula, so an operator opening the file in a spreadsheet never runs one. Recoverable:
    a value starting with an apostrophe always had one added (drop the first character)."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def ingest_lock(
    contract: TableContract,
    run_id: str,
    store: BlobStore,
    warehouse: Warehouse,
    run_has_ended: RunHasEnded | None = None,
) -> IngestLock:
    """The table's ingest lock for ``run_id``, fenced by the warehouse's writer lock of the table."""
    table = contract.name
    return IngestLock(
        store,
        raw_container(),
        table,
        run_id,
        run_has_ended,
        fence=lambda: warehouse.table_locks(writers=[table]),
    )


def loads_by_source(loads: list[dict] | None) -> dict[str, dict]:
    """The load step's result, by file."""
    return {load["source"]: load for load in loads or []}


def load_rejects_name(item: FileValidation) -> str:
    return layout.load_rejects_name(item.table, item.run_id, item.source)
