"""The revisit pass: back to each selected flake at high magnification, autofocus, close-ups,
detection again, a refined outline and layer number, stored with the flake.

For each flake, in route order (:mod:`flakefinder.scan.route`): check the stage limits, move
to the flake, autofocus around the predicted focus (:func:`flakefinder.scan.focus.autofocus`),
take the close-ups (optionally a z-stack and a second exposure: shorter for thick flakes,
longer for monolayers), detect on the in-focus frames, keep the detection whose outline best
overlaps the search pass's, and store the visit with its close-ups in one call of
:meth:`RevisitStore.record_revisit` (image files first, written atomically). A visit is stored
whole or not at all, so an interrupted pass resumes with the flakes not yet stored. A flake
that cannot be done (outside the stage limits, focus fails, not found again) is stored with
that status and a message, and the pass goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from flakefinder.domain import LayerClass, StagePosition
from flakefinder.errors import FlakefinderError
from flakefinder.geometry import polygon_iou
from flakefinder.scan.dedupe import detection_to_record
from flakefinder.scan.focus import AutofocusResult, autofocus
from flakefinder.scan.loop import progress_bar
from flakefinder.scan.revisit_records import (
    CloseupRecord,
    RevisitOptions,
    RevisitRecord,
    RevisitStatus,
    RevisitStore,
    RevisitTarget,
)
from flakefinder.scan.throughput import PassReport

__all__ = [
    "CloseupRecord",
    "RevisitOptions",
    "RevisitRecord",
    "RevisitStatus",
    "RevisitStore",
    "RevisitSummary",
    "RevisitTarget",
    "focus_problem",
    "run_revisit",
]

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from flakefinder.domain import Detector, FlakeRecord, ImagingContext
    from flakefinder.hardware.protocols import Microscope

@dataclass
class _Times:
    move_s: float = 0.0
    focus_s: float = 0.0
    capture_s: float = 0.0
    detect_s: float = 0.0
    store_s: float = 0.0


@dataclass(frozen=True)
class RevisitSummary:
    pass_id: int
    report: PassReport
    visited: int
    skipped: int  # stored before (resume)
    by_status: dict[RevisitStatus, int]


def focus_problem(result: AutofocusResult, n_coarse: int, min_gain: float) -> str | None:
    """Why an autofocus result cannot be trusted, or None: the coarse curve's best point at
    its end (the peak lies outside the range) or a flat curve (nothing to focus on)."""
    coarse = [s for _, s in result.curve[:n_coarse]]
    best = max(range(len(coarse)), key=coarse.__getitem__)
    lo, hi = min(coarse), max(coarse)
    if hi <= 0 or (hi - lo) / hi < min_gain:
        return "the sharpness curve is flat (nothing to focus on)"
    if best in (0, len(coarse) - 1):
        z0, z1 = result.curve[0][0], result.curve[n_coarse - 1][0]
        return f"no sharpness peak between z = {z0:.1f} and {z1:.1f} µm"
    return None


def _plan_frames(options: RevisitOptions, target: RevisitTarget) -> list[tuple[float, float]]:
    """(z offset µm, exposure factor) of the close-ups; the first is the in-focus one."""
    n = max(1, options.z_stack)
    offsets = [(k - (n - 1) // 2) * options.z_step_um for k in range(n)]
    frames = [(0.0, 1.0)] + [(dz, 1.0) for dz in offsets if dz != 0.0]
    if options.bracket and target.layer_class is LayerClass.THICK:
        frames.append((0.0, 0.5))
    elif options.bracket and target.layer_class is LayerClass.MONO:
        frames.append((0.0, 1.5))
    return frames


def _best_match(
    target: RevisitTarget, found: Sequence[FlakeRecord]
) -> tuple[FlakeRecord, float] | None:
    scored = [
        (polygon_iou(target.polygon_um, f.polygon_um), f.material == target.material, f)
        for f in found
    ]
    scored = [s for s in scored if s[0] > 0]
    if not scored:
        return None
    iou, _, best = max(scored, key=lambda s: (s[1], s[0]))
    return best, iou


def _save(path: Path, image: np.ndarray) -> None:
    from flakefinder.imaging import save_image

    save_image(path, image)  # atomic: a full disk never leaves half a close-up


class _Visit:
    """One flake's visit on one microscope (the steps of the module docstring)."""

    def __init__(
        self,
        microscope: Microscope,
        detector: Detector,
        context: ImagingContext,
        options: RevisitOptions,
        times: _Times,
    ) -> None:
        self.m, self.det, self.ctx, self.opt, self.t = microscope, detector, context, options, times
        self.h_px, self.w_px = microscope.camera.shape_px
        self.um_per_px = microscope.camera.um_per_px

    def record(
        self, target: RevisitTarget, status: RevisitStatus, message: str, **kw: object
    ) -> RevisitRecord:
        return RevisitRecord(
            target.flake_id,
            status,
            message,
            self.m.objective,
            self.um_per_px,
            **kw,  # type: ignore[arg-type]
        )

    def run(
        self, target: RevisitTarget
    ) -> tuple[RevisitRecord, list[tuple[CloseupRecord, np.ndarray]]]:
        m, opt = self.m, self.opt
        cx, cy = target.centre_um
        if not m.stage.limits.contains(cx, cy):
            return self.record(
                target, RevisitStatus.OUTSIDE_LIMITS,
                f"flake {target.flake_id} at ({cx:.0f}, {cy:.0f}) µm is outside the stage limits",
            ), []  # fmt: skip
        t0 = time.perf_counter()
        m.stage.move_xy_um(cx, cy)
        m.stage.wait_for_xy()
        t1 = time.perf_counter()
        self.t.move_s += t1 - t0
        z_start = m.focus.get_z_um() if target.z_um is None else target.z_um
        n_coarse = 2 * int(round(opt.focus_range_um / 2.0 / opt.focus_step_um)) + 1
        try:
            result = autofocus(
                m,
                center_z_um=z_start,
                coarse_range_um=opt.focus_range_um,
                coarse_step_um=opt.focus_step_um,
                fine_step_um=opt.fine_step_um,
            )
            problem = focus_problem(result, n_coarse, opt.min_peak_gain)
        except FlakefinderError as exc:  # a focus move outside the focus drive's travel
            result, problem = None, str(exc)
        self.t.focus_s += time.perf_counter() - t1
        if result is None or problem is not None:
            return self.record(
                target, RevisitStatus.FOCUS_FAILED,
                f"flake {target.flake_id}: autofocus failed ({problem}); flake left as it was",
            ), []  # fmt: skip
        frames = self.capture(target, result)
        x0, y0, x1, y1 = target.bbox_um
        fov_w, fov_h = self.w_px * self.um_per_px, self.h_px * self.um_per_px
        if x1 - x0 > opt.max_fov_fraction * fov_w or y1 - y0 > opt.max_fov_fraction * fov_h:
            return self.record(
                target, RevisitStatus.TOO_LARGE,
                f"flake {target.flake_id} ({x1 - x0:.0f} x {y1 - y0:.0f} µm) is larger than the"
                f" {m.objective} field of view ({fov_w:.0f} x {fov_h:.0f} µm); close-up kept,"
                " outline not refined",
                focus_z_um=result.z_um,
            ), frames  # fmt: skip
        match = self.detect(target, [(c, im) for c, im in frames if c.z_offset_um == 0.0])
        if match is None:
            return self.record(
                target, RevisitStatus.NOT_FOUND,
                f"flake {target.flake_id}: no detection at {m.objective} overlaps its search"
                " outline (moved, dirt, or a false positive of the search)",
                focus_z_um=result.z_um,
            ), frames  # fmt: skip
        refined, iou = match
        return self.record(
            target, RevisitStatus.OK, "", focus_z_um=result.z_um, refined=refined,
            iou_with_search=iou,
        ), frames  # fmt: skip

    def capture(
        self, target: RevisitTarget, focus: AutofocusResult
    ) -> list[tuple[CloseupRecord, np.ndarray]]:
        from flakefinder.scan.focus import sharpness

        m = self.m
        t0 = time.perf_counter()
        base_ms = m.camera.exposure_ms
        out = []
        try:
            for k, (dz, gain) in enumerate(_plan_frames(self.opt, target)):
                m.focus.move_z_um(focus.z_um + dz)
                if gain != 1.0:
                    m.camera.set_exposure_ms(base_ms * gain)
                image = m.camera.snap()
                if gain != 1.0:
                    m.camera.set_exposure_ms(base_ms)
                x, y = m.stage.get_xy_um()
                out.append(
                    (
                        CloseupRecord(
                            k,
                            x,
                            y,
                            m.focus.get_z_um(),
                            dz,
                            base_ms * gain,
                            self.w_px,
                            self.h_px,
                            self.um_per_px,
                            sharpness(image),
                            None,
                        ),  # fmt: skip
                        image,
                    )
                )
        finally:
            m.camera.set_exposure_ms(base_ms)
            m.focus.move_z_um(focus.z_um)
        self.t.capture_s += time.perf_counter() - t0
        return out

    def detect(
        self, target: RevisitTarget, frames: Sequence[tuple[CloseupRecord, np.ndarray]]
    ) -> tuple[FlakeRecord, float] | None:
        t0 = time.perf_counter()
        name, version = str(self.det.name), str(self.det.version)
        best: tuple[FlakeRecord, float] | None = None
        for c, image in frames:
            stage = StagePosition(c.x_um, c.y_um, c.z_um)
            found = [
                detection_to_record(
                    d,
                    stage,
                    self.w_px,
                    self.h_px,
                    self.um_per_px,
                    detector=name,
                    detector_version=version,
                    tile_index=None,
                )
                for d in self.det.detect(image, self.ctx)
            ]
            match = _best_match(target, found)
            if (
                match is not None
                and match[1] >= self.opt.min_iou
                and (best is None or match[1] > best[1])
            ):
                best = match
        self.t.detect_s += time.perf_counter() - t0
        return best


def run_revisit(
    microscope: Microscope,
    detector: Detector,
    store: RevisitStore,
    pass_id: int,
    targets: Sequence[RevisitTarget],
    context: ImagingContext,
    *,
    options: RevisitOptions | None = None,
    image_dir: str | Path | None = None,
    progress: bool = True,
    route_um: tuple[float, float] | None = None,
) -> RevisitSummary:
    """Visit ``targets`` in the given (route) order, skipping those already stored for
    ``pass_id``; see the module docstring. ``route_um`` = (route, naive order) lengths for
    the report. On any exception (Ctrl-C included) the visit in progress is dropped, the pass
    is marked interrupted and the exception propagates."""
    opt = options or RevisitOptions()
    t_start = time.perf_counter()
    if context.um_per_px != microscope.camera.um_per_px:
        context = replace(context, um_per_px=microscope.camera.um_per_px)
    done = store.revisited_flakes(pass_id)
    todo = [t for t in targets if t.flake_id not in done]
    out_dir = None if image_dir is None else Path(image_dir)
    times = _Times()
    visit = _Visit(microscope, detector, context, opt, times)
    by_status = {s: 0 for s in RevisitStatus}
    n_images = 0
    try:
        with progress_bar(
            progress, len(targets), len(targets) - len(todo), label="revisit", unit="flakes"
        ) as advance:
            for target in todo:
                record, frames = visit.run(target)
                t0 = time.perf_counter()
                closeups = []
                for c, image in frames:
                    path = None
                    if out_dir is not None:
                        path = out_dir / f"flake_{target.flake_id}_pass{pass_id}_{c.index}.png"
                        _save(path, image)
                    closeups.append(replace(c, image_path=None if path is None else str(path)))
                store.record_revisit(pass_id, record, closeups)
                times.store_s += time.perf_counter() - t0
                n_images += len(closeups)
                by_status[record.status] += 1
                advance()
    except BaseException as exc:
        try:
            store.mark_pass_interrupted(pass_id)
        except Exception as error:  # e.g. the database's disk is full too
            exc.add_note(f"marking pass {pass_id} interrupted also failed: {error}")
        raise
    h_px, w_px = microscope.camera.shape_px
    pixel = microscope.camera.um_per_px
    report = PassReport(
        kind="revisit",
        objective=microscope.objective,
        um_per_px=pixel,
        fov_width_um=w_px * pixel,
        fov_height_um=h_px * pixel,
        overlap=0.1,
        frames=len(todo),
        wall_s=time.perf_counter() - t_start,
        move_s=times.move_s,
        focus_s=times.focus_s,
        capture_s=times.capture_s,
        detect_s=times.detect_s,
        store_s=times.store_s,
        images=n_images,
        route_um=None if route_um is None else route_um[0],
        naive_route_um=None if route_um is None else route_um[1],
    )
    store.finish_pass(pass_id, report)
    return RevisitSummary(pass_id, report, len(todo), len(targets) - len(todo), by_status)
