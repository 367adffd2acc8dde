"""``flakefinder demo --real``: calibration and detection on the real micrographs in the package.

Two ways to get a setup profile for the shipped 2DMatGMM graphene pictures (Uslu et al. 2024,
MIT), and detection with each:

1. **imported**: the 2DMatGMM colour table of the same microscope (``--from-gmm``);
2. **self-calibrated**: no labels at all, from the pictures alone (no-label mode of
   :func:`flakefinder.calibration.calibrate`).

Writes both profiles, overlays per profile and a summary table; says which profile found what.
"""

from __future__ import annotations

from pathlib import Path

import typer

UM_PER_PX = 0.3844
OXIDE_NM = 90.0
SELF_CALIBRATION = ("graphene_90nm_a.jpg", "graphene_90nm_b.jpg")  # images of one camera setting


def real_data_folder() -> Path:
    """Folder of the shipped real micrographs and colour table."""
    return Path(__file__).resolve().parent.parent / "data" / "real"


def run_real_demo(out: Path) -> None:
    """Calibrate two ways, detect on every shipped picture, write overlays and profiles."""
    from flakefinder.calibration.gmm import import_gmm
    from flakefinder.detect.calibrated import CalibratedContrastDetector
    from flakefinder.detect.overlay import draw_detections
    from flakefinder.detect.setup_io import self_calibrate
    from flakefinder.domain import ImagingContext
    from flakefinder.imaging import load_image, save_image

    folder = real_data_folder()
    files = sorted(folder.glob("*.jpg"))
    if not files:
        from flakefinder.errors import FlakefinderError

        raise FlakefinderError(f"the real demo pictures are missing from {folder}")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    images = {p.name: load_image(p) for p in files}
    typer.echo(
        f"{len(files)} real graphene micrographs (2DMatGMM, Uslu et al. 2024, MIT) in {folder}"
    )

    imported = import_gmm(
        folder / "gmm_graphene_90nm.json",
        material="graphene",
        oxide_nm=OXIDE_NM,
        um_per_px=UM_PER_PX,
        name="2dmatgmm-graphene-90nm",
    )
    typer.echo("profile 1 (imported): the 2DMatGMM colour table of the same microscope")
    cal_names = [n for n in SELF_CALIBRATION if n in images]
    typer.echo(
        f"profile 2 (self-calibrated): no labels, from {', '.join(cal_names)} alone; this takes "
        "a few seconds"
    )
    selfcal = self_calibrate(
        [images[n] for n in cal_names],
        materials=("graphene",),
        oxide_nm=OXIDE_NM,
        um_per_px=UM_PER_PX,
    ).profile
    ctx = ImagingContext(um_per_px=UM_PER_PX, oxide_thickness_nm=OXIDE_NM, materials=("graphene",))
    rows = []
    for label, profile in (("imported", imported), ("self-calibrated", selfcal)):
        profile.save(out / f"setup_{label}.json")
        layers = ", ".join(
            f"{e.n_layers}L {tuple(round(v, 3) for v in e.contrast_rgb)} {e.source}"
            for e in profile.table("graphene").layers[:4]
        )
        typer.echo(f"  {label}: {profile.profile_id}: {layers}")
        det = CalibratedContrastDetector(profile)
        for name, im in images.items():
            dets = det.detect(im, ctx)
            save_image(out / label / f"{Path(name).stem}.png", draw_detections(im, dets))
            counts = {n: sum(1 for d in dets if d.layer_count == n) for n in (1, 2, 3, 4)}
            rows.append((label, name, counts))
    typer.echo("\n| profile | image | 1L | 2L | 3L | 4L |\n|---|---|---|---|---|---|")
    for label, name, c in rows:
        typer.echo(f"| {label} | {name} | {c[1]} | {c[2]} | {c[3]} | {c[4]} |")
    typer.echo(f"\noverlays in {out}/imported and {out}/self-calibrated; profiles setup_*.json")
