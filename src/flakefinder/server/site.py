"""What every page of the server needs besides its API: offline API docs, a favicon, HEAD.

* ``/docs`` (Swagger UI) loads its JavaScript and CSS from the files bundled in the
  ``fastapi-offline`` package, served under ``/docs-static``: no CDN, so it works with no internet.
  ``create_app`` turns off FastAPI's CDN-based pages (``docs_url=None, redoc_url=None``); there is
  no ``/redoc``, because ReDoc fetches its logo from the internet whatever its options.
* ``/favicon.ico``.
* ``HEAD`` on any GET route answers like GET without the body (FastAPI routes answer 405 otherwise).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_STATIC = "/docs-static"
FAVICON = Path(__file__).resolve().parent.parent / "web" / "static" / "favicon.ico"


class HeadAsGet:
    """ASGI middleware: run a HEAD request as GET and send the headers without the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass everything through; HEAD becomes GET with an empty body."""
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


def inline_script_hashes(page: str) -> list[str]:
    """CSP ``sha256-...`` sources of the inline ``<script>`` elements of an HTML page."""
    import base64
    import hashlib
    import re

    return [
        "sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        for body in re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    ]


def docs_static_dir() -> Path:
    """Folder of the Swagger UI files shipped by the ``fastapi-offline`` package."""
    try:
        root = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        raise RuntimeError(
            "the API docs need the fastapi-offline package: pip install 'flakefinder[server]'"
        ) from None
    return Path(str(root))


def add_site_routes(app: FastAPI) -> None:
    """Add ``/docs``, its static files, ``/favicon.ico`` and HEAD support."""
    from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import FileResponse, HTMLResponse
    from fastapi.staticfiles import StaticFiles

    from flakefinder.server.edges import csp_with_script_hashes

    app.add_middleware(HeadAsGet)
    app.mount(DOCS_STATIC, StaticFiles(directory=docs_static_dir()), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} · API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url="/favicon.ico",
            oauth2_redirect_url=redirect_url,
        )
        # the page starts Swagger UI with an inline script: allow exactly that one (by hash)
        page.headers["Content-Security-Policy"] = csp_with_script_hashes(
            inline_script_hashes(bytes(page.body).decode("utf-8"))
        )
        return page

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(FAVICON, media_type="image/x-icon")
