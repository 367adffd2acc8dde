"""The hunt benchmark: revisit route length against the naive order, and the time budget of
each pass (overview, search, revisit) on the simulated microscope.

1. Routes: the revisit route (nearest neighbour + 2-opt from the stage's position) through N
   random flakes on a 1 x 1 cm chip, against visiting them in stored (scan) order, and the
   time to plan it; for the flakes of the hunt below too.
2. Passes: a simulated chip (default 2 x 2 mm, graphene) hunted end to end into a fresh SQLite
   database with tile images saved: overview at 5x, search of the proposed region at 20x,
   revisit of the selected flakes at 50x (autofocus from a 1.5 µm parfocal error). The stage
   moves at ``--speed-mm-s`` with ``--settle-ms`` per move (a real motorised stage; the
   simulated camera and detector run at this machine's speed). For each pass: frames,
   frames/s, time per frame in moves, focus, capture, detection and storage, and the hours a
   1 cm² chip would take at that objective; then the estimated hunt of 1 cm².

    .venv/bin/python benchmarks/bench_hunt.py                    # 2 x 2 mm chip
    .venv/bin/python benchmarks/bench_hunt.py --quick            # 1 x 1 mm chip, fewer routes
    .venv/bin/python benchmarks/bench_hunt.py --chip-size-mm 3 --filter "layers<=3"

The seed paper (Masubuchi et al. 2020) searched 1 cm² at 50x in about an hour (~1 frame/s).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent / "src"))


def bench_routes(counts: list[int], seed: int) -> list[str]:
    import numpy as np

    from flakefinder.scan.route import plan_route

    rng = np.random.default_rng(seed)
    lines = [
        "| flakes on 1 cm² | route (mm) | stored order (mm) | shorter by | planning time |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n in counts:
        pts = [tuple(p) for p in rng.uniform(0.0, 10_000.0, (n, 2))]
        # stored order = scan order: serpentine rows of 512 µm (20x tiles), as a search stores them
        pts = sorted(pts, key=lambda p: (p[1] // 512, p[0] if int(p[1] // 512) % 2 == 0 else -p[0]))
        t0 = time.perf_counter()
        route = plan_route((0.0, 0.0), pts)
        dt = time.perf_counter() - t0
        lines.append(
            f"| {n} | {route.length_um / 1000:.1f} | {route.naive_length_um / 1000:.1f} "
            f"| {100 * route.saving:.0f}% | {1000 * dt:.0f} ms |"
        )
    return lines


def bench_passes(args: argparse.Namespace, folder: Path) -> list[str]:
    from flakefinder.db import Database, FlakeQuery
    from flakefinder.db.hunt import HuntStore
    from flakefinder.domain import ImagingContext
    from flakefinder.hardware.objectives import DEFAULT_OBJECTIVES, find_objective, switch_objective
    from flakefinder.hunt.detectors import detector_for_objective
    from flakefinder.hunt.overview_pass import corners_box, overview_area, run_overview_pass
    from flakefinder.hunt.revisit_pass import RevisitRequest, open_revisit, run_revisit_pass
    from flakefinder.hunt.search_pass import region_plan, run_search_pass
    from flakefinder.hunt.simulated import SimSpec, build_microscope
    from flakefinder.scan.revisit import RevisitOptions
    from flakefinder.scan.throughput import pass_table
    from flakefinder.synth.chip import random_chip

    side = args.chip_size_mm * 1000.0
    chip = random_chip(side, side, ("graphene",), seed=args.seed)
    spec = SimSpec(seed=args.seed, frame_px=1024, objectives=DEFAULT_OBJECTIVES, objective="20x",
                   focus_plane_um=(0.0, 0.0004, -0.0003), parfocal_error_um={"50x": 1.5},
                   chip_edge=True)  # fmt: skip
    m = build_microscope(spec, chip)
    stage = m.stage
    stage.move_time_s = args.settle_ms / 1000.0  # type: ignore[attr-defined]
    stage.speed_um_per_s = args.speed_mm_s * 1000.0  # type: ignore[attr-defined]
    db = Database(f"sqlite:///{folder / 'hunt.db'}")
    db.migrate()
    hunt = HuntStore(db)
    chip_id = db.add_chip("bench", ["graphene"], 90.0)
    scan_id = db.start_scan(chip_id, settings={}, objective="20x", um_per_px=0.5,
                            detector="contrast", detector_version="1.0", n_tiles_planned=0)  # fmt: skip
    corners = [(0.0, 0.0), (side, side)]
    images = folder / f"scan_{scan_id}"
    t0 = time.perf_counter()
    overview = run_overview_pass(m, hunt, chip_id=chip_id, scan_id=scan_id, overview="5x",
                                 search="20x", area_um=overview_area(corners),
                                 chip_hint_um=corners_box(corners), image_dir=images,
                                 progress=False)  # fmt: skip
    switch_objective(m, "20x")
    plan = region_plan(m, overview.analysis.region, 0.1)
    det20 = detector_for_objective("contrast", find_objective(DEFAULT_OBJECTIVES, "20x"))
    _, search = run_search_pass(m, det20, db, hunt, scan_id=scan_id, chip_id=chip_id, plan=plan,
                                context=ImagingContext(um_per_px=0.5), image_dir=images,
                                progress=False)  # fmt: skip
    obj = switch_objective(m, "50x")
    options = RevisitOptions(bracket=True)
    opened = open_revisit(db, hunt, RevisitRequest(scan_id, "50x", args.filter, options=options), m)
    summary = run_revisit_pass(m, detector_for_objective("contrast", obj), hunt, opened,
                               ImagingContext(um_per_px=0.2), options=options,
                               image_dir=images / "closeups", progress=False)  # fmt: skip
    total = time.perf_counter() - t0
    n_flakes = db.count_flakes(FlakeQuery(scan_id=scan_id))
    problems = [f"  {v.status}: {v.message}" for v in hunt.revisits_of_pass(summary.pass_id)
                if v.status != "ok"]  # fmt: skip
    db.close()
    reports = [overview.report, search, summary.report]
    visited = summary.visited
    area_cm2 = overview.analysis.region.area_mm2 / 100.0
    per_cm2_flakes = visited / area_cm2 if area_cm2 > 0 else 0.0
    per_flake_h = summary.report.wall_s / visited / 3600.0 if visited else 0.0
    hunt_h = overview.report.hours_per_cm2 + search.hours_per_cm2 + per_cm2_flakes * per_flake_h
    counts = ", ".join(f"{n} {s.value}" for s, n in summary.by_status.items() if n)
    return [
        f"chip {args.chip_size_mm:g} x {args.chip_size_mm:g} mm, {len(chip.flakes)} pieces; search"
        f" region {overview.analysis.region.width_um:.0f} x {overview.analysis.region.height_um:.0f}"
        f" µm; {n_flakes} flakes stored; revisit --filter '{args.filter}': {visited} flakes"
        f" ({counts}); stage {args.speed_mm_s:g} mm/s + {args.settle_ms:g} ms per move; all"
        f" passes {total:.1f} s",
        *problems,
        "",
        pass_table(reports),
        "",
        f"estimated hunt of 1 cm² at these rates: overview {overview.report.hours_per_cm2:.2f} h"
        f" + search at 20x {search.hours_per_cm2:.2f} h + revisit of {per_cm2_flakes:.0f} flakes"
        f" at 50x {per_cm2_flakes * per_flake_h:.2f} h = {hunt_h:.2f} h (the seed paper: 1 cm² at"
        " 50x in about 1 h)",
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chip-size-mm", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--filter", default="layers<=10,area_um2>=40")
    p.add_argument("--speed-mm-s", type=float, default=10.0, help="stage speed (mm/s)")
    p.add_argument("--settle-ms", type=float, default=50.0, help="settling time per move (ms)")
    p.add_argument("--quick", action="store_true", help="1 x 1 mm chip, fewer route sizes")
    args = p.parse_args()
    if args.quick:
        args.chip_size_mm = min(args.chip_size_mm, 1.0)
    counts = [20, 100] if args.quick else [20, 100, 300, 1000]
    print(f"# bench_hunt ({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()})\n")
    print("## Revisit route (nearest neighbour + 2-opt) vs stored order\n")
    print("\n".join(bench_routes(counts, args.seed)))
    print("\n## Passes on the simulated microscope\n")
    with tempfile.TemporaryDirectory() as tmp:
        print("\n".join(bench_passes(args, Path(tmp))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
