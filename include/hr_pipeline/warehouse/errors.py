"""The warehouse's errors, by what the caller can do about them.

Each dialect adapter knows its driver's exceptions and maps them here (``Adapter.typed_error``):

- ``WarehouseDataError``: the warehouse refused the rows sent (a constraint, a value it cannot
  store; SQLSTATE classes 21, 22 and 23). The same rows fail the same way again: an ingest sets
  the file aside with the reason, a restore is refused and leaves the table as it was.
- ``WarehouseUnavailableError``: the warehouse could not be reached or dropped the work (a
  connection, a timeout, a deadlock victim): passing, so the task is retried.

Any other error passes through unchanged.
"""

from __future__ import annotations


class WarehouseError(RuntimeError):
    """A warehouse operation failed."""


class WarehouseDataError(WarehouseError):
    """The warehouse refused the rows sent; retrying the same rows cannot help."""


class WarehouseUnavailableError(WarehouseError):
    """The warehouse could not do the work now; a retry may."""


DATA_SQLSTATE_CLASSES = ("21", "22", "23")  # cardinality, data exception, integrity constraint


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE a driver put on ``error`` (psycopg's ``sqlstate``, psycopg2's ``pgcode``)."""
    for candidate in (
        getattr(error, "sqlstate", None),
        getattr(error, "pgcode", None),
        getattr(getattr(error, "diag", None), "sqlstate", None),
    ):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
