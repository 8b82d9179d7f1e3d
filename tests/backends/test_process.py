"""The reference backends as the stack runs them: ``python -m backends`` on a fresh SQLite file."""
from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import yaml

from backends.app import SERVICES, BackendsAppConfig, create_app
from backends.export_lookups import area_terms, business_type_terms, export, hall_terms

ROOT = Path(__file__).resolve().parents[2]


async def _get(url: str):
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return response.status, response.content_type, await response.text()


async def test_health_of_the_process_and_each_service(backends_url: str):
    status, kind, _ = await _get(f"{backends_url}/health")
    assert (status, kind) == (200, "application/json")
    for name in SERVICES:
        status, _, body = await _get(f"{backends_url}/{name}/health")
        assert status == 200 and name in body


async def test_unknown_paths_answer_json_errors(backends_url: str):
    status, kind, body = await _get(f"{backends_url}/billing/nothing/here")
    assert (status, kind) == (404, "application/json") and '"not_found"' in body


async def test_openapi_document_covers_every_route(backends_url: str, tmp_path: Path):
    status, _, text = await _get(f"{backends_url}/openapi.yaml")
    assert status == 200
    document = yaml.safe_load(text)
    assert document["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, item in document["paths"].items()
                  for method in item if method in ("get", "post")}
    app = create_app(BackendsAppConfig(db_path=tmp_path / "routes.sqlite3"))
    served = set()
    for resource in app.router.resources():
        sub = getattr(resource, "_app", None)
        routes = sub.router.routes() if sub is not None else resource
        for route in routes:
            if route.method == "HEAD":
                continue
            path = re.sub(r"\{[^}]+\}", "{}", route.resource.canonical)
            if sub is not None:  # documented relative to each service's base URL
                path = path[len(resource.canonical):]
            served.add((path, route.method))
    normalized = {(re.sub(r"\{[^}]+\}", "{}", p), m) for p, m in documented}
    missing = {(p, m) for p, m in served if p not in ("/openapi.yaml",) and (p, m) not in normalized}
    assert missing == set()
    assert len(served) >= 19


def test_committed_lookup_tables_match_the_seed_data(tmp_path: Path):
    for path in export(tmp_path):
        committed = ROOT / "nlu_data" / "lookups" / path.name
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), path.name
    assert "江宁区东山营业厅" in hall_terms() and "东山营业厅" in hall_terms()
    assert {"江宁区", "东山街道", "百家湖社区", "胜太路"} <= set(area_terms())
    assert business_type_terms()[0] == "光伏并网"  # longest first
    assert "缴费" not in business_type_terms() and "过户" in business_type_terms()
    for terms in (area_terms(), hall_terms(), business_type_terms()):
        assert [len(t) for t in terms] == sorted((len(t) for t in terms), reverse=True)
