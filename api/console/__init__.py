"""The coordinator console: server-rendered pages under /console (Jinja2, a little plain JS, no CDN)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from api.console import actions, login, pages, reports, triage
from api.console.web import HERE

STATIC = {"console.css": "text/css", "console.js": "text/javascript", "favicon.svg": "image/svg+xml"}

router = APIRouter(include_in_schema=False)


@router.get("/console/static/{name}")
def static_file(name: str) -> FileResponse:
    """The console's own stylesheet and script (a fixed list: nothing else is served from disk)."""
    if name not in STATIC:
        raise HTTPException(404, "no such file")
    return FileResponse(
        HERE / "static" / name,
        media_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


router.include_router(login.router)
router.include_router(actions.router)
router.include_router(pages.router)
router.include_router(reports.router)
router.include_router(triage.router)

__all__ = ["router"]
