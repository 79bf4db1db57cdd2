"""Streaming reads and writes of blobs, against Azurite: what the ingest tasks hand over through.

A valid-rows file is written while it is produced (blocks staged by a background thread, the blob
committed at the end) and read back in ranges, fetched ahead by another thread.
"""

from __future__ import annotations

import os

import pytest

from hr_pipeline.runtime.settings import raw_container


def test_a_streamed_upload_is_the_bytes_written_in_order(blob_store):
    data = os.urandom(1_000_003)
    with blob_store.streaming_upload(raw_container(), "streamed.bin", block_bytes=64 * 1024) as upload:
        for start in range(0, len(data), 10_007):  # writes smaller and larger than a block
            upload.write(data[start : start + 10_007])
        assert not blob_store.exists(raw_container(), "streamed.bin")  # not before it is committed
    assert upload.bytes_written == len(data)
    assert blob_store.download_bytes(raw_container(), "streamed.bin") == data


def test_an_empty_streamed_upload_is_an_empty_blob(blob_store):
    with blob_store.streaming_upload(raw_container(), "empty.csv"):
        pass
    assert blob_store.download_bytes(raw_container(), "empty.csv") == b""


def test_a_failure_while_writing_leaves_no_blob(blob_store):
    def write_then_fail() -> None:
        with blob_store.streaming_upload(raw_container(), "half.csv", block_bytes=1024) as upload:
            upload.write(b"x" * 10_000)
            raise ValueError("validation stopped")

    with pytest.raises(ValueError, match="^validation stopped$"):
        write_then_fail()
    assert not blob_store.exists(raw_container(), "half.csv")


def test_an_upload_error_reaches_the_writer(blob_store):
    upload = blob_store.streaming_upload("no-such-container-here", "x.csv", block_bytes=1024)
    blob_store.container("no-such-container-here").delete_container()

    def write_all_then_close() -> None:
        for _ in range(100):
            upload.write(b"y" * 1024)
        upload.close()

    with pytest.raises(RuntimeError, match="Upload of x.csv failed"):
        write_all_then_close()


@pytest.mark.parametrize(("size", "block_bytes"), [(50, 1), (20_001, 1000), (3_000_001, 4 << 20)])
def test_blocks_read_in_ranges_are_the_blob(blob_store, size, block_bytes):
    data = os.urandom(size)
    blob_store.upload_bytes(raw_container(), "ranged.bin", data)
    assert b"".join(blob_store.iter_blocks(raw_container(), "ranged.bin", block_bytes)) == data
    assert b"".join(blob_store.prefetched_blocks(raw_container(), "ranged.bin")) == data


def test_prefetching_a_missing_blob_raises_in_the_reader(blob_store):
    from hr_pipeline.storage.blob_store import BlobNotFoundError

    with pytest.raises(BlobNotFoundError, match="missing.csv"):
        list(blob_store.prefetched_blocks(raw_container(), "missing.csv"))


def test_a_write_after_the_upload_is_closed_is_refused(blob_store):
    with blob_store.streaming_upload(raw_container(), "closed.csv") as upload:
        upload.write(b"a,b\n")
    with pytest.raises(ValueError, match="after its upload was closed"):
        upload.write(b"c,d\n")
    assert blob_store.download_bytes(raw_container(), "closed.csv") == b"a,b\n"


@pytest.mark.parametrize("size", [0, 1, 3_000_001])
def test_the_compressed_hand_over_reads_back_as_the_bytes_written(blob_store, size):
    """The valid rows travel zstd-compressed: written through ``compressed_stream``, read back
    decompressed block by block, whatever the sizes of writes and blocks."""
    from hr_pipeline.ingest.run import VALID_ROWS_COMPRESSION
    from hr_pipeline.ingest.validate import compressed_stream

    data = os.urandom(size // 2) + b'1,"Ann"\n' * (size // 16)
    with blob_store.streaming_upload(raw_container(), "rows.csv.zst", block_bytes=64 * 1024) as upload:
        compressed = compressed_stream(upload)
        for start in range(0, len(data), 100_003):
            compressed.write(data[start : start + 100_003])
        compressed.close()
    assert upload.bytes_written < max(len(data), 100)  # the repeated rows compress
    blocks = list(
        blob_store.decompressed_blocks(
            raw_container(), "rows.csv.zst", VALID_ROWS_COMPRESSION, block_bytes=1 << 20
        )
    )
    assert all(len(block) <= 1 << 20 for block in blocks)
    assert b"".join(blocks) == data


def test_a_compressed_upload_stopped_by_an_error_leaves_no_blob(blob_store):
    """As when the rows invariant fails half way through a file: nothing is committed, and the
    compressed stream left behind cannot commit it later either."""
    import gc

    from hr_pipeline.ingest.validate import compressed_stream

    left_behind = []  # the compressed stream, kept alive past the failed upload

    def write_then_fail() -> None:
        with blob_store.streaming_upload(raw_container(), "refused.csv.zst", block_bytes=1024) as upload:
            left_behind.append(compressed_stream(upload))
            left_behind[0].write(os.urandom(50_000))
            raise ValueError("invariant broken")

    with pytest.raises(ValueError, match="^invariant broken$"):
        write_then_fail()
    left_behind.clear()
    gc.collect()
    assert not blob_store.exists(raw_container(), "refused.csv.zst")
