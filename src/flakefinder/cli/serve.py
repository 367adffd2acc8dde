"""``flakefinder serve``: the HTTP inference server (and web UI when given a database)."""

from __future__ import annotations

from pathlib import Path

import typer

from flakefinder.cli.options import (
    DEFAULT_MATERIALS,
    DEFAULT_OXIDE_NM,
    DEFAULT_UM_PER_PX,
    DetectorOptionsOpt,
    DeviceOpt,
    MaterialsOpt,
    ModelOpt,
    OxideNmOpt,
    UmPerPxOpt,
)
from flakefinder.detect.registry import DEFAULT_DETECTOR, detector_help


def serve(
    host: str = typer.Option(
        "127.0.0.1", help="Interface to listen on (0.0.0.0 for the lab network)."
    ),
    port: int = typer.Option(8000, help="TCP port."),
    detector: str = typer.Option(
        DEFAULT_DETECTOR, "--detector", help=f"{detector_help()} 'none': web UI only."
    ),
    model: ModelOpt = None,
    setup: list[Path] | None = typer.Option(
        None,
        "--setup",
        help="Setup profile JSON (repeatable): one detector per microscope setup, chosen by the"
        " request's profile_id; the first serves requests that name none.",
    ),
    detector_option: DetectorOptionsOpt = None,
    device: DeviceOpt = "auto",
    materials: MaterialsOpt = DEFAULT_MATERIALS,
    oxide_nm: OxideNmOpt = DEFAULT_OXIDE_NM,
    um_per_px: UmPerPxOpt = DEFAULT_UM_PER_PX,
    db: str | None = typer.Option(
        None,
        "--db",
        help="Database URL: also serve the web UI (flakes, chip map, designer) from it"
        " (default: $FLAKEFINDER_DATABASE_URL if set, else no web UI).",
        show_default=False,
    ),
    api_key: str | None = typer.Option(
        None, envvar="FLAKEFINDER_API_KEY", help="Require this X-API-Key header on /api calls."
    ),
    max_upload_mb: float = typer.Option(25.0, help="Largest accepted upload."),
    max_batch: int = typer.Option(8, help="Images per model call when requests arrive together."),
) -> None:
    """Serve detection over HTTP so microscopes without a GPU can use a shared GPU machine.

    POST /api/detect (one image) or /api/detect/batch; GET /api/health, /api/model,
    /api/setups; OpenAPI docs at /docs. With --db, the web UI is at /.
    """
    import os

    import uvicorn

    from flakefinder.cli import parse_materials
    from flakefinder.cli.options import check_detector, database_url
    from flakefinder.db.settings import DATABASE_URL_ENV
    from flakefinder.detect.registry import parse_option_pairs
    from flakefinder.server.app import create_app
    from flakefinder.server.settings import ServerSettings

    setups = tuple(str(p) for p in setup or ())
    if detector != "none":
        check_detector(detector, model=model, options=detector_option)
        for path in setup or ():
            check_detector(detector, model=model, setup=path, options=detector_option)
    elif setup:
        raise typer.BadParameter("--setup needs a detector", param_hint="--setup")
    if db is None and os.environ.get(DATABASE_URL_ENV, "").strip():
        db = database_url(None)
    settings = ServerSettings(
        detector=detector,
        setups=setups,
        detector_options=parse_option_pairs(detector_option),
        model_dir=str(model) if model else None,
        device=device,
        materials=parse_materials(materials),
        oxide_thickness_nm=oxide_nm,
        um_per_px=um_per_px,
        api_key=api_key,
        max_upload_mb=max_upload_mb,
        max_batch=max_batch,
        database_url=db,
    )
    uvicorn.run(create_app(settings), host=host, port=port)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
