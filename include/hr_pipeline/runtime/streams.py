"""Running work beside the caller, and blocks of bytes read as a file.

Two shapes of overlap, both on ``concurrent.futures``:

- ``read_ahead``: a producer (a download, Arrow parsing a CSV, both outside the GIL) runs ahead of
  its consumer;
- ``InBackground``: items handed to worker threads (a CSV writer, a block upload, a warehouse
  connection each) while the caller produces the next.

Both keep memory bounded (a fixed number of items ahead or waiting), and neither loses an error:
the first one raised in a thread is raised in the caller.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")
_END = object()


def read_ahead(items: Iterable[Item], depth: int, name: str) -> Iterator[Item]:
    """``items`` in order, each produced in a background thread up to ``depth`` items before the
    consumer asks for it. An error in the producer is raised in the consumer at that item; a
    consumer that stops early stops the producer at its next item (and closes ``items``)."""
    iterator = iter(items)
    producer = ThreadPoolExecutor(1, thread_name_prefix=name)
    # One thread runs the next() calls in submission order: the iterator is never entered twice.
    ahead: deque[Future] = deque(producer.submit(next, iterator, _END) for _ in range(depth + 1))
    try:
        while (item := ahead.popleft().result()) is not _END:
            ahead.append(producer.submit(next, iterator, _END))
            yield item
    finally:
        producer.shutdown(wait=True, cancel_futures=True)
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # a download or file the producer held open


class InBackground(Generic[Item]):
    """Hands each item ``put`` to ``work`` on one of ``threads`` background threads, with at most
    ``waiting`` items queued beyond those being worked on, so that the work overlaps with the
    caller producing the next item and memory stays bounded.

    With one thread, items are worked on in the order put. Used as a context manager: leaving it
    waits for the work. The first error in ``work`` is raised in the caller, at its next ``put``
    or on leaving; once an error happened, or once the block is left by an error, the items still
    queued are dropped, not worked on.
    """

    def __init__(self, work: Callable[[Item], object], *, waiting: int, name: str, threads: int = 1):
        self._work = work
        self._slots = threading.Semaphore(waiting + threads)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._failure = threading.Lock()
        self._error: BaseException | None = None
        self._dropping = False

    def _run(self, item: Item) -> None:
        if not self._dropping:
            self._work(item)

    def _done(self, future: Future) -> None:
        self._slots.release()
        error = None if future.cancelled() else future.exception()
        if error is not None:
            with self._failure:
                self._dropping = True
                self._error = self._error or error

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: Item) -> None:
        self._raise_if_failed()
        self._slots.acquire()
        self._pool.submit(self._run, item).add_done_callback(self._done)

    def close(self) -> None:
        """Wait for the work of every item put; raise the first error."""
        self._pool.shutdown(wait=True)
        self._raise_if_failed()

    def cancel(self) -> None:
        """Drop the items still queued and wait for those being worked on."""
        self._dropping = True
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> InBackground[Item]:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.cancel()


class BlocksFile(io.RawIOBase):
    """An iterable of byte blocks read as a file (for readers that want one: Arrow's CSV reader
    and decompressor)."""

    def __init__(self, blocks: Iterable[bytes]):
        self._blocks = iter(blocks)
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not len(self._rest):
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._rest = memoryview(block)
        count = min(len(buffer), len(self._rest))
        buffer[:count] = self._rest[:count]
        self._rest = self._rest[count:]
        return count
