"""Filling in an ``Observed`` from the rows the pipeline rejected: read back from a rejects file
(the integration tests) or handed over by the validator (the unit fuzz), each with its reason text
("row N: <reason>; <reason>...") and its fields."""

from __future__ import annotations

from tests.reference.contract import Observed, UnparsedReason, parse_reason_text


def note_rejected(observed: Observed, table: str, reason: str, fields: list[str]) -> int | None:
    """Record one rejected row: its record number, its (rule, column) set and its fields. Returns
    the record number; a reason that does not parse, or a record rejected twice, goes to
    ``observed.problems`` (a reason that does not parse returns None)."""
    try:
        number, found = parse_reason_text(reason, table)
    except UnparsedReason as error:
        observed.problems.append(str(error)[:300])
        return None
    if number in observed.rejected:
        observed.problems.append(f"record {number} is rejected twice")
    observed.rejected[number] = found
    observed.fields[number] = fields
    return number
