"""Instants as text: the one place their formats are written and read.

- ``INSTANT_PATTERN``: an instant in an extract, as the contract writes it (parsed column-wise by
  ``field_values.parse_instants``).
- ``parse_instant``: an operator's or a backup's metadata instant, any ISO 8601 form.
- ``format_instant``: fixed-width ISO 8601 UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, for metadata,
  messages and SQLite's timestamp columns; ``parse_stored_timestamp`` reads a stored one back.
- ``format_name_stamp`` / ``parse_name_stamp``: the instant in a backup's blob name.

Standard library only: DAG files import this through the modules that use it.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

# An ISO 8601 UTC instant as the contract writes it: date, 'T', time, optional fraction, 'Z'.
INSTANT_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z$"

# A backup name's stamp: ISO 8601 basic format, UTC, to the microsecond, so that two backups of a
# table never share a name. Backups written before had whole seconds (``20260102T030405Z``); they
# are still read.
NAME_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
NAME_STAMP_PATTERN = r"\d{8}T\d{6}(?:\.\d{6})?Z"
_SECONDS_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"

_UNPADDED_YEAR = re.compile(r"^(\d{1,3})-")


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant as an aware UTC datetime; a naive one is taken as UTC."""
    return as_utc(datetime.fromisoformat(text.strip()))


def format_instant(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC (a naive datetime is taken as UTC).

    Fixed width with the year zero-padded to 4 digits, so the text sorts as the instants do and
    SQLite's date functions read it (``strftime('%Y')`` leaves years before 1000 unpadded on
    glibc)."""
    value = as_utc(value)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:"
        f"{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}Z"
    )


def parse_stored_timestamp(value: Any) -> datetime:
    """A stored timestamp back to a naive UTC datetime: a driver's datetime, or SQLite's text
    (also the unpadded years ``1-01-01T...`` that older versions wrote for years before 1000)."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1]
    if (unpadded := _UNPADDED_YEAR.match(text)) is not None:
        text = unpadded[1].zfill(4) + text[unpadded.end(1) :]
    return datetime.fromisoformat(text)


def format_name_stamp(value: datetime) -> str:
    """The stamp of a backup's blob name: ``20260102T030405.123456Z`` (``NAME_STAMP_FORMAT``,
    the year zero-padded as in ``format_instant``)."""
    value = as_utc(value)
    return (
        f"{value.year:04d}{value.month:02d}{value.day:02d}T{value.hour:02d}{value.minute:02d}"
        f"{value.second:02d}.{value.microsecond:06d}Z"
    )


def parse_name_stamp(text: str) -> datetime:
    """A backup name's stamp (``NAME_STAMP_PATTERN``, with or without the microseconds) as an aware
    UTC datetime."""
    layout = NAME_STAMP_FORMAT if "." in text else _SECONDS_STAMP_FORMAT
    return datetime.strptime(text, layout).replace(tzinfo=timezone.utc)
