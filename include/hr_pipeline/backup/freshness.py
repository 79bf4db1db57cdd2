"""Are the backups fresh? Each table's newest backup in the backups container, and its age.

``check_backup_freshness`` (hourly) calls ``check_freshness``: a table whose newest backup is older
than ``MAX_BACKUP_AGE`` (26 hours: the daily backup plus two hours of slack), or that has no backup
at all, is stale, and the task fails with ``StaleBackups``, whose first line names each stale
table with its newest backup and that backup's age; the DAG's failure alert carries it.

A table whose journal has a gap, a load a restore may still replay (after the oldest kept
backup) whose archived rows file is missing, fails the check too: a restore as of an instant
after that load would be refused until a newer backup exists (``point_in_time.journal_gaps``).

It looks at what is really in the container (``hr_pipeline.backup.backups.list_backups``: the blob names,
and the exact instant in each blob's metadata), so it notices whatever left a table without a
recent backup: ``backup_tables`` paused, failing, not scheduled, a table left out of its runs, or
backups deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from hr_pipeline.contract.instants import format_instant
from hr_pipeline.contract.tables import TABLE_NAMES

log = logging.getLogger(__name__)

MAX_BACKUP_AGE = timedelta(hours=26)


class StaleBackups(AirflowFailException):
    """Some table's newest backup is too old (or missing). Not retried: it would fail the same."""

    def __init__(self, message: str, tables: Iterable[str]):
        super().__init__(message)
        self.tables = tuple(tables)  # the failure alert names these tables


@dataclass(frozen=True)
class Freshness:
    """One table's newest backup, and whether it is recent enough."""

    table: str
    newest: str | None  # blob name
    instant: datetime | None
    age: timedelta | None
    max_age: timedelta
    gap: str | None = None  # journaled loads whose rows a restore would need, missing

    @property
    def stale(self) -> bool:
        return self.age is None or self.age > self.max_age or self.gap is not None

    def describe(self) -> str:
        if self.newest is None:
            return f"{self.table}: no backup"
        text = f"{self.table}: newest backup {self.newest} is {format_age(self.age)} old"
        return f"{text}; {self.gap}" if self.gap else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "newest": self.newest,
            "instant": format_instant(self.instant) if self.instant else None,
            "age_hours": round(self.age.total_seconds() / 3600, 2) if self.age is not None else None,
            "stale": self.stale,
            "journal_gap": self.gap,
        }


def format_age(age: timedelta | None) -> str:
    """``5.2 h``, ``30.0 h (1.3 days)``."""
    if age is None:
        return "unknown"
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} h" + (f" ({hours / 24:.1f} days)" if hours >= 48 else "")


def table_freshness(
    tables: Iterable[str] = TABLE_NAMES,
    max_age: timedelta = MAX_BACKUP_AGE,
    now: datetime | None = None,
    store=None,
    container: str | None = None,
    warehouse=None,
) -> list[Freshness]:
    """The newest backup of each table (listed in the backups container) and its age at ``now``."""
    from hr_pipeline.backup import backups as backup

    now = now or datetime.now(timezone.utc)
    store = store or backup.default_blob_store()
    results = []
    for table in tables:
        refs = backup.list_backups(table, store=store, container=container)
        newest = max(refs, key=lambda ref: ref.instant) if refs else None
        results.append(
            Freshness(
                table=table,
                newest=newest.name if newest else None,
                instant=newest.instant if newest else None,
                age=(now - newest.instant) if newest else None,
                max_age=max_age,
                gap=journal_gap(table, refs, store, warehouse) if refs else None,
            )
        )
    return results


def journal_gap(table: str, refs: list, store, warehouse=None) -> str | None:
    """What is missing from the table's journal for a restore to reach any instant, if anything."""
    from hr_pipeline.backup import backups as backup
    from hr_pipeline.backup import point_in_time
    from hr_pipeline.runtime import settings
    from hr_pipeline.storage.layout import journal_rows_prefix
    from hr_pipeline.warehouse import journal

    warehouse = warehouse or backup.default_warehouse()
    container = settings.raw_container()
    rows_files = {blob.name for blob in store.list(container, journal_rows_prefix(table))}
    gaps = point_in_time.journal_gaps(refs, journal.entries(warehouse, table), rows_files)
    return point_in_time.describe_gaps(table, gaps, container) if gaps else None


def stale_message(results: Iterable[Freshness], max_age: timedelta = MAX_BACKUP_AGE) -> str | None:
    """One line naming each stale table, or None when every table is fresh."""
    stale = [result for result in results if result.stale]
    if not stale:
        return None
    return f"Stale backups (newest older than {format_age(max_age)}): " + "; ".join(
        result.describe() for result in stale
    )


def check_freshness(
    tables: Iterable[str] = TABLE_NAMES,
    max_age: timedelta = MAX_BACKUP_AGE,
    now: datetime | None = None,
    store=None,
    container: str | None = None,
    warehouse=None,
) -> list[dict[str, Any]]:
    """Raise ``StaleBackups`` when a table's newest backup is older than ``max_age`` or missing;
    otherwise return each table's newest backup and age."""
    results = table_freshness(tables, max_age, now, store, container, warehouse)
    for result in results:
        log.info("%s%s", result.describe(), " (STALE)" if result.stale else "")
    message = stale_message(results, max_age)
    if message:
        raise StaleBackups(message, [result.table for result in results if result.stale])
    return [result.as_dict() for result in results]
