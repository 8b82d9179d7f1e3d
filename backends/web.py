"""What every reference service shares: app keys, JSON errors, request parsing, /health."""
from __future__ import annotations

import json
import logging
from typing import Any, Optional

from aiohttp import web

from backends.db import Clock, Database

logger = logging.getLogger(__name__)

DB = web.AppKey("db", Database)
CLOCK = web.AppKey("clock", object)


class ApiError(Exception):
    """Raised by handlers; becomes ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def ascii_digits(value: str) -> bool:
    """A non-empty run of ASCII digits: what ``int`` may parse (``str.isdigit`` is also true for
    ``"²"``, which ``int`` refuses, and for ``"٣"`` or ``"３"``, which it reads)."""
    return value.isascii() and value.isdigit()


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, ensure_ascii=False), status=status,
                        content_type="application/json", charset="utf-8")


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status)


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every error, including aiohttp's own 404/405 and unexpected exceptions, as JSON."""
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err.status, err.code, err.message)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status, "bad_request")
        return error_response(err.status, code, err.reason)
    except Exception:  # noqa: BLE001 - a reference service answers 500 JSON, and logs why
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise bad_request("body must be JSON") from None
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    return body


def optional_str(body: dict[str, Any], key: str, max_len: int = 500) -> Optional[str]:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise bad_request(f"{key} must be a string of at most {max_len} characters")
    return value.strip() or None


def required_str(body: dict[str, Any], key: str, max_len: int = 500) -> str:
    value = optional_str(body, key, max_len)
    if value is None:
        raise bad_request(f"{key} is required")
    return value


def service_app(db: Database, clock: Clock, name: str) -> web.Application:
    """An empty sub-application for one service, with its /health route."""
    app = web.Application(middlewares=[json_errors])
    app[DB] = db
    app[CLOCK] = clock

    async def health(request: web.Request) -> web.Response:
        return json_response({"status": "ok", "service": name})

    app.router.add_get("/health", health)
    return app
