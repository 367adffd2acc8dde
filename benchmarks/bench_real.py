"""Real-data benchmark: a registry detector on the real micrographs in ``../shared/data/real``.

python benchmarks/bench_real.py [--root ../shared/data/real] [--sets nbse2_2025,nbse2_2024,...]
    [--detector NAME] [--model DIR] [--modes none,labels2,table] [--splits 3] [--seed 0]
    [--max-images N] [--stand-in MoS2|none] [--out DIR]

Sets (loaders: ``flakefinder.evaluate.real_sets``; licences in each data folder):
  nbse2_2025, nbse2_2024  NbSe2, 150x, per-terrace labels 1L..5L and >5L; every terrace outlined
  hbn                     thin hBN, 20x; only the wanted flakes outlined (recall only)
  hbn_graphene            one graphene picture, one bilayer outlined (recall only)
  2dmatgmm                8 graphene pictures, 90 nm SiO2, 0.3844 um/px, no labels; the lab's table

Protocol (``flakefinder.evaluate.real_bench``):
  * Every detection the detector reports counts (bulk is not reported). Detections are matched
    one-to-one to the outlined terraces, greedily by confidence, at mask IoU >= 0.5; a terrace
    is found when matched. Recall is over the outlined terraces except those labelled thicker
    than the numbered ones (NbSe2 >5L): a detection matched to one of those is correct (not a
    false positive) but they are not counted as missed. Precision = correct / detections, shown
    only where every flake is outlined ('—' otherwise). Layers = share of matched terraces with a
    layer number whose detection's layer_count equals it.
  * none: the detector with no labels and no profile, all images of the set in one batch
    (detect_batch when the detector has it, so a self-calibrating detector sees the batch).
  * labels2: calibrate() on 2 labelled images (their numbered terraces; masks mode where the
    labels carry no layer numbers), create_detector(NAME, setup=profile), scored on the other
    images; --splits seeded image pairs, mean ± sd. A failed calibration is a note, not a crash.
  * table: the lab's own colour table (2DMatGMM JSON, import_gmm) as the profile, where a set
    has one ('n/a (no lab table)' otherwise).
  * 2dmatgmm has no labels: the table mode's detections are the reference, and the other modes
    report their AGREEMENT with it (recall = reference detections matched, precision = own
    detections matched, layers = same layer number where the table holds that layer number;
    one the classifier read beyond the table's ends is not compared), not accuracy.
  * Where the oxide or pixel size is unknown, 90 nm and a nominal pixel size by objective
    (0.1 um/px at 150x, 0.35 at 20x) are used and the note says so; the NbSe2 pixel size is
    measured from the burned-in 5 um scale bar. When the detector does not know the set's
    material (NbSe2 is not in the optics database), mode none reruns with --stand-in and
    compares no layer numbers.
  * --model DIR: the detector's model folder (maskrcnn, union). A self-trained one
    (train --recipe cpu_selftrain) lists the pictures it was trained on: nothing is skipped,
    every row says how many of its scored pictures were training pictures, and a
    'none (held out)' row scores mode none on the held-out pictures alone
    (flakefinder.evaluate.real_training).
  * ms/img: median detection time per image (no calibration); for a batch detector, measured by
    detecting each of up to 8 images again after the batch (the batch time, self-calibration
    included, is in the note). cal s: mean calibrate()/import_gmm time.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NOTE_CHARS = 110  # longer notes are cut in the table (the JSON has them whole)
HEADER = (
    "| set | mode | images | terraces | detections | recall @0.5 | precision @0.5 | layers "
    "| ms/img | cal s | note |"
)


def _num(v: float, digits: int = 2) -> str:
    return "—" if math.isnan(v) else f"{v:.{digits}f}"


def _stat(row: Any, name: str) -> str:
    m, sd = row.stat(name)
    if math.isnan(m):
        return "—"
    return f"{m:.2f} ± {sd:.2f}" if len(row.scores) > 1 else f"{m:.2f}"


def _count(row: Any, name: str) -> str:
    v = row.mean_count(name)
    return "—" if math.isnan(v) else (f"{v:.0f}" if v == round(v) else f"{v:.1f}")


def table_line(row: Any) -> str:
    """One markdown row of the table."""
    kind_note = {
        "agreement": "AGREEMENT with the table mode, not accuracy",
        "reference": "reference for the agreement rows",
        "counts": "no labels: counts only",
    }.get(row.kind)
    notes = ([kind_note] if kind_note else []) + list(row.notes)
    if len(row.scores) > 1:
        notes.append(f"{len(row.scores)} splits")
    scored = row.kind in ("accuracy", "agreement")
    cal = float(np.mean(row.calibration_s)) if row.calibration_s else math.nan
    cells = [
        row.set_name,
        row.mode,
        str(row.n_images),
        _count(row, "n_counted") if scored else "—",
        _count(row, "n_detections"),
        _stat(row, "recall") if scored else "—",
        _stat(row, "precision") if scored else "—",
        _stat(row, "layer_accuracy") if scored else "—",
        _num(row.median_ms, 0),
        _num(cal, 1),
        "; ".join(n if len(n) <= NOTE_CHARS else n[: NOTE_CHARS - 1] + "…" for n in notes),
    ]
    if row.kind == "n/a":
        cells[3:10] = ["—"] * 7
    return "| " + " | ".join(cells) + " |"


def _overlays(out: Path, rs: Any, images: list[np.ndarray], row: Any) -> None:
    import cv2

    from flakefinder.detect.overlay import draw_detections
    from flakefinder.imaging import save_image

    folder = out / "overlays" / rs.name / row.mode
    for i, dets in zip(row.image_indices, row.detections, strict=True):
        canvas = images[i].copy()
        for m in rs.truth[i].masks if rs.truth is not None else ():
            contours, _ = cv2.findContours(
                m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
            )
            cv2.drawContours(canvas, contours, -1, (255, 255, 255), 1, cv2.LINE_AA)
        save_image(folder / f"{rs.images[i].stem}.jpg", draw_detections(canvas, list(dets)))


def main() -> int:
    """Command-line entry point."""
    from flakefinder.artifacts import write_json_atomic
    from flakefinder.detect.registry import DEFAULT_DETECTOR, detector_spec
    from flakefinder.errors import FlakefinderError
    from flakefinder.evaluate.real_bench import MODES, run_mode, setup_of
    from flakefinder.evaluate.real_sets import SET_NAMES, load_real_set
    from flakefinder.evaluate.real_training import annotate_rows, training_pictures
    from flakefinder.imaging import load_image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "real")
    ap.add_argument("--sets", default=",".join(SET_NAMES))
    ap.add_argument("--detector", default=DEFAULT_DETECTOR)
    ap.add_argument("--model", type=Path, default=None, help="model folder (maskrcnn, union)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--splits", type=int, default=3, help="labels2: calibration pairs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-images", type=int, default=None, help="first N images of each set")
    ap.add_argument("--stand-in", default="MoS2", help="material for mode none when the detector "
                    "does not know the set's material ('none': report the error)")
    ap.add_argument("--cache", type=Path, default=REPO / ".cache" / "real" / "hbn")
    ap.add_argument("--out", type=Path, default=None, help="overlays and bench_real.json here")
    args = ap.parse_args()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    try:
        detector_spec(args.detector)
        bad = [s for s in sets if s not in SET_NAMES] + [m for m in modes if m not in MODES]
        if bad:
            raise FlakefinderError(f"unknown set or mode: {', '.join(bad)}")
        if args.splits < 1 or (args.max_images is not None and args.max_images < 1):
            raise FlakefinderError("--splits and --max-images must be at least 1")
        if args.model is not None and not args.model.is_dir():
            raise FlakefinderError(f"--model {args.model}: no such model folder")
        seen = training_pictures(args.model) if args.model is not None else None
    except FlakefinderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stand_in = None if args.stand_in.lower() == "none" else args.stand_in
    rows: list[Any] = []
    set_info: dict[str, Any] = {}
    t_all = time.perf_counter()
    for name in sets:
        t0 = time.perf_counter()
        try:
            rs = load_real_set(name, args.root, cache_dir=args.cache, max_images=args.max_images)
            images = [load_image(p) for p in rs.images]
        except FlakefinderError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        su = setup_of(rs)
        set_info[name] = {
            "material": rs.material, "objective": rs.objective, "images": len(rs.images),
            "instances": rs.n_instances, "layers_known": rs.layers_known,
            "exhaustive": rs.exhaustive, "oxide_nm": rs.oxide_nm, "um_per_px": rs.um_per_px,
            "um_per_px_images": list(rs.um_per_px_images), "used_oxide_nm": su.oxide_nm,
            "used_um_per_px": su.um_per_px, "licence": rs.licence, "source": rs.source,
        }
        print(f"[{name}] {len(images)} images loaded in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr, flush=True)
        done: dict[str, Any] = {}
        order = sorted(modes, key=lambda m: 0 if (m == "table" and rs.truth is None) else 1)
        for mode in order:
            t0 = time.perf_counter()
            ref = done.get("table") if rs.truth is None else None
            done[mode] = run_mode(
                rs, images, mode, args.detector, reference=ref, splits=args.splits,
                seed=args.seed, stand_in=stand_in, model=args.model,
            )
            print(f"[{name}] {mode}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            if args.out is not None and done[mode].detections:
                _overlays(args.out, rs, images, done[mode])
        set_rows = [done[m] for m in modes]
        if seen is not None:
            set_rows = annotate_rows(rs, set_rows, seen, splits=args.splits, seed=args.seed)
        rows.extend(set_rows)
        del images
    model = f" (model {args.model})" if args.model is not None else ""
    print(f"\ndetector: {args.detector}{model}; data: {args.root}; IoU >= 0.5; "
          f"total {time.perf_counter() - t_all:.0f} s\n")
    print(HEADER)
    print("|" + "---|" * 11)
    for row in rows:
        print(table_line(row))
    for row in rows:
        for note in row.detector_notes:
            print(f"{row.set_name} {row.mode}: {note}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out / "bench_real.json", {
            "detector": args.detector, "model": None if args.model is None else str(args.model),
            "root": str(args.root), "splits": args.splits,
            "seed": args.seed, "max_images": args.max_images, "iou_threshold": 0.5,
            "sets": set_info, "rows": [r.to_json() for r in rows],
        })
        print(f"\nwrote {args.out / 'bench_real.json'} and overlays under {args.out / 'overlays'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
