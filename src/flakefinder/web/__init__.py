"""Web UI: flake gallery, flake pages, chip map, scans, heterostructure designer, setup calibration.

Server-rendered (Jinja2) with a little vanilla JavaScript; every asset is served locally,
so it works with no internet. :func:`mount_web` adds it to the inference server's app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from flakefinder.intake import ImageIntake


def mount_web(
    app: FastAPI,
    database_url: str,
    *,
    intake: ImageIntake,
    setup_session_bytes: int = 64 * 2**20,
) -> None:
    """Serve the UI and its JSON API from ``app``, backed by the database at ``database_url``.

    ``intake`` decodes the Setup page's uploads within the server's memory budget;
    ``setup_session_bytes`` caps the memory of one Setup-page session.
    """
    from pathlib import Path

    from fastapi.staticfiles import StaticFiles

    from flakefinder.db import Database
    from flakefinder.db.viewport import ChipMapQueries
    from flakefinder.web.api import create_api_router
    from flakefinder.web.chipmap import create_chipmap_router
    from flakefinder.web.hunt import create_hunt_router
    from flakefinder.web.mosaic import create_mosaic_router
    from flakefinder.web.pages import create_page_router
    from flakefinder.web.setup import create_setup_router
    from flakefinder.web.setup_workspace import Workspaces

    db = Database(database_url)
    db.migrate()
    app.state.web_db = db
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    map_queries = ChipMapQueries(db)
    app.include_router(create_api_router(db))
    app.include_router(create_chipmap_router(db, map_queries))
    app.include_router(create_page_router(db, map_queries))
    app.include_router(create_hunt_router(db))
    app.include_router(create_mosaic_router(db))
    app.state.setup_workspaces = Workspaces(max_session_bytes=setup_session_bytes)
    app.include_router(create_setup_router(app.state.setup_workspaces, intake))
