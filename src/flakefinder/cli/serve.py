"""``flakefinder serve``: the HTTP inference server (and web UI when given a database)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flakefinder.cli import validation
from flakefinder.cli.options import (
    DetectorOptionsOpt,
    DeviceOpt,
    ModelOpt,
    OptionalOxideNmOpt,
    OptionalUmPerPxOpt,
    ProfileMaterialsOpt,
)
from flakefinder.detect.registry import DEFAULT_DETECTOR, detector_help

if TYPE_CHECKING:
    from flakefinder.calibration.profile import SetupProfile
    from flakefinder.server.settings import ServerSettings


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
    materials: ProfileMaterialsOpt = None,
    oxide_nm: OptionalOxideNmOpt = None,
    um_per_px: OptionalUmPerPxOpt = None,
    db: str | None = typer.Option(
        None,
        "--db",
        help="Database URL: also serve the web UI (flakes, chip map, designer) from it"
        " (default: $FLAKEFINDER_DATABASE_URL if set, else no web UI).",
        show_default=False,
    ),
    api_key: str | None = typer.Option(
        None,
        envvar="FLAKEFINDER_API_KEY",
        help="Require this key (X-API-Key header, or a login in the browser) for every change,"
        " and for reading unless --public-read. An empty key is an error.",
    ),
    public_read: bool = typer.Option(
        False, "--public-read", help="With --api-key: let anyone browse and read without the key."
    ),
    allow_no_key: bool = typer.Option(
        False,
        "--allow-no-key",
        help="Listen on a non-loopback --host without an API key (anyone on the network can"
        " change flakes and designs).",
    ),
    max_upload_mb: float = typer.Option(
        25.0, help="Largest accepted upload (MB).", callback=validation.positive()
    ),
    max_batch: int = typer.Option(8, help="Images per model call when requests arrive together."),
    max_work_megapixels: float = typer.Option(
        8.0,
        help="Uploads of more pixels are shrunk to this many for detection and the Setup page"
        " (answers stay in the upload's pixels); 0: never shrink.",
        callback=validation.in_range(0.0, 50.0),
    ),
    memory_budget_mb: float = typer.Option(
        1024.0,
        help="Memory for decoded images, all requests together; a request waits for its share"
        " (then 429 with Retry-After), one image that can never fit is a 413.",
        callback=validation.in_range(16.0, 1e6),
    ),
    allowed_host: list[str] | None = typer.Option(
        None,
        "--allowed-host",
        help="A host name the server answers to (repeatable; '*': any), besides loopback names,"
        " IP addresses, --host and this machine's names. Other Host headers get 421 (a guard"
        " against DNS rebinding).",
    ),
    max_connections: int = typer.Option(
        512,
        help="Open connections at most; past it the longest idle ones are closed.",
        min=2,
        max=100_000,
    ),
    header_timeout: float = typer.Option(
        10.0, help="Seconds a client has to send its request line and headers.", min=0.1, max=3600
    ),
    body_timeout: float = typer.Option(
        30.0, help="Longest pause (seconds) while a request body arrives (then 408).", min=0.1,
        max=3600,
    ),
) -> None:
    """Serve detection over HTTP so microscopes without a GPU can use a shared GPU machine.

    POST /api/detect (one image) or /api/detect/batch; GET /api/health, /api/model,
    /api/setups; OpenAPI docs at /docs. With --db, the web UI is at /.
    """
    import os

    from flakefinder.cli.options import check_detector, database_url, resolve_context
    from flakefinder.db.settings import DATABASE_URL_ENV
    from flakefinder.detect.registry import parse_option_pairs
    from flakefinder.server.settings import ConnectionLimits, ServerSettings, check_api_key

    if api_key is None and "FLAKEFINDER_API_KEY" in os.environ:
        api_key = os.environ["FLAKEFINDER_API_KEY"]  # click reads an empty variable as unset
    try:
        api_key = check_api_key(api_key, source="--api-key / FLAKEFINDER_API_KEY")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--api-key") from None
    if public_read and api_key is None:
        raise typer.BadParameter("--public-read needs --api-key", param_hint="--public-read")
    if api_key is None and not allow_no_key and not _is_loopback(host):
        raise typer.BadParameter(
            f"without an API key the server listens on 127.0.0.1 only; give --api-key, or"
            f" --allow-no-key to open {host} to everyone",
            param_hint="--host",
        )
    if 0 < max_work_megapixels < 0.01:
        raise typer.BadParameter(
            "give 0 (never shrink) or at least 0.01 megapixels", param_hint="--max-work-megapixels"
        )
    setups = tuple(str(p) for p in setup or ())
    if detector != "none":
        candidates: list[Path | None] = [*setup] if setup else [None]
        for path in candidates:
            check_detector(detector, model=model, setup=path, options=detector_option)
    elif setup:
        raise typer.BadParameter("--setup needs a detector", param_hint="--setup")
    # requests that name no setup profile and no value get these: option > first profile > default
    defaults = resolve_context(
        um_per_px=um_per_px,
        oxide_nm=oxide_nm,
        materials=materials,
        profile=_first_profile(setup if detector != "none" else None),
    )
    if db is None and os.environ.get(DATABASE_URL_ENV, "").strip():
        db = database_url(None)
    settings = ServerSettings(
        detector=detector,
        setups=setups,
        fixed=frozenset(
            name
            for name, given in (("um_per_px", um_per_px), ("oxide_nm", oxide_nm),
                                ("materials", materials))
            if given is not None
        ),
        detector_options=parse_option_pairs(detector_option),
        model_dir=str(model) if model else None,
        device=device,
        materials=defaults.materials,
        oxide_thickness_nm=defaults.oxide_thickness_nm,
        um_per_px=defaults.um_per_px,
        api_key=api_key,
        public_read=public_read,
        max_upload_mb=max_upload_mb,
        max_batch=max_batch,
        database_url=db,
        max_work_pixels=round(max_work_megapixels * 1e6) or None,
        memory_budget_mb=memory_budget_mb,
        allowed_hosts=tuple(allowed_host or ()),
        bind_host=host,
        limits=ConnectionLimits(
            max_connections=max_connections,
            header_timeout_s=header_timeout,
            body_timeout_s=body_timeout,
        ).within_file_limit(),
    )
    _run_server(settings, host, port)


def _run_server(settings: ServerSettings, host: str, port: int) -> None:
    """Serve ``settings`` with uvicorn and the guarded connection handling until stopped."""
    import uvicorn

    from flakefinder.server.app import create_app
    from flakefinder.server.connections import quiet_floods, uvicorn_config

    config = uvicorn_config(create_app(settings), host, port, settings.limits)
    with quiet_floods():
        uvicorn.Server(config).run()


def _first_profile(setups: list[Path] | None) -> SetupProfile | None:
    """The profile of the first ``--setup`` (the one requests without a profile_id get)."""
    if not setups:
        return None
    from flakefinder.calibration.profile import SetupProfile

    return SetupProfile.load(setups[0])


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
