"""The agent console's HTTP side, mounted on the gateway app under ``/console/``.

* ``POST /console/login`` (JSON or form: ``username``, ``password``): sets the session cookie
  (HttpOnly, SameSite=Strict, Secure with CONSOLE_COOKIE_SECURE, path ``/console``) and answers
  the CSRF token. Failed logins are limited per user name and per client address (429 with
  Retry-After); an unknown name costs a password hash like a known one.
* ``/console/api/...``: the JSON API. A middleware answers 401 to every request there without a
  live session, before routing (unknown paths included), and 403 to a state-changing request
  (POST/PUT/PATCH/DELETE) without the session's token in the ``X-CSRF-Token`` header.

Routes and their JSON: see :func:`setup` and the operations in :mod:`channels.console.desk`.
"""
from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from aiohttp import web
from redis.exceptions import RedisError

from channels.client_address import client_address
from channels.config import GatewayConfig
from channels.config_error import ConfigError
from channels.console import metrics
from channels.console.auth import LoginLimiter, User, UserStore, migrate_legacy_keys
from channels.console.config import ConsoleConfig
from channels.console.desk import Desk
from channels.console.live import LiveHub, live_socket
from channels.console.lookups import Lookups
from channels.console.sessions import COOKIE_NAME, CSRF_HEADER, Session, SessionStore
from channels.console.static_routes import setup_static
from channels.handoff.store import HandoffStore
from channels.key_migration import migrate_at_start
from channels.keys import CONFIG_KEY, CONSOLE_KEY, HANDOFF_KEY, RASA_KEY, REDIS_KEY
from integrations.applications import HttpApplicationsClient
from integrations.masking import mask_text
from integrations.tickets import HttpTicketsClient

log = logging.getLogger(__name__)

API_PREFIX = "/console/api"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_CANNED_REPLIES = 500
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_USER = web.RequestKey("console_user", User)
_SESSION = web.RequestKey("console_session", Session)
_TOKEN = web.RequestKey("console_token", str)


class Console:
    """The console of one gateway app: its stores, the desk and the live hub (built when the
    app starts, once Redis is there)."""

    def __init__(self, config: ConsoleConfig, gateway: GatewayConfig, desk: Desk,
                 sessions: SessionStore, limiter: LoginLimiter, hub: LiveHub,
                 canned: list[dict[str, str]]) -> None:
        self.config = config
        self.gateway = gateway
        self.desk = desk
        self.users = desk.users
        self.sessions = sessions
        self.limiter = limiter
        self.hub = hub
        self.canned = canned

    def origin_ok(self, request: web.Request, required: bool) -> bool:
        """Is the request's ``Origin`` the console's own (or configured)? A missing Origin is
        accepted only when not ``required`` (non-browser clients; browsers always send it on
        WebSockets and cross-site POSTs)."""
        origin = request.headers.get("Origin", "").strip().rstrip("/").lower()
        if not origin:
            return not required
        if origin in self.config.allowed_origins:
            return True
        return urlsplit(origin).netloc == (request.host or "").lower()

    def client_address(self, request: web.Request) -> str:
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", [])) or None
        return client_address(request.remote, forwarded, self.gateway.trusted_proxies)


def load_canned_replies(path: Path) -> list[dict[str, str]]:
    """The canned replies file: ``replies: [{title, text, category?}]``; raises ConfigError."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"CONSOLE_CANNED_REPLIES: cannot read {path}: {exc}") from None
    replies = data.get("replies") if isinstance(data, dict) else None
    if not isinstance(replies, list) or len(replies) > MAX_CANNED_REPLIES:
        raise ConfigError(f"CONSOLE_CANNED_REPLIES: {path} needs a list `replies` (at most "
                          f"{MAX_CANNED_REPLIES})")
    canned = []
    for number, entry in enumerate(replies, 1):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) and entry[k].strip()
                                                  for k in ("title", "text")):
            raise ConfigError(f"CONSOLE_CANNED_REPLIES: reply {number} of {path} needs a title and a text")
        canned.append({"id": str(entry.get("id") or number), "category": str(entry.get("category") or ""),
                       "title": entry["title"].strip(), "text": entry["text"].strip()})
    return canned


# -- the guard ------------------------------------------------------------------------------

def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer that no cache keeps (customers' data)."""
    return web.json_response(body, status=status, dumps=_dumps,
                             headers={**NO_STORE, **(headers or {})})


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _is_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


@web.middleware
async def console_guard(request: web.Request, handler) -> web.StreamResponse:
    """401 without a live session and 403 without the CSRF header, for every path under
    ``/console/api``, before the router's answer (404, 405) is used; a Redis failure is 503."""
    if not _is_api(request.path) and request.path != "/console/login":
        return await handler(request)
    console = request.app[CONSOLE_KEY]
    try:
        if request.path == "/console/login":
            return await handler(request)
        token = request.cookies.get(COOKIE_NAME)
        session = await console.sessions.get(token)
        user = await console.users.get(session.user) if session else None
        if session is None or user is None:
            return _json(401, {"error": "unauthenticated"})
        if request.method not in SAFE_METHODS and not session.csrf_ok(request.headers.get(CSRF_HEADER)):
            return _json(403, {"error": "csrf", "header": CSRF_HEADER})
        request[_USER], request[_SESSION], request[_TOKEN] = user, session, token
        return await handler(request)
    except web.HTTPException as exc:  # the router's 404/405, as JSON like every API answer
        if exc.status < 400:
            raise
        return _json(exc.status, {"error": exc.reason.lower().replace(" ", "_")}, headers={
            k: v for k, v in exc.headers.items() if k == "Allow"})
    except (RedisError, OSError) as exc:
        log.warning("console: %s %s failed (%s)", request.method, request.path, type(exc).__name__)
        metrics.ERRORS.labels("api").inc()
        return _json(503, {"error": "unavailable"})


def _user(request: web.Request) -> User:
    return request[_USER]


async def _body(request: web.Request) -> Any:
    """The request's JSON object (or form fields), or None when it is neither."""
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return dict(await request.post())
    try:
        return await request.json()
    except ValueError:
        return None


# -- handlers -------------------------------------------------------------------------------

async def login(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    if not console.origin_ok(request, required=False):
        return _json(403, {"error": "origin"})
    body = await _body(request)
    name = body.get("username") if isinstance(body, dict) else None
    password = body.get("password") if isinstance(body, dict) else None
    if not isinstance(name, str) or not isinstance(password, str) or not name.strip() or not password:
        return _json(400, {"error": "bad_request", "detail": "username and password are required"})
    name = name.strip().lower()[:64]
    address = console.client_address(request)
    wait = await console.limiter.reserve(name, address)  # counted until it succeeds
    if wait:
        log.warning("console: login of %r from %s refused: too many failed attempts (%d s left)",
                    mask_text(name), address or "an unknown address", wait)
        metrics.LOGINS.labels("limited").inc()
        return _json(429, {"error": "too_many_attempts", "retry_after": wait},
                     headers={"Retry-After": str(wait)})
    user = await console.users.verify(name, password)
    if user is None:
        log.warning("console: failed login of %r from %s", mask_text(name), address or "an unknown address")
        metrics.LOGINS.labels("invalid").inc()
        return _json(401, {"error": "invalid_credentials"})
    await console.limiter.succeeded(name, address)
    token, session = await console.sessions.create(user.name)
    metrics.LOGINS.labels("ok").inc()
    log.info("console: %s logged in from %s", user.name, address or "an unknown address")
    response = _json(200, {"user": user.to_json(), "csrf_token": session.csrf, "session": session.to_json()})
    response.set_cookie(COOKIE_NAME, token, path="/console", httponly=True, samesite="Strict",
                        secure=console.config.cookie_secure)
    return response


async def logout(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    await console.sessions.delete(request[_TOKEN])
    response = _json(200, {"ok": True})
    response.del_cookie(COOKIE_NAME, path="/console")
    return response


async def me(request: web.Request) -> web.Response:
    session: Session = request[_SESSION]
    return _json(200, {"user": _user(request).to_json(), "csrf_token": session.csrf,
                       "session": session.to_json()})


async def conversations(request: web.Request) -> web.Response:
    desk = request.app[CONSOLE_KEY].desk
    mine = request.query.get("mine", "") in ("1", "true", "yes")
    return _json(*await desk.conversations(_user(request), request.query.get("state", "waiting"), mine))


async def conversation(request: web.Request) -> web.Response:
    desk = request.app[CONSOLE_KEY].desk
    return _json(*await desk.detail(_user(request), request.match_info["cid"]))


async def transcript(request: web.Request) -> web.Response:
    desk = request.app[CONSOLE_KEY].desk
    return _json(*await desk.messages(_user(request), request.match_info["cid"]))


async def claim(request: web.Request) -> web.Response:
    desk = request.app[CONSOLE_KEY].desk
    return _json(*await desk.claim(_user(request), request.match_info["cid"]))


async def transfer(request: web.Request) -> web.Response:
    desk = request.app[CONSOLE_KEY].desk
    return _json(*await desk.transfer(_user(request), request.match_info["cid"], await _body(request)))


async def close(request: web.Request) -> web.Response:
    desk = request.app[CONSOLE_KEY].desk
    return _json(*await desk.close(_user(request), request.match_info["cid"]))


async def take_over(request: web.Request) -> web.Response:
    desk = request.app[CONSOLE_KEY].desk
    return _json(*await desk.take_over(_user(request), request.match_info["cid"], await _body(request)))


async def send_message(request: web.Request) -> web.Response:
    desk = request.app[CONSOLE_KEY].desk
    body = await _body(request)
    text = body.get("text") if isinstance(body, dict) else None
    return _json(*await desk.reply(_user(request), request.match_info["cid"], text))


async def canned(request: web.Request) -> web.Response:
    return _json(200, {"replies": request.app[CONSOLE_KEY].canned})


async def queues(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    names = sorted(set(await console.users.queues()) | set(await console.desk.store.queues()))
    stats = (await console.desk.store.stats())["queues"]
    agents = [{"name": u.name, "display_name": u.display_name, "role": u.role, "queues": list(u.queues)}
              for u in await console.users.list()]
    return _json(200, {"queues": [{"queue": q, "waiting": stats.get(q, {}).get("waiting", 0)} for q in names],
                       "agents": agents})


async def stats(request: web.Request) -> web.Response:
    return _json(*await request.app[CONSOLE_KEY].desk.stats(_user(request), request.query.get("day")))


async def live(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    if not console.origin_ok(request, required=True):
        return _json(403, {"error": "origin"})
    token, user = request[_TOKEN], _user(request)

    async def session_user(touch: bool) -> User | None:
        try:
            session = await console.sessions.get(token, touch=touch)
            return await console.users.get(session.user) if session else None
        except (RedisError, OSError):
            return user  # a Redis hiccup does not log an agent out

    return await live_socket(request, console.hub, user, session_user, console.desk.reply)


# -- wiring ---------------------------------------------------------------------------------

def setup(app: web.Application, config: GatewayConfig) -> None:
    """Add the console's routes and guard to the gateway ``app``; its objects are built when
    the app starts (after the Redis and Rasa contexts: call after they are appended)."""
    load_canned_replies(config.console.canned_replies)  # a bad file fails at start, not later
    app.middlewares.append(console_guard)
    app.cleanup_ctx.append(_lifespan)
    app.on_shutdown.append(_close_sockets)
    add = app.router
    add.add_post("/console/login", login)
    add.add_post(API_PREFIX + "/logout", logout)
    add.add_get(API_PREFIX + "/me", me)
    add.add_get(API_PREFIX + "/conversations", conversations)
    add.add_get(API_PREFIX + "/conversations/{cid}", conversation)
    add.add_get(API_PREFIX + "/conversations/{cid}/messages", transcript)
    add.add_post(API_PREFIX + "/conversations/{cid}/messages", send_message)
    add.add_post(API_PREFIX + "/conversations/{cid}/claim", claim)
    add.add_post(API_PREFIX + "/conversations/{cid}/transfer", transfer)
    add.add_post(API_PREFIX + "/conversations/{cid}/close", close)
    add.add_post(API_PREFIX + "/conversations/{cid}/take_over", take_over)
    add.add_get(API_PREFIX + "/canned", canned)
    add.add_get(API_PREFIX + "/queues", queues)
    add.add_get(API_PREFIX + "/stats", stats)
    add.add_get(API_PREFIX + "/live", live)
    setup_static(app)  # the page itself: /console/ and /console/static/* (no session needed)


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    gateway: GatewayConfig = app[CONFIG_KEY]
    config = gateway.console
    redis = app[REDIS_KEY]
    tickets = HttpTicketsClient(config.backends.tickets_url, config.backends.timeout_s)
    applications = HttpApplicationsClient(config.backends.applications_url, config.backends.timeout_s)
    # The hand-off service is set by its own cleanup context, maybe after this one: looked up
    # per request.
    await migrate_at_start("console", migrate_legacy_keys(redis))
    desk = Desk(lambda: app[HANDOFF_KEY], UserStore(redis),
                Lookups(app.get(RASA_KEY), tickets, applications, config.lookup_timeout_seconds))
    hub = LiveHub(HandoffStore(redis))  # reads the events stream only
    app[CONSOLE_KEY] = Console(
        config, gateway, desk,
        SessionStore(redis, config.session_idle_seconds, config.session_max_seconds),
        LoginLimiter(redis, config.login_attempts, config.login_attempts_per_address,
                     config.login_window_seconds),
        hub, load_canned_replies(config.canned_replies))
    hub.start()
    try:
        yield
    finally:
        await hub.stop()
        await tickets.close()
        await applications.close()


async def _close_sockets(app: web.Application) -> None:
    console = app.get(CONSOLE_KEY)
    if console is not None:
        await console.hub.close_all()
