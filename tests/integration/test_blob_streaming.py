"""Streaming reads and writes of blobs, against Azurite: what the ingest tasks hand over through.

A valid-rows file is written while it is produced (blocks staged by a background thread, the blob
committed at the end) and read back by the SDK's streaming download, fetched ahead by another
thread. The download is compared with the plain loop of one ranged read per block on generated
blob and chunk sizes across chunk boundaries (bounded by count), and with a blob replaced while
it is read; its memory is measured on a blob of many chunks.
"""

from __future__ import annotations

import os
import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hr_pipeline.runtime.settings import raw_container
from hr_pipeline.storage import blob_store as blob_store_module
from hr_pipeline.storage.blob_store import BlobChangedError


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


# -- the SDK's streaming download against the plain loop of ranged reads ---------------------------


def ranged_blocks(data: bytes, chunk: int) -> list[bytes]:
    """What the plain loop of one ranged GET per block returns: the blob cut at every ``chunk``."""
    return [data[start : start + chunk] for start in range(0, len(data), chunk)]


@st.composite
def chunk_and_size(draw) -> tuple[int, int]:
    """A chunk size and a blob size around its boundaries (0, 1, chunk - 1, chunk, chunk + 1,
    several chunks, and anything up to five chunks and a bit)."""
    chunk = draw(st.sampled_from([1, 7, 1000, 4096]))
    size = draw(
        st.one_of(
            st.sampled_from([0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk, 3 * chunk + 1]),
            st.integers(0, 5 * chunk + 3),
        )
    )
    return chunk, size


STREAMED = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    # One store (one Azurite, fresh containers) serves every example: each writes its own blob.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@STREAMED
@given(case=chunk_and_size(), seed=st.integers(0, 2**32 - 1))
@example(case=(1000, 0), seed=0)
@example(case=(1000, 1), seed=0)
@example(case=(1000, 999), seed=0)
@example(case=(1000, 1000), seed=0)
@example(case=(1000, 1001), seed=0)
@example(case=(1000, 4000), seed=0)
@example(case=(1000, 4321), seed=0)
def test_the_streamed_download_is_the_plain_ranged_loop(blob_store, tmp_path, case, seed):
    chunk, size = case
    data = random.Random(seed).randbytes(size)
    name = f"streamed/{chunk}-{size}-{seed}.bin"
    blob_store.upload_bytes(raw_container(), name, data)

    assert list(blob_store.iter_blocks(raw_container(), name, chunk)) == ranged_blocks(data, chunk)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blob_store_module, "READ_CHUNK_BYTES", chunk)
        assert list(blob_store.prefetched_blocks(raw_container(), name, depth=2)) == ranged_blocks(
            data, chunk
        )
        path = tmp_path / f"{chunk}-{size}-{seed}.bin"
        assert blob_store.download_to_file(raw_container(), name, path) == size
    assert path.read_bytes() == data


@STREAMED
@given(
    chunk=st.sampled_from([1, 7, 1000]),
    chunks=st.integers(2, 6),
    replaced_after=st.integers(1, 5),
    new_size=st.integers(0, 7000),
)
def test_a_blob_replaced_mid_read_fails_naming_it_and_mixes_no_versions(
    blob_store, chunk, chunks, replaced_after, new_size
):
    replaced_after = min(replaced_after, chunks - 1)
    data = os.urandom(chunk * chunks)
    name = f"replaced/{chunk}-{chunks}-{replaced_after}.bin"
    blob_store.upload_bytes(raw_container(), name, data)

    blocks = blob_store.iter_blocks(raw_container(), name, chunk)
    read = [next(blocks) for _ in range(replaced_after)]
    blob_store.upload_bytes(raw_container(), name, os.urandom(new_size))
    with pytest.raises(BlobChangedError, match=f"Cannot read {raw_container()}/{name}: it was replaced"):
        read.extend(blocks)
    assert read == ranged_blocks(data, chunk)[:replaced_after]


def test_a_blob_replaced_while_it_is_read_ahead_fails_the_reader(blob_store, monkeypatch):
    """The read-ahead thread holds at most ``depth + 1`` blocks beyond the one handed over: a
    blob of more blocks than that is still being read when it is replaced."""
    chunk, depth = 1000, 2
    monkeypatch.setattr(blob_store_module, "READ_CHUNK_BYTES", chunk)
    data = os.urandom(chunk * (depth + 5))
    blob_store.upload_bytes(raw_container(), "ahead.bin", data)
    blocks = blob_store.prefetched_blocks(raw_container(), "ahead.bin", depth=depth)
    read = [next(blocks)]
    blob_store.upload_bytes(raw_container(), "ahead.bin", os.urandom(len(data)))
    with pytest.raises(BlobChangedError, match="ahead.bin"):
        read.extend(blocks)
    assert b"".join(read) == data[: len(read) * chunk]


@pytest.mark.parametrize("depth", [None, 2])
def test_memory_is_a_few_chunks_whatever_the_blob_size(blob_store, monkeypatch, depth):
    """A blob of 96 chunks of 256 KiB: Python's allocations peak at a few chunks, not at the blob
    (nor at the SDK's default first GET of 32 MiB).

    Per GET in flight they count about 10 chunks: the chunk received, its pieces, and the list
    the SDK gathers them in, which ``list()`` sizes by the response's length (8 bytes a byte,
    reserved, hardly ever touched); then the blocks held (read ahead, handed over)."""
    chunk, chunks = 256 << 10, 96
    monkeypatch.setattr(blob_store_module, "READ_CHUNK_BYTES", chunk)
    with blob_store.streaming_upload(raw_container(), "large.bin", block_bytes=4 << 20) as upload:
        for _ in range(chunks):
            upload.write(os.urandom(chunk))
    if depth is None:
        blocks, held = blob_store.iter_blocks(raw_container(), "large.bin", chunk), 2
    else:
        blocks, held = blob_store.prefetched_blocks(raw_container(), "large.bin", depth=depth), depth + 4
    total = 0
    tracemalloc.start()
    try:
        for block in blocks:
            total += len(block)
            del block
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == chunks * chunk
    assert peak < (12 + held) * chunk, f"peak of {peak / chunk:.1f} chunks"
