"""The console page as served (real HTTP on loopback) and the rules its files keep: no inline
script or style (the CSP forbids them), no HTML built from strings (customer text stays text)."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.console.static_routes import CHART_JS, STATIC_DIR, setup_static


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script_text += data.strip()


async def _serve():
    app = web.Application()
    setup_static(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_page_and_assets_are_served_with_a_strict_policy_and_no_session():
    server = await _serve()
    base = str(server.make_url("")).rstrip("/")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/console", allow_redirects=False) as response:
                assert response.status == 302 and response.headers["Location"] == "/console/"
            async with http.get(f"{base}/console/") as response:
                assert response.status == 200
                assert "人工坐席工作台" in await response.text()
                policy = response.headers["Content-Security-Policy"]
                assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
                assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
                assert response.headers["X-Frame-Options"] == "DENY"
                assert response.headers["Cache-Control"] == "no-store"
            for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css"),
                               ("chart.umd.min.js", "text/javascript")):
                async with http.get(f"{base}/console/static/{name}") as response:
                    assert response.status == 200, name
                    assert response.content_type == kind
                    assert response.headers["X-Content-Type-Options"] == "nosniff"
            async with http.get(f"{base}/console/static/../static_routes.py") as response:
                assert response.status == 404
    finally:
        await server.close()


def test_chart_js_is_the_npm_package_of_major_version_4():
    assert CHART_JS.is_file(), "npm ci --prefix channels/static"
    assert re.search(r"Chart\.js v4\.\d+\.\d+", CHART_JS.read_text(encoding="utf-8")[:300])


def test_page_has_no_inline_script_handler_or_style():
    parser = _Tags()
    parser.feed((STATIC_DIR / "index.html").read_text(encoding="utf-8"))
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert [s.get("src") for s in scripts] == ["/console/static/chart.umd.min.js", "/console/static/console.js"]
    assert parser.script_text == ""
    for tag, attrs in parser.tags:
        assert not any(name.startswith("on") for name in attrs), tag
        assert "style" not in attrs, tag
    assert not any(tag == "style" for tag, _ in parser.tags)


def test_script_never_builds_html_from_strings_and_sends_the_csrf_header():
    source = (STATIC_DIR / "console.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, sink
    assert re.search(r'CSRF_HEADER = "X-CSRF-Token"', source)
    assert re.search(r'if \(method !== "GET"\) \{\s*headers\[CSRF_HEADER\] = state\.csrf;', source)
