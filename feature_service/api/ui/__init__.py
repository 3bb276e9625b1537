"""The web UI: static HTML, JavaScript and CSS in `static/`, served by the API itself.

`GET /` is the page; `/ui/*` its files. The page talks to the public API only, with
`fetch` (`/feature-views`, `/status`, `/get-online-features`,
`/get-historical-features`, `/feature-views/{name}/entities`), sending the API key the
user typed (kept in the browser's localStorage) as `X-API-Key`. Plots are SVG drawn by
`app.js`; nothing is loaded from another host, so it works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def static_files() -> StaticFiles:
    """Mount at `/ui`."""
    return StaticFiles(directory=STATIC_DIR)
