"""The thread helpers the ingest tasks overlap their work with: order kept, errors not lost."""

from __future__ import annotations

import threading

import pytest

from hr_pipeline.streams import BlocksFile, WriteBehind, read_ahead


def test_read_ahead_keeps_the_order_and_raises_the_producers_error_in_the_consumer():
    assert list(read_ahead(iter(range(100)), 1, "t")) == list(range(100))

    def failing():
        yield 1
        raise ValueError("parse failed at row 7")

    with pytest.raises(ValueError, match="row 7"):
        list(read_ahead(failing(), 2, "t"))


def test_a_consumer_stopping_early_stops_the_producer():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    for item in read_ahead(items(), 1, "t"):
        if item == 3:
            break
    for thread in threading.enumerate():
        if thread.name == "t":
            thread.join(timeout=5)
    assert len(produced) < 10


def test_write_behind_writes_every_item_in_order_before_the_block_is_left():
    written = []
    with WriteBehind(written.append, 1, "w") as behind:
        for i in range(50):
            behind.put(i)
    assert written == list(range(50))


def test_a_write_error_reaches_the_producer_and_later_items_are_not_written():
    written = []

    def write(item):
        if item == 2:
            raise OSError("upload failed")
        written.append(item)

    with pytest.raises(OSError, match="upload failed"):
        with WriteBehind(write, 1, "w") as behind:
            for i in range(20):
                behind.put(i)
    assert written == [0, 1]


def test_items_still_waiting_are_dropped_when_the_producer_fails():
    import time

    written = []
    behind = None

    def write(item):
        # Hold the first write until the producer's error has reached the context's exit.
        deadline = time.monotonic() + 30
        while item == "first" and not behind._discard and time.monotonic() < deadline:
            time.sleep(0.01)
        written.append(item)

    with pytest.raises(RuntimeError, match="invariant"):
        with WriteBehind(write, 1, "w") as behind:
            behind.put("first")  # taken by the writer, held
            behind.put("second")  # waiting in the queue
            raise RuntimeError("invariant broken")
    assert written == ["first"]


@pytest.mark.parametrize("sizes", [[], [0], [1, 0, 5], [4096, 3, 70000]])
def test_blocks_read_as_a_file_are_the_bytes_in_order(sizes):
    import io

    blocks = [bytes([n % 251]) * n for n in sizes]
    assert io.BufferedReader(BlocksFile(blocks), 1000).read() == b"".join(blocks)
