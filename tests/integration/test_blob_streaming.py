"""Streaming reads and writes of blobs, against Azurite: what the ingest tasks hand over through.

A valid-rows file is written while it is produced (blocks staged by a background thread, the blob
committed at the end) and read back in ranges, fetched ahead by another thread.
"""

from __future__ import annotations

import os

import pytest

from hr_pipeline.settings import raw_container


def test_a_streamed_upload_is_the_bytes_written_in_order(blob_store):
    data = os.urandom(1_000_003)
    with blob_store.streaming_upload(raw_container(), "streamed.bin", block_bytes=64 * 1024) as upload:
        for start in range(0, len(data), 10_007):  # writes smaller and larger than a block
            upload.write(data[start:start + 10_007])
        assert not blob_store.exists(raw_container(), "streamed.bin")  # not before it is committed
    assert upload.bytes_written == len(data)
    assert blob_store.download_bytes(raw_container(), "streamed.bin") == data


def test_an_empty_streamed_upload_is_an_empty_blob(blob_store):
    with blob_store.streaming_upload(raw_container(), "empty.csv"):
        pass
    assert blob_store.download_bytes(raw_container(), "empty.csv") == b""


def test_a_failure_while_writing_leaves_no_blob(blob_store):
    with pytest.raises(ValueError, match="validation stopped"):
        with blob_store.streaming_upload(raw_container(), "half.csv", block_bytes=1024) as upload:
            upload.write(b"x" * 10_000)
            raise ValueError("validation stopped")
    assert not blob_store.exists(raw_container(), "half.csv")


def test_an_upload_error_reaches_the_writer(blob_store):
    upload = blob_store.streaming_upload("no-such-container-here", "x.csv", block_bytes=1024)
    blob_store.container("no-such-container-here").delete_container()
    with pytest.raises(RuntimeError, match="Upload of x.csv failed"):
        for _ in range(100):
            upload.write(b"y" * 1024)
        upload.close()


@pytest.mark.parametrize(("size", "block_bytes"), [(50, 1), (20_001, 1000), (3_000_001, 4 << 20)])
def test_blocks_read_in_ranges_are_the_blob(blob_store, size, block_bytes):
    data = os.urandom(size)
    blob_store.upload_bytes(raw_container(), "ranged.bin", data)
    assert b"".join(blob_store.iter_blocks(raw_container(), "ranged.bin", block_bytes)) == data
    assert b"".join(blob_store.prefetched_blocks(raw_container(), "ranged.bin")) == data


def test_prefetching_a_missing_blob_raises_in_the_reader(blob_store):
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        list(blob_store.prefetched_blocks(raw_container(), "missing.csv"))
