"""The scan loop's store step on its own thread: one ordered writer of finished tiles.

``run_scan`` hands each tile (its record, its new flakes and, if it is to be saved, its image) to
:class:`TileWriter` and goes on to detect the next tile. The writer saves the image, then calls
``store.record_tile``, strictly in submission order. After the first failed write it writes nothing
more (it drops what is queued), so the stored tiles are always the first tiles of the scan order:
a resumed scan redoes the rest and ends with exactly the flakes of an uninterrupted one. The
failure is raised in the scan's thread by the next :meth:`TileWriter.submit` or by
:meth:`TileWriter.close`.

The store is used by one thread at a time: the writer thread between the writer's start and
``close``, the scan's thread before and after.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from flakefinder.domain import FlakeRecord, TileRecord
    from flakefinder.scan.store import ScanStore


@dataclass(frozen=True)
class TileWrite:
    """One finished tile: saved as ``record.image_path`` first when ``image`` is given."""

    record: TileRecord
    flakes: list[FlakeRecord]
    image: np.ndarray | None = None


def write_tile(store: ScanStore, scan_id: int, item: TileWrite) -> None:
    if item.image is not None and item.record.image_path is not None:
        from flakefinder.imaging import save_image

        save_image(item.record.image_path, item.image)
    store.record_tile(scan_id, item.record, item.flakes)


_STOP = object()


class TileWriter:
    """Writes tiles to ``store`` in order on one thread (or inline when ``threaded`` is False).

    At most ``max_queued`` tiles wait; :meth:`submit` blocks while the queue is full, so a store
    slower than the detector slows the scan down instead of filling memory with images.
    """

    def __init__(
        self, store: ScanStore, scan_id: int, *, threaded: bool = True, max_queued: int = 4
    ) -> None:
        self._store = store
        self._scan_id = scan_id
        self._error: BaseException | None = None
        self._discard = False
        self._stop_sent = False
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, max_queued))
        self._thread: threading.Thread | None = None
        self.busy_s = 0.0  # time spent writing (image files and store calls)
        if threaded:
            self._thread = threading.Thread(target=self._run, name="flakefinder-store", daemon=True)
            self._thread.start()

    @property
    def error(self) -> BaseException | None:
        """The exception of the failed write, if one failed."""
        return self._error

    def submit(self, item: TileWrite) -> None:
        """Queue ``item`` for writing; raises the error of an earlier failed write, if any."""
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._write(item)
            if self._error is not None:
                raise self._error
            return
        if self._stop_sent:
            raise RuntimeError("TileWriter is closed")
        self._queue.put(item)

    def close(self, *, discard: bool = False) -> BaseException | None:
        """Write what is queued (drop it with ``discard``), end the thread; return the write error.

        A KeyboardInterrupt while waiting drops what is still queued (the write in progress
        finishes) and is not raised. Safe to call more than once.
        """
        try:
            self._stop(discard)
        except KeyboardInterrupt:
            self._stop(True)
        return self._error

    def _stop(self, discard: bool) -> None:
        if discard:
            self._discard = True
        if self._thread is None:
            return
        if not self._stop_sent:
            self._queue.put(_STOP)
            self._stop_sent = True
        self._thread.join()

    def _write(self, item: TileWrite) -> None:
        if self._error is not None or self._discard:
            return
        t0 = time.perf_counter()
        try:
            write_tile(self._store, self._scan_id, item)
        except BaseException as e:
            self._error = e
        finally:
            self.busy_s += time.perf_counter() - t0

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, TileWrite)
            self._write(item)
