"""Properties of the blob layout's derived names and of the claim's name encoding, for any table,
run and path (Hypothesis, bounded by counts, no service):

- every derived name is at most 1,024 characters, counted in UTF-16 code units (what SQL Server's
  NVARCHAR counts, and at least the count of code points), so Azure takes it however it counts;
- two different paths never share a derived name of one kind (a file's rejects or archived copy
  never replaces another file's);
- a name that fits is the plain folder + path + suffix, and every name stays in its folder;
- the ledger's ``fit_text`` cuts a text to its column's length in the same units, never
  splitting a character;
- ``claims.encode_name`` gives ASCII that Azure's metadata takes, and ``decode_name`` inverts it.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hr_pipeline.contract.tables import CONTRACTS
from hr_pipeline.storage import layout
from hr_pipeline.storage.claims import decode_name, encode_name
from hr_pipeline.storage.landing import marker_name
from hr_pipeline.warehouse.ledger import COLUMNS, fit_text

PROPERTIES = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
DAY = "2024-02-29"


def utf16_length(name: str) -> int:
    return len(name.encode("utf-16-le", "surrogatepass")) // 2


def _stem_and_suffix(path: str) -> tuple[str, str]:
    """The rejects file's name as the layout documents it: ``<path without .csv>.rejects.csv``,
    ``.CSV`` keeping its case, other paths whole with ``-rejects.csv``."""
    if path[-4:].lower() == ".csv":
        return path[:-4], ".rejects" + path[-4:]
    return path, "-rejects.csv"


def derived(table: str, run_id: str, path: str) -> dict[str, tuple[str, str, str, str]]:
    """Each derived name of the file ``incoming/<table>/<path>``, with what it is made of when it
    fits: {function: (name, folder, path or stem, suffix)}."""
    source = layout.incoming_prefix(table) + path
    run = layout.processing_prefix(table, run_id)
    archived = f"archive/{table}/{DAY}/{layout.run_folder(run_id)}/"
    rejected = f"rejected/{table}/{DAY}/{layout.run_folder(run_id)}/"
    stem, rejects_suffix = _stem_and_suffix(path)
    return {
        "claimed_name": (
            layout.claimed_name(table, run_id, source),
            layout.claimed_prefix(table, run_id),
            path,
            "",
        ),
        "valid_rows_name": (layout.valid_rows_name(table, run_id, source), run, path, ".valid.csv.zst"),
        "pending_rejects_name": (
            layout.pending_rejects_name(table, run_id, source),
            run,
            path,
            ".rejects.csv",
        ),
        "load_rejects_name": (
            layout.load_rejects_name(table, run_id, source),
            run,
            path,
            ".load-rejects.csv",
        ),
        "archive_name": (layout.archive_name(table, DAY, run_id, source), archived, path, ""),
        "rejects_name": (layout.rejects_name(table, DAY, run_id, source), rejected, stem, rejects_suffix),
        "unreadable_file_name": (layout.unreadable_file_name(table, DAY, run_id, source), rejected, path, ""),
        "set_aside_reason_name": (
            layout.set_aside_reason_name(table, DAY, run_id, source),
            rejected,
            path,
            ".reason.txt",
        ),
        "landing.marker_name": (marker_name(source), f"processing/landing/{table}/", path, ""),
    }


# Tables: the contracts' and any identifier the ledger's table_name (64 characters) takes.
tables = st.one_of(
    st.sampled_from(sorted(CONTRACTS)),
    st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True),
)
# Airflow run ids: up to 250 characters, any of them.
run_ids = st.text(min_size=1, max_size=250)
# What file names are made of: every code point (surrogates too: the layout must not care), with
# the separators and suffixes that meet the layout's own more often than chance would.
characters = st.one_of(
    st.characters(),
    st.integers(0xD800, 0xDFFF).map(chr),  # lone surrogates, which st.characters() leaves out
    st.sampled_from(["/", ".", "~", ".csv", ".CSV", "😀", "職", "\n", "#", "%", "?"]),
)
paths = st.one_of(
    st.lists(characters, min_size=1, max_size=40).map("".join),
    # long: across the limit, with characters of one and two UTF-16 code units
    st.tuples(st.sampled_from(["x", "職", "😀", "a/", "é."]), st.integers(300, 1100), characters).map(
        lambda t: t[0] * t[1] + t[2]
    ),
)


@st.composite
def path_pairs(draw) -> tuple[str, str]:
    """Two different paths, often close: one extending the other, differing in case or only at
    the head of a long path (whose names keep the same tail)."""
    first = draw(paths)
    kind = draw(st.sampled_from(["any", "extended", "case", "same tail"]))
    if kind == "extended":
        second = first + draw(st.sampled_from([".csv", ".CSV", "/x", ".rejects", "-rejects", "~", " "]))
    elif kind == "case":
        second = first.swapcase() if first.swapcase() != first else first + "X"
    elif kind == "same tail":
        second = draw(st.sampled_from(["y", "z/", "😀"])) + first
    else:
        second = draw(paths)
    if second == first:
        second = first + "2"
    return first, second


@PROPERTIES
@given(table=tables, run_id=run_ids, path=paths)
def test_every_derived_name_fits_azure_and_is_plain_when_it_can_be(table, run_id, path):
    for function, (name, folder, middle, suffix) in derived(table, run_id, path).items():
        assert utf16_length(name) <= layout.MAX_BLOB_NAME, (function, utf16_length(name))
        plain = folder + middle + suffix
        if utf16_length(plain) <= layout.MAX_BLOB_NAME:
            assert name == plain, function
            continue
        # too long: in its folder, with its suffix, a digest of the path, then the path's end
        assert name.startswith(folder), function
        assert name.endswith(suffix), function
        digest, tail = name[len(folder) : len(name) - len(suffix)].split("~", 2)[1:]
        assert re.fullmatch("[0-9a-f]{24}", digest), function
        assert middle.endswith(tail), function


@PROPERTIES
@given(table=tables, run_id=run_ids, pair=path_pairs())
def test_different_paths_never_share_a_derived_name(table, run_id, pair):
    first, second = (derived(table, run_id, path) for path in pair)
    for function in first:
        assert first[function][0] != second[function][0], (function, pair)


@PROPERTIES
@given(run_id=run_ids, path=paths)
def test_a_source_outside_the_tables_folder_is_refused(run_id, path):
    with pytest.raises(ValueError, match="is not under incoming/jobs/"):
        layout.claimed_name("jobs", run_id, "incoming/departments/" + path)


names = st.one_of(
    st.text(max_size=1100),
    st.lists(characters, max_size=300).map("".join),  # lone surrogates too
    st.sampled_from(["", "incoming/jobs/a\nb.csv", "incoming/jobs/職務 😀 #%?&+.csv"]),
)


@settings(PROPERTIES, max_examples=500)
@given(name=names)
def test_claim_metadata_encodes_any_name_as_ascii_and_back(name):
    encoded = encode_name(name)
    assert re.fullmatch("[A-Za-z0-9_=-]*", encoded)  # ASCII, and no character HTTP headers mind
    assert decode_name(encoded) == name


@PROPERTIES
@given(text=st.one_of(st.none(), st.text(max_size=1100), st.text("a😀職", min_size=1000, max_size=1100)))
def test_ledger_text_is_cut_to_its_column_in_utf16_code_units(text):
    fitted = fit_text(text, "detail")
    if not text:
        assert fitted is None
        return
    assert text.startswith(fitted)
    assert utf16_length(fitted) <= COLUMNS["detail"][1]
    if fitted != text:  # cut only where the next character would not fit
        assert utf16_length(text[: len(fitted) + 1]) > COLUMNS["detail"][1]
