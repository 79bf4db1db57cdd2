"""``BlobStore.move`` (archiving a file) against Azurite: a server-side asynchronous Copy Blob of
one pinned version of the source, polled to completion, then a delete of that same version.

Azurite finishes every copy at once, so the copies here never stay pending; how a pending,
failed or stuck copy is handled (``wait_for_copy``) is tested at the end on a stand-in for the
destination blob that reports those states, which Azurite cannot be made to produce.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from hr_pipeline.runtime.settings import raw_container
from hr_pipeline.storage.blob_store import (
    BlobMoveError,
    BlobSourceChangedError,
    BlobSourceMissingError,
    BlobStore,
    wait_for_copy,
)

SOURCE = "incoming/hired_employees/hired_employees.csv"
DESTINATION = "archive/hired_employees/2026-01-02/hired_employees.csv"


def blob(store, name):
    return store.container(raw_container()).get_blob_client(name)


def test_a_large_blob_of_many_blocks_is_moved_byte_for_byte(blob_store):
    """~20 MB written as 5 MB blocks (a real extract is written the same way, only bigger): the
    server-side copy has no size limit (Copy Blob From URL, used before, stops at 256 MiB)."""
    data = os.urandom(20_000_003)
    with blob_store.streaming_upload(raw_container(), SOURCE, block_bytes=5 << 20) as upload:
        for start in range(0, len(data), 1 << 20):
            upload.write(data[start : start + (1 << 20)])
    blocks, _ = blob(blob_store, SOURCE).get_block_list()
    assert len(blocks) == 4

    blob_store.move(raw_container(), SOURCE, DESTINATION)

    assert not blob_store.exists(raw_container(), SOURCE)
    assert blob_store.download_bytes(raw_container(), DESTINATION) == data
    copied_blocks, _ = blob(blob_store, DESTINATION).get_block_list()
    assert [b.size for b in copied_blocks] == [b.size for b in blocks]


def test_a_small_blob_is_moved_with_its_metadata(blob_store):
    blob_store.upload_bytes(
        raw_container(), SOURCE, b"1,Ann,2021-01-01T00:00:00Z,1,1\n", metadata={"origin": "hr"}
    )
    blob_store.move(raw_container(), SOURCE, DESTINATION)
    assert not blob_store.exists(raw_container(), SOURCE)
    assert blob_store.download_bytes(raw_container(), DESTINATION) == b"1,Ann,2021-01-01T00:00:00Z,1,1\n"
    assert blob_store.properties(raw_container(), DESTINATION).metadata == {"origin": "hr"}


def test_an_empty_blob_is_moved(blob_store):
    blob_store.upload_bytes(raw_container(), SOURCE, b"")
    blob_store.move(raw_container(), SOURCE, DESTINATION)
    assert blob_store.download_bytes(raw_container(), DESTINATION) == b""
    assert not blob_store.exists(raw_container(), SOURCE)


def test_the_move_of_the_version_expected_goes_ahead(blob_store):
    blob_store.upload_bytes(raw_container(), SOURCE, b"v1\n")
    etag = blob(blob_store, SOURCE).get_blob_properties().etag
    blob_store.move(raw_container(), SOURCE, DESTINATION, if_match_etag=etag)
    assert blob_store.download_bytes(raw_container(), DESTINATION) == b"v1\n"
    assert not blob_store.exists(raw_container(), SOURCE)


def test_a_source_rewritten_since_it_was_read_is_not_moved(blob_store):
    blob_store.upload_bytes(raw_container(), SOURCE, b"v1\n")
    etag = blob(blob_store, SOURCE).get_blob_properties().etag
    blob_store.upload_bytes(raw_container(), SOURCE, b"v2, dropped after validation of v1\n")

    with pytest.raises(BlobSourceChangedError) as refused:
        blob_store.move(raw_container(), SOURCE, DESTINATION, if_match_etag=etag)

    assert f"{raw_container()}/{SOURCE}" in str(refused.value)
    assert etag in str(refused.value)
    assert blob_store.download_bytes(raw_container(), SOURCE) == b"v2, dropped after validation of v1\n"
    assert not blob_store.exists(raw_container(), DESTINATION)


class RewritingStore(BlobStore):
    """A store whose source blob is rewritten by "someone else" right after it is copied."""

    def _copy_version(self, source_client, destination_client, etag, where, timeout, poll_interval):
        copied = BlobStore._copy_version(
            source_client, destination_client, etag, where, timeout, poll_interval
        )
        source_client.upload_blob(b"v2\n", overwrite=True)
        return copied


def test_a_source_rewritten_during_the_move_is_copied_as_it_was_and_not_deleted(blob_store):
    blob_store.upload_bytes(raw_container(), SOURCE, b"v1\n")
    with pytest.raises(BlobSourceChangedError, match="left in place, not deleted") as refused:
        RewritingStore().move(raw_container(), SOURCE, DESTINATION)
    assert f"{raw_container()}/{SOURCE}" in str(refused.value)
    assert blob_store.download_bytes(raw_container(), DESTINATION) == b"v1\n"
    assert blob_store.download_bytes(raw_container(), SOURCE) == b"v2\n"


def test_a_missing_source_is_named_in_the_error(blob_store):
    with pytest.raises(BlobSourceMissingError) as missing:
        blob_store.move(raw_container(), SOURCE, DESTINATION)
    message = str(missing.value)
    assert f"the source blob {raw_container()}/{SOURCE} does not exist" in message
    assert f"{raw_container()}/{DESTINATION}" in message
    assert not blob_store.exists(raw_container(), DESTINATION)


def test_a_move_retried_after_it_completed_is_done(blob_store):
    blob_store.upload_bytes(raw_container(), SOURCE, b"rows\n")
    blob_store.move(raw_container(), SOURCE, DESTINATION)
    blob_store.move(raw_container(), SOURCE, DESTINATION)  # the retry of a try that stopped late
    assert blob_store.download_bytes(raw_container(), DESTINATION) == b"rows\n"


def test_a_move_retried_after_its_copy_but_before_its_delete_completes(blob_store):
    blob_store.upload_bytes(raw_container(), SOURCE, b"rows\n")
    blob(blob_store, DESTINATION).start_copy_from_url(blob(blob_store, SOURCE).url)  # first try
    blob_store.move(raw_container(), SOURCE, DESTINATION)
    assert not blob_store.exists(raw_container(), SOURCE)
    assert blob_store.download_bytes(raw_container(), DESTINATION) == b"rows\n"


def test_a_missing_source_whose_destination_holds_other_content_is_an_error(blob_store):
    """A destination that exists but was not copied from the source is not an earlier move."""
    blob_store.upload_bytes(raw_container(), DESTINATION, b"something else\n")
    with pytest.raises(BlobSourceMissingError, match="does not exist"):
        blob_store.move(raw_container(), SOURCE, DESTINATION)


# -- a copy that stays pending: the states Azurite never reports ---------------------------------


class PendingCopy:
    """Stands in for the destination blob client: ``get_blob_properties`` reports the copy
    states given, the last one for ever; ``abort_copy`` is recorded."""

    def __init__(self, *states, copy_id="copy-1"):
        self.states = list(states)
        self.copy_id = copy_id
        self.aborted = None

    def get_blob_properties(self):
        status, description = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        copy = SimpleNamespace(
            id=self.copy_id, status=status, status_description=description, progress="5/10"
        )
        return SimpleNamespace(copy=copy, size=10)

    def abort_copy(self, copy_id):
        self.aborted = copy_id


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_a_pending_copy_is_polled_until_it_succeeds():
    clock = FakeClock()
    destination = PendingCopy(("pending", None), ("pending", None), ("success", None))
    properties = wait_for_copy(
        destination, "copy-1", "raw/a to raw/b", timeout=60, clock=clock, sleep=clock.sleep
    )
    assert properties.copy.status == "success"
    assert clock.now == pytest.approx(0.5 + 1.0)  # the interval doubles


@pytest.mark.parametrize("status", ["failed", "aborted"])
def test_a_copy_that_fails_names_both_blobs(status):
    destination = PendingCopy(("pending", None), (status, "500 InternalError"))
    clock = FakeClock()
    with pytest.raises(BlobMoveError, match=f"Copy of raw/a to raw/b {status}: 500 InternalError"):
        wait_for_copy(destination, "copy-1", "raw/a to raw/b", timeout=60, clock=clock, sleep=clock.sleep)


def test_a_copy_still_pending_after_the_wait_is_aborted():
    destination = PendingCopy(("pending", None))
    clock = FakeClock()
    with pytest.raises(BlobMoveError, match=r"raw/a to raw/b did not finish within 30 s .*aborted"):
        wait_for_copy(destination, "copy-1", "raw/a to raw/b", timeout=30, clock=clock, sleep=clock.sleep)
    assert destination.aborted == "copy-1"
    assert 30 <= clock.now < 31


def test_a_copy_replaced_by_another_is_an_error():
    destination = PendingCopy(("pending", None), copy_id="copy-2")
    with pytest.raises(BlobMoveError, match="replaced by another copy"):
        wait_for_copy(destination, "copy-1", "raw/a to raw/b", timeout=30)


def test_a_missing_blob_is_named_in_the_error(blob_store):
    from hr_pipeline.storage.blob_store import BlobNotFoundError

    with pytest.raises(
        BlobNotFoundError, match=f"{raw_container()}/processing/none.csv: the blob does not exist"
    ):
        list(blob_store.iter_blocks(raw_container(), "processing/none.csv"))
    with pytest.raises(BlobNotFoundError, match="nowhere.csv"):
        blob_store.download_bytes(raw_container(), "nowhere.csv")


def test_a_blob_rewritten_while_it_is_read_fails_the_read(blob_store):
    from hr_pipeline.storage.blob_store import BlobAccessError, BlobChangedError

    blob_store.upload_bytes(raw_container(), "big.bin", b"a" * 3000)
    blocks = blob_store.iter_blocks(raw_container(), "big.bin", block_bytes=1000)
    assert next(blocks) == b"a" * 1000
    blob_store.upload_bytes(raw_container(), "big.bin", b"b" * 3000)
    with pytest.raises(BlobChangedError, match=f"{raw_container()}/big.bin: it was replaced") as raised:
        next(blocks)
    assert isinstance(raised.value, BlobAccessError)  # what callers already catch


def test_a_source_with_a_url_too_long_for_copy_blob_is_streamed_through_of_its_version(blob_store):
    """Past ``COPY_SOURCE_MAX_URL`` the copy reads the source here, chunk by chunk, pinned to the
    version the move started from, with its metadata."""
    import hr_pipeline.storage.blob_store as blob_store_module

    long_source = "incoming/jobs/" + "é" * 400 + ".csv"  # %C3%A9 in the URL: 6 characters each
    data = os.urandom(3 * 1000 + 7)
    blob_store.upload_bytes(raw_container(), long_source, data, metadata={"origin": "hr"})
    assert len(blob(blob_store, long_source).url) > blob_store_module.COPY_SOURCE_MAX_URL
    blob_store.move(raw_container(), long_source, DESTINATION)
    assert not blob_store.exists(raw_container(), long_source)
    assert blob_store.download_bytes(raw_container(), DESTINATION) == data
    assert blob_store.properties(raw_container(), DESTINATION).metadata["origin"] == "hr"
