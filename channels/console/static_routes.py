"""The agents' console page and its assets, served without a session (the page asks the API,
which answers 401 until the agent logs in).

``/console/`` is the page (Chinese UI, ``static/index.html``), ``/console/static/console.js`` and
``console.css`` its script and style, ``/console/static/chart.umd.min.js`` Chart.js 4 from the npm
package of the web chat's assets (``npm ci --prefix channels/static``). The page's CSP allows
scripts, styles and connections of its own origin only (the live channel's WebSocket included)
and no framing.
"""
from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
CHART_JS = (Path(__file__).resolve().parents[1] / "static" / "node_modules" / "chart.js" / "dist"
            / "chart.umd.min.js")

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self' ws: wss:; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _file(path: Path, content_type: str, cache: str = "no-cache"):
    async def serve(_request: web.Request) -> web.StreamResponse:
        if not path.is_file():
            raise web.HTTPNotFound(text="not installed: npm ci --prefix channels/static")
        return web.FileResponse(path, headers={"Cache-Control": cache, "Content-Type": content_type,
                                               "X-Content-Type-Options": "nosniff"})
    return serve


async def console_page(_request: web.Request) -> web.FileResponse:
    """The console's single page."""
    return web.FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


async def to_console(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


def setup_static(app: web.Application) -> None:
    """Register the page at ``/console/`` (``/console`` redirects there) and its assets."""
    app.router.add_get("/console", to_console)
    app.router.add_get("/console/", console_page)
    app.router.add_get("/console/static/console.js", _file(STATIC_DIR / "console.js", "text/javascript"))
    app.router.add_get("/console/static/console.css", _file(STATIC_DIR / "console.css", "text/css"))
    app.router.add_get("/console/static/chart.umd.min.js",
                       _file(CHART_JS, "text/javascript", "public, max-age=86400"))
    if not CHART_JS.is_file():
        log.warning("console charts need Chart.js: run `npm ci --prefix channels/static`")
