"""What a field of an extract means: the one definition of an integer, an instant (its shape is
``instants.INSTANT_PATTERN``) and of the whitespace around a field, used by every pass over a file
(the first pass that counts ids, the validation, the valid rows written for the load), so that
they can never disagree.

Column-wise, on Arrow string arrays (C++): per-value Python work here would cost more than the
whole validation.
"""

from __future__ import annotations

import functools

from hr_pipeline.contract.instants import INSTANT_PATTERN

# An integer field, once trimmed: an optional sign and ASCII digits, leading zeros allowed
# ("1", "+1" and "0000000000000000001" are one value).
INTEGER_PATTERN = r"^[+-]?[0-9]+$"
# Whitespace around a field: exactly the characters Python's str.strip() removes (str.isspace():
# the Unicode White_Space characters and the ASCII separators U+001C-U+001F).
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
WHITESPACE_CLASS = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]"  # for RE2


def normalized_text(column):
    """A string column as the rules see it: each value trimmed of whitespace, an empty value
    null. Copies only where needed: most extracts have nothing to trim and no empty field."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if (
        edge_whitespace_possible(column)
        and pc.any(pc.match_substring_regex(column, f"^{WHITESPACE_CLASS}|{WHITESPACE_CLASS}$")).as_py()
    ):
        column = pc.utf8_trim(column, characters=WHITESPACE)
    if pc.any(pc.equal(column, "")).as_py():
        column = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
    return column


def integer_values(text):
    """The integer each value of ``text`` (normalized) holds, as float64; NaN where the value is
    missing or not an integer. float64 holds every 32-bit integer exactly; a larger value only
    has to fail the range rule, and does."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    try:  # a column of plain unsigned or negative integers (the common case) in one cast
        if pc.any(pc.match_substring(text, "x", ignore_case=True)).as_py():
            raise pa.ArrowInvalid("hexadecimal")  # Arrow's cast reads "0x1F" as 31: not an integer here
        values = pc.cast(text, pa.int64()).cast(pa.float64())
    except pa.ArrowInvalid:  # "+5", text, or beyond int64: the pattern decides what is an integer
        shaped = pc.if_else(
            pc.match_substring_regex(text, INTEGER_PATTERN), text, pa.scalar(None, pa.string())
        )
        values = pc.cast(shaped, pa.float64())
    values = values.to_numpy(zero_copy_only=False)
    # An integer of more than 308 digits reads as infinite, which the range check would not see
    # (GX skips non-finite values): a finite value beyond every range stands for it.
    return np.where(np.isinf(values), np.copysign(1e300, values), values)


_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def parse_instants(text):
    """Instants written as the contract says (``INSTANT_PATTERN``), parsed at C speed.

    Returns ``(is_real, instants)``: ``is_real`` is null where the text does not have the shape
    (the format rule reports those), true where it is a real calendar instant of years
    0001-9999 (what SQL Server's DATETIME2 holds), false otherwise (2021-02-30, 24:00:00,
    23:59:60); ``instants`` holds each real one as ``timestamp[us, UTC]`` (a finer fraction is
    truncated), null elsewhere.

    Arrow's cast checks the calendar but fails the whole array on one impossible instant, so it
    is tried first; only if it fails is the calendar checked field by field, vectorised.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    shaped = pc.fill_null(pc.match_substring_regex(text, INSTANT_PATTERN), False)
    if (pc.max(pc.utf8_length(text)).as_py() or 0) > len("2021-11-07T02:48:42.123456Z"):
        text = pc.replace_substring_regex(text, r"(\.[0-9]{6})[0-9]+Z$", r"\1Z")  # to microseconds
    candidate = pc.if_else(shaped, text, "2000-01-01T00:00:00Z")
    utc = pa.timestamp("us", tz="UTC")
    try:
        parsed = pc.cast(candidate, utc)
        real = pc.and_(shaped, pc.invert(pc.starts_with(candidate, "0000"))).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        real = _real_calendar_instants(candidate, shaped.to_numpy(zero_copy_only=False))
        parsed = pc.cast(pc.if_else(pa.array(real), candidate, pa.scalar(None, pa.string())), utc)
    is_real = pa.array(real, mask=~shaped.to_numpy(zero_copy_only=False))
    instants = pc.if_else(pa.array(real), parsed, pa.scalar(None, utc))
    return is_real, instants


def _real_calendar_instants(candidate, shaped):
    """Which of ``candidate`` (each shaped like ``INSTANT_PATTERN``) are real calendar instants
    of years 0001-9999, as a numpy boolean array, ``shaped`` and-ed in."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    def field(start: int, stop: int):
        return pc.cast(pc.utf8_slice_codeunits(candidate, start, stop), pa.int32()).to_numpy()

    year, month, day = field(0, 4), field(5, 7), field(8, 10)
    hour, minute, second = field(11, 13), field(14, 16), field(17, 19)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_ok = (month >= 1) & (month <= 12)
    days = np.asarray(_DAYS_IN_MONTH)[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    return (
        shaped
        & (year >= 1)
        & month_ok
        & (day >= 1)
        & (day <= days)
        & (hour < 24)
        & (minute < 60)
        & (second < 60)
    )


def canonical_instants(instants, text=None):
    """``timestamp[us, UTC]`` values as the canonical text, e.g. 2021-11-07T02:48:42.000000Z
    (four-digit years, zero-padded, for every year 0001-9999).

    ``text``, if given, is what the instants were parsed from: when every one of them is written
    to the second without a fraction (the contract's own form) the canonical text is that text
    with ".000000" put in, which is cheaper than formatting.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if text is not None and len(text) and text.null_count == 0:
        lengths = pc.min_max(pc.utf8_length(text)).as_py()
        if lengths["min"] == lengths["max"] == len("2021-11-07T02:48:42Z"):
            return pc.binary_join_element_wise(pc.utf8_slice_codeunits(text, 0, 19), ".000000Z", "")

    text = pc.cast(instants.cast(pa.timestamp("us")), pa.string())  # "2021-11-07 02:48:42.000000"
    return pc.binary_join_element_wise(pc.replace_substring(text, " ", "T", max_replacements=1), "Z", "")


# Bytes that can start (end) a ``WHITESPACE`` character in UTF-8: the ASCII ones, and the lead
# (last) bytes of U+0085, U+00A0, U+1680, U+2000-U+205F, U+3000.
_ASCII_WHITESPACE = bytes(range(9, 14)) + bytes(range(0x1C, 0x21))
_MAY_START_WHITESPACE = _ASCII_WHITESPACE + b"\xc2\xe1\xe2\xe3"
_MAY_END_WHITESPACE = _ASCII_WHITESPACE + bytes(range(0x80, 0xC0))


@functools.cache
def _byte_table(members: bytes):
    """A lookup table of the 256 byte values: true for ``members``."""
    import numpy as np

    table = np.zeros(256, dtype=bool)
    table[list(members)] = True
    return table


def edge_whitespace_possible(column) -> bool:
    """Whether any value of an Arrow string array may start or end with whitespace, judged from
    its first and last bytes (numpy over Arrow's buffers, no copy). False means certainly not;
    true sends the column to the exact check (a non-ASCII last letter, say, gives true)."""
    import numpy as np
    import pyarrow as pa

    if not len(column) or column.type != pa.string():
        return bool(len(column))
    _, offsets_buffer, data_buffer = column.buffers()
    if data_buffer is None or not data_buffer.size:
        return False
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[column.offset : column.offset + len(column) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    if not len(data):
        return False
    # An empty value's "first byte" is the next value's, its "last" the previous one's: only
    # ever a false alarm, never a miss.
    firsts = np.minimum(offsets[:-1] - offsets[0], len(data) - 1)
    lasts = np.maximum(offsets[1:] - offsets[0] - 1, 0)
    return bool(
        _byte_table(_MAY_START_WHITESPACE)[data[firsts]].any()
        or _byte_table(_MAY_END_WHITESPACE)[data[lasts]].any()
    )
