"""Small stream helpers shared by the blob and CSV code: producing ahead in a thread, and
blocks of bytes read as a file."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")


def read_ahead(items: Iterable[Item], depth: int, name: str) -> Iterator[Item]:
    """``items``, produced by a background thread up to ``depth`` items ahead of the consumer,
    so that producing (a download, Arrow parsing a CSV, both outside the GIL) overlaps with
    consuming. An error in the producer is raised in the consumer; a consumer that stops early
    stops the producer at its next item."""
    import queue
    import threading

    produced: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        produced.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            produced.put(end)
        except BaseException as error:  # handed to the consumer, raised there
            produced.put(error)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while (item := produced.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


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


class WriteBehind:
    """Hands items to ``write`` in a background thread, up to ``depth`` waiting, so that writing
    (Arrow's CSV writer and compressor, outside the GIL) overlaps with producing the next item.
    Used as a context manager: leaving it waits for the writes; an error in ``write`` is raised
    in the producer (at its next ``put`` or on leaving), and after an error, or when the block is
    left by an error, the items still waiting are dropped, not written."""

    def __init__(self, write, depth: int, name: str):
        import queue
        import threading

        self._write = write
        self._pending: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._discard = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        end = WriteBehind
        while (item := self._pending.get()) is not end:
            if self._error is not None or self._discard:
                continue
            try:
                self._write(item)
            except BaseException as error:  # raised in the producer
                self._error = error

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item) -> None:
        self._raise_if_failed()
        self._pending.put(item)

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self._discard = kind is not None
        self._pending.put(WriteBehind)
        self._thread.join()
        if kind is None:
            self._raise_if_failed()
