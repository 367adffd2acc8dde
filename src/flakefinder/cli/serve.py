"""``flakefinder serve``: the HTTP inference server (and web UI when given a database)."""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    host: str = typer.Option(
        "127.0.0.1", help="Interface to listen on (0.0.0.0 for the lab network)."
    ),
    port: int = typer.Option(8000, help="TCP port."),
    detector: str = typer.Option("maskrcnn", help="maskrcnn, contrast or rulebased."),
    model: Path | None = typer.Option(None, help="Model folder (default: the shipped model)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    materials: str = typer.Option("graphene,hBN,MoS2,WTe2", help="Default materials of requests."),
    oxide_nm: float = typer.Option(90.0, help="Default SiO2 thickness (nm)."),
    um_per_px: float = typer.Option(0.2, help="Default pixel size on the sample (µm)."),
    db: str | None = typer.Option(
        None, help="Database URL: also serve the web UI (flakes, chip map, designer) from it."
    ),
    api_key: str | None = typer.Option(
        None, envvar="FLAKEFINDER_API_KEY", help="Require this X-API-Key header on /api calls."
    ),
    max_upload_mb: float = typer.Option(25.0, help="Largest accepted upload."),
    max_batch: int = typer.Option(8, help="Images per model call when requests arrive together."),
) -> None:
    """Serve detection over HTTP so microscopes without a GPU can use a shared GPU machine.

    POST /api/detect (one image) or /api/detect/batch; GET /api/health, /api/model;
    OpenAPI docs at /docs. With --db, the web UI is at /.
    """
    import uvicorn

    from flakefinder.cli import parse_materials
    from flakefinder.server.app import create_app
    from flakefinder.server.settings import ServerSettings

    settings = ServerSettings(
        detector=detector,
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
