"""The scan loop: move + capture -> detect -> deduplicate -> store, tile by tile.

Three threads form a pipeline: acquisition runs on one worker thread (it alone touches the
hardware), so the stage move and capture of tile i+1 overlap the detection of tile i on the
calling thread; deduplication runs on the calling thread right after detection (the duplicate
index is always up to date, so the results do not depend on timing); storing (image file, then
``record_tile``) runs on one ordered writer thread (:mod:`flakefinder.scan.writer`) while the
calling thread detects the next tile. Each tile is stored with its new flakes in one
``record_tile`` call, so a stored tile is complete, and tiles are stored in scan order, so the
stored tiles are always the first ones: a scan stopped at any point and run again skips the
stored tiles, seeds the duplicate index with the stored flakes, and ends with exactly the flakes
of an uninterrupted scan.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flakefinder.domain import Detector, FlakeRecord, ImagingContext, StagePosition, TileRecord
from flakefinder.errors import FlakefinderError
from flakefinder.hardware.protocols import Microscope
from flakefinder.scan.dedupe import (
    DedupeIndex,
    Rect,
    covered_by_other_tile,
    detection_to_record,
    touches_border,
)
from flakefinder.scan.plan import TilePlan, check_plan_limits
from flakefinder.scan.writer import TileWrite, TileWriter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import numpy as np

    from flakefinder.hardware.protocols import Microscope
    from flakefinder.scan.focus import FocusMap
    from flakefinder.scan.store import ScanStore


@dataclass(frozen=True)
class ScanSummary:
    """What a scan did and where its time went (seconds)."""

    scan_id: int
    tiles_total: int
    tiles_done: int
    tiles_skipped: int
    flakes_stored: int
    duplicates_merged: int
    border_dropped: int
    detections: int
    wall_s: float
    detect_s: float
    capture_s: float  # stage move + focus + snap, on the worker thread (overlaps detection)
    wait_s: float  # main thread waiting for a capture to finish
    store_s: float  # main thread waiting for the store (writes run on a writer thread)
    dedupe_s: float = 0.0  # placing detections on the chip and deduplicating (main thread)
    move_s: float = 0.0  # of capture_s: stage moves until settled (worker thread)
    focus_s: float = 0.0  # of capture_s: focus moves (worker thread)
    snap_s: float = 0.0  # of capture_s: camera exposures and read-out (worker thread)
    write_s: float = 0.0  # writer thread busy saving images and storing tiles

    @property
    def tiles_per_s(self) -> float:
        return self.tiles_done / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def outside_detection_share(self) -> float:
        """Fraction of wall time not spent in the detector."""
        return (self.wall_s - self.detect_s) / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class _Frame:
    tile: TilePlan
    image: np.ndarray
    stage: StagePosition
    capture_s: float
    move_s: float = 0.0
    focus_s: float = 0.0
    snap_s: float = 0.0


def _acquire(microscope: Microscope, tile: TilePlan, focus_map: FocusMap | None) -> _Frame:
    t0 = time.perf_counter()
    microscope.stage.move_xy_um(tile.x_um, tile.y_um)
    t1 = time.perf_counter()
    if focus_map is not None:
        microscope.focus.move_z_um(focus_map.z_at(tile.x_um, tile.y_um))
    t2 = time.perf_counter()
    microscope.stage.wait_for_xy()
    t3 = time.perf_counter()
    image = microscope.camera.snap()
    x, y = microscope.stage.get_xy_um()
    stage = StagePosition(x, y, microscope.focus.get_z_um())
    t4 = time.perf_counter()
    return _Frame(tile, image, stage, t4 - t0, (t1 - t0) + (t3 - t2), t2 - t1, t4 - t3)


def tile_rects_um(
    plan: Sequence[TilePlan], fov_width_um: float, fov_height_um: float
) -> dict[int, Rect]:
    hw, hh = fov_width_um / 2.0, fov_height_um / 2.0
    return {t.index: (t.x_um - hw, t.y_um - hh, t.x_um + hw, t.y_um + hh) for t in plan}


@contextmanager
def progress_bar(
    enabled: bool, total: int, done: int, *, label: str = "scan", unit: str = "tiles"
) -> Iterator[Callable[[], None]]:
    """A rich progress bar (``label``, done of total, ``unit``/s, time left); yields ``advance``."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class TilesPerSecond(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} {unit}/s" if speed else f"-- {unit}/s")

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TilesPerSecond(),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=total, completed=done)
        yield lambda: bar.advance(task)


def run_scan(
    microscope: Microscope,
    detector: Detector,
    store: ScanStore,
    scan_id: int,
    plan: Sequence[TilePlan],
    context: ImagingContext,
    *,
    focus_map: FocusMap | None = None,
    image_dir: str | Path | None = None,
    save_images: bool = True,
    progress: bool = True,
    iou_threshold: float = 0.3,
    border_margin_px: float = 2.0,
    background_store: bool = True,
) -> ScanSummary:
    """Scan ``plan`` with ``microscope``, detect with ``detector``, store into ``store``.

    Tiles already in ``store.completed_tiles(scan_id)`` are skipped (resume). Images are saved
    as ``image_dir/tile_00042.png`` when ``image_dir`` is given and ``save_images``. On
    KeyboardInterrupt (or any error) the tile being processed is dropped, the pending capture
    is awaited, the tiles already handed to the writer are stored, ``store.mark_interrupted(scan_id)``
    is called if the store has it, and the exception propagates. A failed write (an exception in
    ``record_tile`` or in saving an image) stops the writer (the tiles queued after it are not
    stored; a resumed scan redoes them) and is raised here the same way. ``background_store=False``
    stores each tile on the calling thread instead (for a store that must not be used from another
    thread). ``context.um_per_px`` is overridden by the camera's pixel size.
    """
    t_start = time.perf_counter()
    check_plan_limits(plan, microscope.stage.limits)
    h_px, w_px = microscope.camera.shape_px
    um_per_px = microscope.camera.um_per_px
    if context.um_per_px != um_per_px:
        context = _with_um_per_px(context, um_per_px)
    rects = tile_rects_um(plan, w_px * um_per_px, h_px * um_per_px)
    index = DedupeIndex(rects, iou_threshold=iou_threshold, cell_um=max(w_px, h_px) * um_per_px)

    done_before = set(store.completed_tiles(scan_id))
    index.extend(store.scan_flakes(scan_id))
    todo = [t for t in plan if t.index not in done_before]
    skipped = len(plan) - len(todo)
    out_dir = Path(image_dir) if image_dir is not None and save_images else None
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            mark = getattr(store, "mark_interrupted", None)
            if callable(mark):
                mark(scan_id)  # never leave the scan marked running
            raise FlakefinderError(
                f"cannot create the image folder {out_dir}: {exc.strerror or exc}"
            ) from None
    name = str(getattr(detector, "name", type(detector).__name__))
    version = str(getattr(detector, "version", ""))
    margin_um = border_margin_px * um_per_px

    tiles_done = stored = merged = dropped = n_det = 0
    detect_s = capture_s = wait_s = store_s = dedupe_s = 0.0
    move_s = focus_s = snap_s = 0.0
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flakefinder-acquire")
    pending: Future[_Frame] | None = None
    writer = TileWriter(store, scan_id, threaded=background_store)
    try:
        with progress_bar(progress, len(plan), skipped) as advance:
            if todo:
                pending = executor.submit(_acquire, microscope, todo[0], focus_map)
            for n, tile in enumerate(todo):
                t0 = time.perf_counter()
                assert pending is not None
                frame = pending.result()
                wait_s += time.perf_counter() - t0
                capture_s += frame.capture_s
                move_s += frame.move_s
                focus_s += frame.focus_s
                snap_s += frame.snap_s
                pending = None
                if n + 1 < len(todo):
                    pending = executor.submit(_acquire, microscope, todo[n + 1], focus_map)

                t0 = time.perf_counter()
                detections = detector.detect(frame.image, context)
                detect_s += time.perf_counter() - t0
                n_det += len(detections)

                t0 = time.perf_counter()
                new: list[FlakeRecord] = []
                for det in detections:
                    rec = detection_to_record(
                        det,
                        frame.stage,
                        w_px,
                        h_px,
                        um_per_px,
                        detector=name,
                        detector_version=version,
                        tile_index=tile.index,
                    )
                    if touches_border(
                        det.bbox_px, w_px, h_px, border_margin_px
                    ) and covered_by_other_tile(rec.bbox_um, tile.index, rects, margin_um):
                        dropped += 1
                    elif index.find_match(rec) is not None:
                        merged += 1
                    else:
                        new.append(rec)
                index.extend(new)
                image_path = None
                if out_dir is not None:
                    image_path = str(out_dir / f"tile_{tile.index:05d}.png")
                record = TileRecord(
                    tile_index=tile.index,
                    x_um=frame.stage.x_um,
                    y_um=frame.stage.y_um,
                    z_um=frame.stage.z_um,
                    width_px=w_px,
                    height_px=h_px,
                    um_per_px=um_per_px,
                    image_path=image_path,
                )
                t1 = time.perf_counter()
                dedupe_s += t1 - t0
                image = frame.image if out_dir is not None else None
                writer.submit(TileWrite(record, new, image))
                store_s += time.perf_counter() - t1
                stored += len(new)
                tiles_done += 1
                advance()
            t0 = time.perf_counter()
            error = writer.close()
            store_s += time.perf_counter() - t0
            if error is not None:
                raise error
    except BaseException as e:
        if pending is not None:
            _drain(pending)
        error = writer.close()  # store what was handed over (nothing after a failed write)
        if error is not None and error is not e and hasattr(e, "add_note"):
            e.add_note(f"storing tiles also failed: {error!r}")
        mark = getattr(store, "mark_interrupted", None)
        if callable(mark):
            try:
                mark(scan_id)
            except Exception as mark_error:  # e.g. the database's disk is full too
                e.add_note(f"marking the scan interrupted also failed: {mark_error}")
        raise
    finally:
        executor.shutdown(wait=True)
    store.finish_scan(scan_id)
    return ScanSummary(
        scan_id=scan_id,
        tiles_total=len(plan),
        tiles_done=tiles_done,
        tiles_skipped=skipped,
        flakes_stored=stored,
        duplicates_merged=merged,
        border_dropped=dropped,
        detections=n_det,
        wall_s=time.perf_counter() - t_start,
        detect_s=detect_s,
        capture_s=capture_s,
        wait_s=wait_s,
        store_s=store_s,
        dedupe_s=dedupe_s,
        move_s=move_s,
        focus_s=focus_s,
        snap_s=snap_s,
        write_s=writer.busy_s,
    )


def _drain(pending: Future[Any]) -> None:
    """Let an in-flight capture finish (never leave the stage mid-move); ignore its result."""
    pending.cancel()
    try:
        pending.result()
    except BaseException:
        pass


def _with_um_per_px(context: ImagingContext, um_per_px: float) -> ImagingContext:
    from dataclasses import replace

    return replace(context, um_per_px=um_per_px)
