"""run_scan's ordered writer thread: overlap with detection, flush on interrupt, write errors."""

from __future__ import annotations

import threading

import pytest

from _scanfakes import MemoryStore, RectChip, ThresholdDetector, flake_key, render_rects
from flakefinder.domain import ImagingContext
from flakefinder.hardware.sim import simulated_microscope
from flakefinder.scan.loop import run_scan
from flakefinder.scan.plan import plan_raster
from flakefinder.scan.writer import TileWrite, TileWriter

FLAKES = (
    (5, 5, 12, 14),
    (50, 10, 58, 18),
    (60, 30, 75, 40),
    (100, 50, 140, 60),
    (30, 45, 38, 70),
    (140, 80, 150, 95),
)
CTX = ImagingContext(um_per_px=1.0)
PLAN = plan_raster([(0, 0), (160, 100)], 64, 64, overlap=0.25)  # 6 tiles


def scope():
    chip = RectChip(160.0, 100.0, flakes=FLAKES)
    return simulated_microscope(chip, renderer=render_rects, shape_px=(64, 64), um_per_px=1.0)


def scan(store, detector=None, **kw):
    return run_scan(
        scope(), detector or ThresholdDetector(), store, 1, PLAN, CTX, progress=False, **kw
    )


def reference() -> list[tuple]:
    ref = MemoryStore()
    scan(ref, background_store=False)
    return sorted(flake_key(f) for f in ref.flakes[1])


class EventStore(MemoryStore):
    """MemoryStore that logs every call in order, with the thread that made it."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, int | None, str]] = []

    def record_tile(self, scan_id, tile, flakes):
        self.log.append(("record", tile.tile_index, threading.current_thread().name))
        super().record_tile(scan_id, tile, flakes)

    def mark_interrupted(self, scan_id):
        self.log.append(("interrupted", None, threading.current_thread().name))
        super().mark_interrupted(scan_id)

    def finish_scan(self, scan_id):
        self.log.append(("finished", None, threading.current_thread().name))
        super().finish_scan(scan_id)


def test_results_identical_with_and_without_writer_thread():
    threaded, inline = EventStore(), EventStore()
    s1, s2 = scan(threaded), scan(inline, background_store=False)
    assert threaded.flakes == inline.flakes and threaded.tiles == inline.tiles
    assert threaded.record_order == inline.record_order == [t.index for t in PLAN]
    assert {t for kind, _, t in threaded.log if kind == "record"} == {"flakefinder-store"}
    assert {t for kind, _, t in inline.log if kind == "record"} == {"MainThread"}
    assert threaded.log[-1][0] == "finished" and threaded.finished == {1}
    assert (s1.flakes_stored, s1.duplicates_merged, s1.border_dropped) == (
        s2.flakes_stored,
        s2.duplicates_merged,
        s2.border_dropped,
    )
    assert s1.store_s >= 0 and s1.dedupe_s > 0


def test_storing_a_tile_overlaps_detecting_the_next():
    """record_tile(i) waits until detection of tile i+1 has begun: only possible off-thread."""
    started = [threading.Event() for _ in PLAN]

    class Detector(ThresholdDetector):
        def detect(self, image, context):
            started[self.calls].set()
            return super().detect(image, context)

    class WaitingStore(MemoryStore):
        overlapped = 0

        def record_tile(self, scan_id, tile, flakes):
            if tile.tile_index + 1 < len(PLAN):
                self.overlapped += started[tile.tile_index + 1].wait(timeout=10)
            super().record_tile(scan_id, tile, flakes)

    store = WaitingStore()
    scan(store, Detector())
    assert store.overlapped == len(PLAN) - 1
    assert sorted(flake_key(f) for f in store.flakes[1]) == reference()


@pytest.mark.parametrize("k", [1, 3, 4])
def test_interrupt_with_writes_queued_stores_them_then_resume_is_identical(k):
    gate = threading.Event()

    class GatedStore(EventStore):
        def record_tile(self, scan_id, tile, flakes):
            assert gate.wait(timeout=10)
            super().record_tile(scan_id, tile, flakes)

    class Interrupting(ThresholdDetector):
        queued_at_interrupt = -1

        def detect(self, image, context):
            if self.calls == self.interrupt_at:
                Interrupting.queued_at_interrupt = k - len(store.record_order)
                gate.set()  # let the writer go on only now: tiles 0..k-1 are all still pending
            return super().detect(image, context)

    store = GatedStore()
    with pytest.raises(KeyboardInterrupt):
        scan(store, Interrupting(interrupt_at=k))
    assert Interrupting.queued_at_interrupt == k  # none written when the interrupt came
    assert store.completed_tiles(1) == {t.index for t in PLAN[:k]}  # all flushed
    assert [e[0] for e in store.log] == ["record"] * k + ["interrupted"]
    assert store.finished == set()

    s = scan(store)
    assert s.tiles_skipped == k and s.tiles_done == len(PLAN) - k
    assert sorted(flake_key(f) for f in store.flakes[1]) == reference()
    assert store.finished == {1}


def test_write_error_surfaces_stops_writer_and_resume_is_identical():
    fail = {"on": True}

    class Failing(EventStore):
        def record_tile(self, scan_id, tile, flakes):
            if tile.tile_index == 2 and fail["on"]:
                raise OSError("disk full")
            super().record_tile(scan_id, tile, flakes)

    store = Failing()
    with pytest.raises(OSError, match="disk full"):
        scan(store)
    assert store.completed_tiles(1) == {0, 1}  # nothing after the failed tile
    assert store.interrupted == [1] and store.finished == set()
    fail["on"] = False
    s = scan(store)
    assert s.tiles_skipped == 2
    assert sorted(flake_key(f) for f in store.flakes[1]) == reference()


def test_image_save_error_surfaces(tmp_path):
    blocker = tmp_path / "images"
    blocker.mkdir()
    store = MemoryStore()

    # a folder where tile 0's PNG should go: saving it fails on the writer thread
    (blocker / "tile_00000.png").mkdir()
    with pytest.raises(OSError):
        scan(store, image_dir=blocker)
    assert store.completed_tiles(1) == set() and store.interrupted == [1]


def test_writer_close_is_idempotent_and_submit_after_error_raises():
    class Boom(MemoryStore):
        def record_tile(self, scan_id, tile, flakes):
            raise ValueError("bad")

    from flakefinder.domain import TileRecord

    w = TileWriter(Boom(), 1)
    w.submit(TileWrite(TileRecord(0, 0.0, 0.0, 0.0, 8, 8, 1.0), []))
    err = w.close()
    assert isinstance(err, ValueError) and w.close() is err and w.error is err
    with pytest.raises(ValueError, match="bad"):
        w.submit(TileWrite(TileRecord(1, 0.0, 0.0, 0.0, 8, 8, 1.0), []))
