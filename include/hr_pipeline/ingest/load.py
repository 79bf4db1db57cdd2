"""The load task: upsert each file's valid rows in batches, fenced by the ingest lock and under the warehouse's table locks; rows whose reference vanished since validation are rejected with their reason. Each file's load is journaled (``warehouse.journal``) with the exact rows it committed, for point-in-time restores."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import tempfile
from collections.abc import Iterable, Iterator

from hr_pipeline.contract.tables import TableContract, get_contract
from hr_pipeline.ingest.run import (
    VALID_ROWS_COMPRESSION,
    FileValidation,
    IngestError,
    ingest_lock,
    load_rejects_name,
    loads_by_source,
    spreadsheet_safe,
)
from hr_pipeline.runtime.memory import return_large_buffers_to_the_system
from hr_pipeline.runtime.progress import Progress
from hr_pipeline.runtime.settings import raw_container
from hr_pipeline.storage import layout
from hr_pipeline.storage.blob_store import BlobStore
from hr_pipeline.warehouse import journal
from hr_pipeline.warehouse.errors import WarehouseDataError
from hr_pipeline.warehouse.facade import CsvBatch, Warehouse, csv_batches

log = logging.getLogger(__name__)


def load_validated(
    table: str,
    validations: list[dict],
    batch_size: int,
    store: BlobStore | None = None,
    warehouse: Warehouse | None = None,
) -> list[dict]:
    """Upsert the valid rows of each file, in claim order; returns, per file in that order, its
    ``source``, the rows ``loaded``, the rows ``rejected`` at load, and the ``error`` that stopped
    its load, if any (a list: file names are data, never keys Airflow turns into XComs or URLs).

    Holds the table's writer lock, and its content and the referenced tables' shared (a restore
    of any of them waits, and none runs meanwhile), for the whole load. Within it, it checks that
    the run still holds the table's ingest lock (``LockLostError`` if another run took over) and
    again that the ids the rows reference exist: a row whose reference was removed since
    validation (a restore of departments, say) is rejected, with its reason, not loaded.

    A file whose load the database refuses for something in its data (a constraint, a value it
    cannot store) does not stop the others: the error is recorded against that file, which the
    archive step then sets aside whole. Any other error (connection, timeout) fails the task, to
    be retried: every write is an upsert by key, so a retry converges.
    """
    if batch_size < 1:
        raise IngestError(f"batch_size must be at least 1, got {batch_size}")
    contract = get_contract(table)
    return_large_buffers_to_the_system()
    store = store or BlobStore()
    warehouse = warehouse or Warehouse()
    warehouse.ensure_tables()
    referenced = [column.references for column in contract.foreign_keys]
    loads: list[dict] = []
    if not validations:
        return loads
    lock = ingest_lock(contract, validations[0]["run_id"], store, warehouse)
    # The content shared: an upsert removes no id, so a load of departments need not wait for a
    # load of hires; the writer lock keeps two loads of one table apart.
    with warehouse.table_locks(writers=[contract.name], shared=[contract.name, *referenced]):
        lock.ensure_held()
        for item in map(lambda d: FileValidation(**d), validations):
            load = {"source": item.source, "loaded": 0, "rejected": 0, "error": None}
            if not (item.unreadable_reason or item.over_limit_reason or item.valid == 0):
                load.update(_load_file(contract, item, batch_size, store, warehouse))
            loads.append(load)
    log.info(
        "Loaded %s:\n%s",
        contract.name,
        "\n".join(
            f"  {load['source']}: {load['loaded']} rows"
            + (f", {load['rejected']} rejected at load" if load["rejected"] else "")
            + (f", REFUSED: {load['error']}" if load["error"] else "")
            for load in loads
        )
        or "  nothing to load",
    )
    return loads


def _load_file(
    contract: TableContract, item: FileValidation, batch_size: int, store: BlobStore, warehouse: Warehouse
) -> dict:
    vanished = {}
    for column in contract.foreign_keys:
        wanted = item.referenced_ids.get(column.references, [])
        missing = set(wanted) - warehouse.existing_keys(column.references, wanted)
        if missing:
            vanished[column.name] = (column.references, missing)
            log.warning(
                "%s: %d id(s) of %s its rows point at were removed since validation "
                "(first: %s): those rows are rejected",
                item.source,
                len(missing),
                column.references,
                ", ".join(map(str, sorted(missing)[:5])),
            )
    progress = Progress(f"load {item.source}", total=item.valid, logger=log)
    written = 0

    def count(rows: int) -> None:
        nonlocal written
        progress.advance(rows - written)
        written = rows
        log.debug("%s: %d of %d rows loaded", item.source, rows, item.valid)

    batches = csv_batches(
        store.decompressed_blocks(raw_container(), item.valid_blob, VALID_ROWS_COMPRESSION), batch_size
    )
    dropped: list[list[str]] = []
    if vanished:
        batches = _without_vanished_references(batches, contract, vanished, dropped)
    committed = CommittedRows()
    try:
        # Streamed from the blob straight into the load: batches are cut as the bytes arrive.
        with committed.kept_aside(store) if vanished else committed:
            warehouse.load_batches(contract, committed.passing(batches), on_batch=count)
            if written + len(dropped) == item.valid:
                _journal_load(contract, item, committed, written, store, warehouse)
    except WarehouseDataError as error:
        first_line = str(error)
        log.error(
            "%s: the warehouse refused its rows (%s) after %d of %d were loaded; the "
            "other files go on, and this one is set aside whole by the archive step",
            item.source,
            first_line,
            written,
            item.valid,
        )
        return {"loaded": written, "rejected": 0, "error": first_line}
    progress.finish()
    if dropped:
        _upload_load_rejects(store, item, contract, dropped)
    if written + len(dropped) != item.valid:
        raise IngestError(
            f"{item.source}: {item.valid} valid rows but {written} loaded and {len(dropped)} rejected at load"
        )
    log.info("%s: %d rows loaded into %s (%s)", item.source, written, contract.name, warehouse.dialect)
    return {"loaded": written, "rejected": len(dropped), "error": None}


class CommittedRows:
    """The rows a load commits, as they pass into it: their sha256 (of the canonical CSV bytes of
    the batches, in order) and, when they are not the whole validated file (``kept_aside``), a
    local zstd copy of them to archive as the journal's rows file."""

    def __init__(self):
        self.digest = hashlib.sha256()
        self.copy_path: str | None = None
        self._directory = None
        self._stream = None

    def passing(self, batches: Iterable[CsvBatch]) -> Iterator[CsvBatch]:
        for batch in batches:
            self.digest.update(batch.data)
            if self._stream is not None:
                self._stream.write(batch.data)
            yield batch

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()

    def kept_aside(self, store: BlobStore) -> CommittedRows:
        import pyarrow as pa

        self._directory = tempfile.TemporaryDirectory(prefix="committed-rows-")
        self.copy_path = f"{self._directory.name}/rows.csv.zst"
        self._stream = pa.CompressedOutputStream(self.copy_path, VALID_ROWS_COMPRESSION)
        return self

    def close_copy(self) -> None:
        if self._stream is not None and not self._stream.closed:
            self._stream.close()

    def __enter__(self) -> CommittedRows:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close_copy()
        if self._directory is not None:
            self._directory.cleanup()


def _journal_load(
    contract: TableContract,
    item: FileValidation,
    committed: CommittedRows,
    rows: int,
    store: BlobStore,
    warehouse: Warehouse,
) -> None:
    """Archive the rows the load committed under ``archive/<table>/journal/`` and write the
    table's journal row for them, still under the load's writer lock (no other change of the
    table can come between the rows and their journal row). A retry that loads the same rows
    again finds its journal row already written, last for the table, and writes none."""
    container = raw_container()
    rows_file = layout.journal_rows_name(contract.name, item.run_id, item.source, committed.sha256)
    if committed.copy_path is None:
        store.copy(container, item.valid_blob, rows_file)  # the validated file is what loaded
    else:
        committed.close_copy()
        store.upload_file(container, rows_file, committed.copy_path)
    last = journal.last_entry(warehouse, contract.name)
    if last and (last.run_id, last.source, last.rows_sha256) == (item.run_id, item.source, committed.sha256):
        log.info("%s: its load is journaled already (journal %d)", item.source, last.seq)
        return
    seq = journal.record(
        warehouse,
        table_name=contract.name,
        kind=journal.LOAD,
        run_id=item.run_id,
        source=item.source,
        rows=rows,
        rows_file=rows_file,
        rows_sha256=committed.sha256,
    )
    log.info("%s: journal %d of %s, rows in %s/%s", item.source, seq, contract.name, container, rows_file)


def _without_vanished_references(batches, contract: TableContract, vanished: dict, dropped: list):
    """The batches without the rows that point at an id removed since validation; those rows go
    to ``dropped`` with their reason. Parses the batches: only for a file that needs it."""
    from hr_pipeline.warehouse.facade import CsvBatch

    positions = {name: contract.column_names.index(name) for name in vanished}
    key = contract.column_names.index(contract.key)
    for batch in batches:
        kept = io.StringIO()
        writer = csv.writer(kept, lineterminator="\n", quoting=csv.QUOTE_ALL)  # a lone CR stays in its field
        rows = 0
        for row in batch.parsed():
            reasons = [
                f"{name}: {row[position]} does not exist in {vanished[name][0]} (removed "
                "after this file was validated)"
                for name, position in positions.items()
                if int(row[position]) in vanished[name][1]
            ]
            if reasons:
                dropped.append([*row, f"id {row[key]}: " + "; ".join(reasons)])
            else:
                writer.writerow(row)
                rows += 1
        if rows:
            yield CsvBatch(kept.getvalue().encode(), rows)


def _upload_load_rejects(
    store: BlobStore, item: FileValidation, contract: TableContract, dropped: list
) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerows([*map(spreadsheet_safe, row[:-1]), row[-1]] for row in dropped)
    store.upload_bytes(raw_container(), load_rejects_name(item), text.getvalue().encode())


def what_changed(validations: list[dict], loads: list[dict]) -> dict:
    """What a run changed in its table, for the table's asset event."""
    loads = loads_by_source(loads)
    files = [
        {
            "file": v["source"],
            "rows": v["rows"],
            "loaded": loads.get(v["source"], {}).get("loaded", 0),
            "rejected": v["rejected"] + loads.get(v["source"], {}).get("rejected", 0),
        }
        for v in validations
    ]
    return {
        "files": files,
        "rows_loaded": sum(f["loaded"] for f in files),
        "rows_rejected": sum(f["rejected"] for f in files),
    }
