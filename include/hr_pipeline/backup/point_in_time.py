"""Which backup and which journaled changes rebuild a table as it was at an instant.

The table as of ``T`` is the newest backup whose snapshot is at or before ``T``, plus the changes
of the table journal (``warehouse.journal``) after that backup's position and committed at or
before ``T``, in order. A load is replayed as an upsert of exactly the rows it committed (its
archived rows file). A restore in between is resolved the same way, recursively: what it left
is its backup plus the changes it replayed, and the changes after it follow.

``plan_as_of`` decides; it reads nothing and writes nothing (the caller lists the backups and the
journal), so it is tested against a plain model of the table. ``rows_of`` streams a load's rows
file and checks it against the journal (sha256 and row count) as it goes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from hr_pipeline.backup.backups import (
    BLOB_META_POSITION,
    BackupError,
    BackupRef,
    default_blob_store,
    default_warehouse,
    list_backups,
)
from hr_pipeline.contract.instants import as_utc, format_instant
from hr_pipeline.runtime import settings
from hr_pipeline.warehouse import journal
from hr_pipeline.warehouse.journal import LOAD, RESTORE, ROWS_FILE_COMPRESSION, JournalEntry

log = logging.getLogger(__name__)

# A restore can cross restores that crossed restores: deeper than this is a journal that loops.
MAX_RESTORE_DEPTH = 100


class PointInTimeError(BackupError):
    """The table cannot be rebuilt exactly as asked (an instant before every backup, a rows file
    or a backup that a change needs is missing): nothing is changed."""


@dataclass(frozen=True)
class RestorePlan:
    """A backup and the loads to replay over it, in order."""

    table: str
    base: BackupRef
    base_position: int
    replays: tuple[JournalEntry, ...] = ()
    through_seq: int = 0  # the table's journal position the result stands for
    as_of: datetime | None = None
    crossed_restores: tuple[int, ...] = field(default=())  # the restores resolved on the way

    def describe(self) -> str:
        text = f"backup {self.base.name} (journal position {self.base_position})"
        if self.replays:
            seqs = ", ".join(str(entry.seq) for entry in self.replays)
            rows = sum(entry.rows for entry in self.replays)
            text += f" then {len(self.replays)} load(s) replayed (journal {seqs}; {rows} rows)"
        if self.crossed_restores:
            text += f", through the restore(s) at journal {', '.join(map(str, self.crossed_restores))}"
        return text


def backup_position(ref: BackupRef) -> int:
    """The table's journal position a backup holds (0: written before the table had a journal,
    so every journaled change came after it)."""
    return int(ref.metadata.get(BLOB_META_POSITION) or 0)


def plan_backup(ref: BackupRef) -> RestorePlan:
    """Exactly one backup: no change replayed."""
    position = backup_position(ref)
    return RestorePlan(ref.table, ref, position, (), position, None)


def plan_as_of(
    table: str, backups: list[BackupRef], journal: list[JournalEntry], instant: datetime
) -> RestorePlan:
    """The plan that rebuilds ``table`` as it was at ``instant`` (see the module).

    ``backups``: the table's backups; ``journal``: its journal entries, in ``seq`` order (at least
    those after the chosen backup's position)."""
    instant = as_utc(instant)
    taken = [ref for ref in backups if ref.instant <= instant]
    if not taken:
        oldest = min((ref.instant for ref in backups), default=None)
        raise PointInTimeError(
            f"{table} cannot be restored as of {format_instant(instant)}: no backup of it was taken "
            "at or before that instant"
            + (f" (the oldest was taken {format_instant(oldest)})" if oldest else " (it has no backup)")
            + ". The table is unchanged."
        )
    base = max(taken, key=lambda ref: (ref.instant, ref.name))
    naive = instant.replace(tzinfo=None)
    committed = [entry for entry in journal if entry.committed_at <= naive]
    through = max([backup_position(base), *(entry.seq for entry in committed)])
    plan = _resolve(table, {ref.name: ref for ref in backups}, journal, base, through, depth=0)
    return RestorePlan(
        table, plan.base, plan.base_position, plan.replays, through, instant, plan.crossed_restores
    )


def _resolve(
    table: str,
    backups: dict[str, BackupRef],
    journal: list[JournalEntry],
    base: BackupRef,
    through: int,
    depth: int,
) -> RestorePlan:
    position = backup_position(base)
    changes = [entry for entry in journal if position < entry.seq <= through]
    restores = [entry for entry in changes if entry.kind == RESTORE]
    if not restores:
        loads = tuple(entry for entry in changes if entry.kind == LOAD)
        return RestorePlan(table, base, position, loads, through)
    last = restores[-1]
    if depth >= MAX_RESTORE_DEPTH:
        raise PointInTimeError(f"{table}: the journal's restores nest deeper than {MAX_RESTORE_DEPTH}")
    restored_from = backups.get(last.source)
    if restored_from is None:
        raise PointInTimeError(
            f"{table} cannot be rebuilt across the restore at journal {last.seq} "
            f"({format_instant(last.committed_at)}): the backup it restored, {last.source}, is gone. "
            "Restore as of an instant after a later backup, or before that restore. The table is unchanged."
        )
    inner = _resolve(
        table, backups, journal, restored_from, last.through_seq or backup_position(restored_from), depth + 1
    )
    after = tuple(entry for entry in changes if entry.seq > last.seq and entry.kind == LOAD)
    return RestorePlan(
        table,
        inner.base,
        inner.base_position,
        inner.replays + after,
        through,
        None,
        (*inner.crossed_restores, last.seq),
    )


def missing_rows_files(plan: RestorePlan, exists) -> list[JournalEntry]:
    """The plan's loads whose rows file ``exists(name)`` does not find."""
    return [entry for entry in plan.replays if not entry.rows_file or not exists(entry.rows_file)]


def refuse_missing(plan: RestorePlan, missing: list[JournalEntry], container: str) -> None:
    if not missing:
        return
    shown = "; ".join(
        f"journal {entry.seq} (load of {entry.source} by run {entry.run_id}, "
        f"{format_instant(entry.committed_at)}): {container}/{entry.rows_file} is missing"
        for entry in missing[:5]
    )
    raise PointInTimeError(
        f"{plan.table} cannot be restored exactly as asked: the rows of {len(missing)} journaled "
        f"load(s) are gone ({shown}). Restore as of an instant before the first of them, or after "
        "a backup taken after it. The table is unchanged."
    )


# -- retention: what recovery still needs ---------------------------------------------------


def retention_position(backups: list[BackupRef], entries: list[JournalEntry]) -> int:
    """The journal position up to which no restore can need a journal row any more: the oldest
    kept backup's, lowered to the position of every kept backup that a later restore entry
    restored (crossing that restore replays from there). With no backup, nothing is released."""
    if not backups:
        return 0
    kept = {ref.name: ref for ref in backups}
    position = min(backup_position(ref) for ref in backups)
    changed = True
    while changed:  # a lower position brings more restore entries in
        changed = False
        for entry in entries:
            if entry.kind == RESTORE and entry.seq > position and entry.source in kept:
                crossed = entry.backup_position or 0
                if crossed < position:
                    position, changed = crossed, True
    return position


def journal_gaps(
    backups: list[BackupRef], entries: list[JournalEntry], rows_files: set[str]
) -> list[JournalEntry]:
    """The loads a restore may still replay whose rows file is not among ``rows_files``."""
    position = retention_position(backups, entries)
    return [
        entry
        for entry in entries
        if entry.seq > position
        and entry.kind == LOAD
        and (not entry.rows_file or entry.rows_file not in rows_files)
    ]


def describe_gaps(table: str, gaps: list[JournalEntry], container: str) -> str:
    shown = "; ".join(
        f"journal {entry.seq} (load of {entry.source} by run {entry.run_id}, "
        f"{format_instant(entry.committed_at)}): {container}/{entry.rows_file} is missing"
        for entry in gaps[:5]
    )
    more = f" (first 5 of {len(gaps)})" if len(gaps) > 5 else ""
    return (
        f"{table}: {len(gaps)} journaled load(s) cannot be replayed{more}: {shown}. A restore as of "
        "an instant after them fails until a backup taken after them exists: take one now"
    )


def checked_batches(entry: JournalEntry, batches: Iterable, container: str) -> Iterator:
    """A load's rows file, as CSV batches, checked as they pass against its journal row: once
    all have passed, the sha256 of their bytes and their row count must be the journal's, else
    ``PointInTimeError`` (raised inside the restore's transaction: nothing is committed)."""
    digest, rows = hashlib.sha256(), 0
    for batch in batches:
        digest.update(batch.data)
        rows += batch.rows
        yield batch
    if digest.hexdigest() != entry.rows_sha256 or rows != entry.rows:
        raise PointInTimeError(
            f"{container}/{entry.rows_file} (the rows of journal {entry.seq}, load of {entry.source}) "
            f"holds {rows} rows with sha256 {digest.hexdigest()}; the journal recorded "
            f"{entry.rows} rows with sha256 {entry.rows_sha256}. It was changed after the load; "
            "the table is unchanged."
        )


__all__ = [
    "ROWS_FILE_COMPRESSION",
    "PointInTimeError",
    "RestorePlan",
    "backup_position",
    "missing_rows_files",
    "plan_as_of",
    "plan_backup",
    "prune_journal",
    "refuse_missing",
    "checked_batches",
    "describe_gaps",
    "journal_gaps",
    "retention_position",
]


def prune_journal(table: str, store=None, warehouse=None) -> dict:
    """Forget the table's journal rows no restore can need any more (``retention_position``, from
    the backups retention kept), but its newest, and delete their rows files; returns what went.
    Journal rows go first: a rows file is deleted only once no journal row names it."""
    store = store or default_blob_store()
    warehouse = warehouse or default_warehouse()
    entries = journal.entries(warehouse, table)
    # The newest row stays, whatever it is: the next change's seq is the newest + 1, and must
    # never be a seq a backup's position already counts.
    last = entries[-1].seq if entries else 0
    position = min(retention_position(list_backups(table, store), entries), last - 1)
    released = [entry for entry in entries if entry.seq <= position]
    if not released:
        return {"forgotten_through": 0, "rows_files_deleted": 0}
    journal.forget(warehouse, table, position)
    still_named = {entry.rows_file for entry in entries if entry.seq > position}
    container, deleted = settings.raw_container(), 0
    for name in {entry.rows_file for entry in released if entry.rows_file} - still_named:
        if store.exists(container, name):
            store.delete(container, name)
            deleted += 1
    log.info(
        "%s: journal rows up to %d forgotten (%d), %d rows files deleted: no kept backup needs them",
        table,
        position,
        len(released),
        deleted,
    )
    return {"forgotten_through": position, "rows_files_deleted": deleted}
