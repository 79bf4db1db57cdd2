"""The background helpers the ingest, load, upload and download overlap their work with: each is
compared with the plain loop it stands for, on generated item counts, depths, thread counts and
failure points (bounded by count), so the order, the items worked on and the error all match."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hr_pipeline.runtime.streams import BlocksFile, InBackground, read_ahead

FAILURE = st.one_of(st.none(), st.integers(min_value=0, max_value=60))


class Stop(Exception):
    """The error a generated producer or worker raises at its failure point."""


def produced(count: int, fail_at: int | None, log: list[int] | None = None):
    for item in range(count):
        if item == fail_at:
            raise Stop(f"failed at item {item}")
        if log is not None:
            log.append(item)
        yield item


def plain_consumption(count: int, fail_at: int | None) -> tuple[list[int], str | None]:
    """What a consumer of ``produced`` sees without a thread: the items, then the error."""
    seen: list[int] = []
    try:
        for item in produced(count, fail_at):
            seen.append(item)
    except Stop as error:
        return seen, str(error)
    return seen, None


@settings(max_examples=120, deadline=None, derandomize=True)
@given(count=st.integers(0, 60), depth=st.integers(0, 4), fail_at=FAILURE)
def test_read_ahead_gives_what_the_plain_loop_gives(count, depth, fail_at):
    seen: list[int] = []
    error = None
    try:
        for item in read_ahead(produced(count, fail_at), depth, "ahead"):
            seen.append(item)
    except Stop as raised:
        error = str(raised)
    assert (seen, error) == plain_consumption(count, fail_at)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(depth=st.integers(0, 4), stop_after=st.integers(0, 20))
def test_a_consumer_stopping_early_stops_and_closes_the_producer(depth, stop_after):
    made: list[int] = []
    closed = []

    def items():
        try:
            yield from produced(1000, None, made)
        finally:
            closed.append(True)

    for item in read_ahead(items(), depth, "ahead"):
        if item == stop_after:
            break
    assert closed == [True]  # the producer's resources are released
    assert len(made) <= stop_after + 1 + depth + 1  # no more than ``depth`` items beyond the one in hand


def plain_work(count: int, fail_at: int | None) -> tuple[list[int], str | None]:
    """What a plain loop calling ``work`` on each item does: items worked on in order, then the error."""
    done: list[int] = []
    for item in range(count):
        if item == fail_at:
            return done, f"failed at item {item}"
        done.append(item)
    return done, None


def run_in_background(count: int, fail_at: int | None, waiting: int, threads: int):
    done: list[int] = []
    lock = threading.Lock()

    def work(item: int) -> None:
        if item == fail_at:
            raise Stop(f"failed at item {item}")
        with lock:
            done.append(item)

    error = None
    try:
        with InBackground(work, waiting=waiting, name="work", threads=threads) as background:
            for item in range(count):
                background.put(item)
    except Stop as raised:
        error = str(raised)
    return done, error


@settings(max_examples=150, deadline=None, derandomize=True)
@given(count=st.integers(0, 60), waiting=st.integers(0, 4), fail_at=FAILURE)
def test_one_background_thread_works_as_the_plain_loop(count, waiting, fail_at):
    assert run_in_background(count, fail_at, waiting, threads=1) == plain_work(count, fail_at)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(count=st.integers(0, 60), waiting=st.integers(0, 4), threads=st.integers(2, 4), fail_at=FAILURE)
def test_several_background_threads_work_on_each_item_once_and_raise_the_error(
    count, waiting, threads, fail_at
):
    done, error = run_in_background(count, fail_at, waiting, threads)
    expected_done, expected_error = plain_work(count, fail_at)
    assert error == expected_error
    assert len(done) == len(set(done))  # no item twice
    if error is None:
        assert sorted(done) == expected_done  # every item, in some order
    else:  # items queued once the error happened are dropped: some may be missing
        assert fail_at not in done
        assert set(done) <= set(range(count))


@pytest.mark.parametrize("threads", [1, 3])
def test_no_more_items_wait_than_asked(threads):
    waiting = 2
    release = threading.Event()
    started = threading.Semaphore(0)
    put = 0

    def work(item: int) -> None:
        started.release()
        release.wait(30)

    background = InBackground(work, waiting=waiting, name="bounded", threads=threads)
    producer_done = threading.Event()

    def produce() -> None:
        nonlocal put
        for item in range(20):
            background.put(item)
            put += 1
        producer_done.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    for _ in range(threads):
        assert started.acquire(timeout=30)
    deadline = time.monotonic() + 30
    while put < threads + waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # a producer not held back would go on meanwhile
    assert put == threads + waiting  # it waits once that many are in hand
    release.set()
    producer.join(30)
    background.close()
    assert producer_done.is_set()
    assert put == 20


def test_items_still_queued_are_dropped_when_the_producer_fails():
    worked: list[str] = []
    first_started = threading.Event()
    release = threading.Event()

    def work(item: str) -> None:
        if item == "first":
            first_started.set()
            release.wait(30)
        worked.append(item)

    def unblock_soon() -> None:
        time.sleep(0.2)
        release.set()

    def produce_then_fail() -> None:
        with InBackground(work, waiting=1, name="w") as background:
            background.put("first")  # taken by the worker, held
            assert first_started.wait(30)
            background.put("second")  # queued
            threading.Thread(target=unblock_soon, daemon=True).start()
            raise RuntimeError("invariant broken")

    with pytest.raises(RuntimeError, match="^invariant broken$"):
        produce_then_fail()
    assert worked == ["first"]


@pytest.mark.parametrize("sizes", [[], [0], [1, 0, 5], [4096, 3, 70000]])
def test_blocks_read_as_a_file_are_the_bytes_in_order(sizes):
    import io

    blocks = [bytes([n % 251]) * n for n in sizes]
    assert io.BufferedReader(BlocksFile(blocks), 1000).read() == b"".join(blocks)
