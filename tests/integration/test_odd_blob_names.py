"""Any blob name Azure takes is ingested, or set aside whole with a reason, by the real
ingest_table DAG (dag.test() on Azurite, SQLite and PostgreSQL warehouses).

Hypothesis makes the names (bounded by a count of examples, derandomized): spaces, Latin-1 and
other Unicode (CJK, emoji), newline, tab and carriage return, ``# % ? & +`` and other characters
URLs reserve, dots inside segments, sub-folders, and names up to Azure's 1,024 characters. Each
example drops 2-4 such files and one plain file for ``jobs`` into a container of its own, runs the
DAG, and checks that the run succeeded, every valid row is in the table, each file is archived
(or set aside whole in rejected/ with a ``.reason.txt``), the ledger has one row per file naming it
exactly, and nothing is left under incoming/ or processing/. A second test moves one blob whose
URL is longer than Copy Blob takes.

What the strategy leaves out, and why (found by uploading each with the azure-storage-blob SDK to
Azurite, or documented by Azure):

- U+0000-U+001F other than newline, tab and carriage return, U+FFFE and U+FFFF: the upload
  succeeds, but Azurite's List Blobs then fails with HTTP 500 (it writes the name into an XML
  listing, and XML 1.0 has no such characters), so its folder can no longer be listed at all;
- the other control characters (U+007F-U+009F): Azurite takes them, but Azure's naming rules do
  not allow control characters (they name U+0081), so no such file can land in Azure;
- ``\\``: Azurite stores it as ``/`` (the listing shows a different name); Azure's rules say not
  to use it;
- a path segment that is ``.`` or ``..``: the upload itself fails (HTTP 403
  AuthorizationFailure, "Server failed to authenticate the request": the service resolves the
  segment after the request was signed);
- lone surrogates: the SDK cannot send the name (UnicodeEncodeError encoding it as UTF-8);
- a name ending with ``.`` or ``/``: Azure's rules say to avoid them (a name ending with ``/`` is a
  folder marker, which the ingest leaves alone);
- private-use and unassigned code points, which Azure's rules call invalid, and more than 254
  path segments.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.integration.ingest_helpers import blob_names, raw_container, run_ingest

pytestmark = pytest.mark.usefixtures("airflow_db")

PREFIX = "incoming/jobs/"
MAX_NAME = 1024  # Azure's limit on a blob name, in characters

_named = st.sampled_from(
    [*"abcXYZ019 -_.,;:=@!$'()[]{}~^`#%?&+*<>|\"", "\n", "\t", "\r", "é", "Å", "ß", "職", "務", "😀", "🎉"]
)
_any = st.characters(exclude_categories=["Cs", "Cc", "Co", "Cn"], exclude_characters="/\\\ufffe\uffff")
segments = st.text(st.one_of(_named, _any), min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


@st.composite
def short_paths(draw) -> str:
    folders = draw(st.lists(st.one_of(segments, st.just("")), max_size=3))  # "a//b" too
    last = draw(segments) + draw(st.sampled_from([".csv", ".CSV", ".txt", ""]))
    return "/".join([*folders, last])


@st.composite
def long_paths(draw) -> str:
    """A name of 900 to 1,024 characters, with at most 254 segments."""
    head = "".join(segment + "/" for segment in draw(st.lists(segments, max_size=3)))
    end = draw(segments) + ".csv"
    fill = draw(st.sampled_from(["x", "職", "😀", "%", " ", "é", "\n", "abcd/"]))
    room = draw(st.integers(900, MAX_NAME)) - len(PREFIX) - len(head) - len(end)
    return head + (fill * room)[:room] + end


paths = st.one_of(short_paths(), short_paths(), long_paths()).filter(
    lambda p: not p.endswith((".", "/")) and p != "plain.csv" and len(p.split("/")) <= 254 - 2
)

ODD = settings(
    max_examples=4,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)


def ledger_rows(warehouse, run_id: str) -> list[dict]:
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute(f"SELECT * FROM ingest_files WHERE run_id = {warehouse.adapter.marker}", (run_id,))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def jobs_rows(warehouse) -> dict[int, str]:
    with warehouse.transaction() as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT id, job FROM jobs")
        return dict(cursor.fetchall())


_ids = iter(range(1, 1_000_000, 10))


def extract(with_bad_row: bool) -> tuple[bytes, dict[int, str], str]:
    """A jobs extract of two valid rows (ids unique to the test session) and, when asked, a row
    that is rejected (its id, returned, is not an integer)."""
    first = next(_ids)
    rows = {first: f"Job {first}, quoted", first + 1: f"Job {first + 1} 職 😀"}
    text = "".join(f'{key},"{value}"\n' for key, value in rows.items())
    bad = f"x{first}" if with_bad_row else ""
    return (text + (f"{bad},Bad id\n" if bad else "")).encode(), rows, bad


@ODD
@given(files=st.lists(st.tuples(paths, st.booleans()), min_size=2, max_size=4, unique_by=lambda f: f[0]))
@example(files=[("a\nb.csv", False), ("職務/😀 #%?&+ ../a..b.csv", True)])
# names that differ only in case or in ".csv" each keep their own rejects file
@example(files=[("A.csv", True), ("A.CSV", True), ("A", True), ("e\u0301\u200b//\ufeffb.csv", False)])
@example(files=[("😀" * (MAX_NAME - len(PREFIX) - 4) + ".csv", True), ("x/" + "職" * 1000 + ".csv", False)])
def test_any_name_azure_takes_is_ingested_or_set_aside_whole(blob_store, warehouse, files):
    with pytest.MonkeyPatch.context() as patch:
        container = f"raw-{uuid.uuid4().hex[:8]}"  # one per example: it sees only its own files
        patch.setenv("AZURE_BLOB_CONTAINER_RAW_DATA", container)
        blob_store.ensure_container(container)
        expected: dict[int, str] = {}
        dropped: dict[str, tuple[bytes, str]] = {}
        for path, with_bad_row in [*files, ("plain.csv", False)]:
            data, rows, bad = extract(with_bad_row)
            blob_store.upload_bytes(container, PREFIX + path, data)
            dropped[PREFIX + path] = (data, bad)
            expected.update(rows)

        run = run_ingest("jobs", max_reject_ratio=1, wait_minutes=0)

        assert str(run.state) == "success"
        loaded = jobs_rows(warehouse)
        assert {key: loaded.get(key) for key in expected} == expected
        ledger = ledger_rows(warehouse, run.run_id)
        assert sorted(row["file"] for row in ledger) == sorted(dropped)
        everything = set(blob_names(blob_store))
        reasons = [
            blob_store.download_bytes(container, name).decode()
            for name in everything
            if name.startswith("rejected/") and name.endswith(".reason.txt")
        ]
        assert len({row["rejects_file"] for row in ledger if row["rejects_file"]}) == sum(
            1 for _, bad in dropped.values() if bad
        )
        for row in ledger:
            data, bad = dropped[row["file"]]
            assert row["archived_as"] in everything, row
            assert blob_store.download_bytes(container, row["archived_as"]) == data
            if row["status"] == "loaded":
                assert row["archived_as"].startswith("archive/jobs/"), row
                assert (row["loaded"], row["rejected"]) == (2, int(bool(bad))), row
            else:  # set aside whole, saying why
                assert row["archived_as"].startswith("rejected/jobs/"), row
                assert any(reason.startswith(row["file"] + ": ") for reason in reasons), row
            if bad:
                rejects = blob_store.download_bytes(container, row["rejects_file"]).decode()
                assert f'"{bad}","Bad id"' in rejects, row
        assert blob_names(blob_store, "incoming/") == []
        assert blob_names(blob_store, "processing/") == []


# Copy Blob takes a source URL of up to 2 KiB; percent-encoded, each of these is 9 characters.
LONG_SOURCE = PREFIX + "職" * 1000 + ".csv"


def test_a_source_whose_url_copy_blob_cannot_take_is_moved_through_this_process(blob_store):
    from hr_pipeline.storage.blob_store import COPY_SOURCE_MAX_URL, BlobSourceChangedError

    container = raw_container()
    destination = "archive/jobs/" + "務" * 1000 + ".csv"
    data = b"1,Nurse\n" * 700_000  # several blocks
    blob_store.upload_bytes(container, LONG_SOURCE, data, metadata={"kept": "yes"})
    assert len(blob_store.container(container).get_blob_client(LONG_SOURCE).url) > COPY_SOURCE_MAX_URL
    etag = blob_store.properties(container, LONG_SOURCE).etag

    blob_store.upload_bytes(container, LONG_SOURCE, data)  # rewritten since it was listed
    with pytest.raises(BlobSourceChangedError):
        blob_store.move(container, LONG_SOURCE, destination, if_match_etag=etag)
    assert blob_names(blob_store, "archive/") == []

    blob_store.upload_bytes(container, LONG_SOURCE, data, metadata={"kept": "yes"})
    blob_store.move(container, LONG_SOURCE, destination)
    assert blob_names(blob_store) == [destination]
    assert blob_store.download_bytes(container, destination) == data
    assert blob_store.properties(container, destination).metadata["kept"] == "yes"
    blob_store.move(container, LONG_SOURCE, destination)  # a retry after it completed: done
