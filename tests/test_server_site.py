"""Offline API docs, favicon and HEAD on the server (``flakefinder.server.site``)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from flakefinder.server.app import create_app
from flakefinder.server.settings import ServerSettings


def test_docs_favicon_and_head_without_network() -> None:
    app = create_app(ServerSettings(detector="none"))
    with TestClient(app) as client:
        docs = client.get("/docs")
        assert docs.status_code == 200
        assert re.findall(r"https?://", docs.text) == []  # nothing from a CDN
        assets = re.findall(r'(?:src|href)="(/[^"]+)"', docs.text)
        assert "/docs-static/swagger-ui-bundle.js" in assets
        for path in assets:
            r = client.get(path)
            assert r.status_code == 200 and len(r.content) > 1000, path
        assert client.get("/redoc").status_code == 404
        icon = client.get("/favicon.ico")
        assert icon.status_code == 200 and icon.content[:4] == b"\x00\x00\x01\x00"  # ICO magic
        head = client.head("/api/health")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == len(client.get("/api/health").content)
        assert client.head("/docs").status_code == 200
        assert client.post("/api/health").status_code == 405
