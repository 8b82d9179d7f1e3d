"""Run the action server: ``python -m actions [--host 127.0.0.1] --port 5055``.

rasa-sdk's own server, with three additions:

* every log line is masked (户号, phone numbers), tracebacks included;
* it binds ``ACTION_SERVER_HOST`` (``--host``), loopback by default, not rasa-sdk's 0.0.0.0;
* every request but ``GET /health`` must carry ``Authorization: Bearer <ACTION_SERVER_TOKEN>``
  (what Rasa sends through ``bot/endpoints.yml``); others get 401 and a log line. Without a
  token it serves unauthenticated requests on a loopback address only, and refuses to start
  on any other (exit 2).
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import sys

import pluggy
from rasa_sdk.__main__ import main_from_args
from rasa_sdk.endpoint import create_argument_parser
from rasa_sdk.plugin import plugin_manager
from sanic import response

from actions.settings import SettingsError, VerificationSettings
from integrations.log_masking import install_log_masking

logger = logging.getLogger("actions.server")
hookimpl = pluggy.HookimplMarker("rasa_sdk")

TOKEN_VARIABLE = "ACTION_SERVER_TOKEN"
OPEN_PATHS = frozenset({"/health"})


def is_loopback(host: str) -> bool:
    """Is ``host`` an address that only this machine can reach?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TokenCheck:
    """rasa-sdk plugin: refuse requests without the shared secret (constant-time compare)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    @hookimpl
    def attach_sanic_app_extensions(self, app) -> None:
        @app.middleware("request")
        async def require_token(request):
            if request.path in OPEN_PATHS:
                return None
            presented = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if hmac.compare_digest(presented, self._expected):
                return None
            logger.warning("refused %s %s from %s: %s", request.method, request.path,
                           request.ip, "wrong token" if presented else "no token")
            return response.json({"error": "unauthorized"}, status=401)


def main() -> None:
    install_log_masking()
    parser = create_argument_parser()
    parser.add_argument("--host", default=os.environ.get("ACTION_SERVER_HOST") or "127.0.0.1",
                        help="address to bind (default: ACTION_SERVER_HOST, else 127.0.0.1)")
    parser.set_defaults(actions="actions")
    args = parser.parse_args()
    try:  # checked at start: a bad limit must not wait for the first customer to show
        VerificationSettings.from_env()
    except SettingsError as exc:
        print(f"action server configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if token:
        plugin_manager().register(TokenCheck(token))
    elif not is_loopback(args.host):
        print(f"action server configuration error: {TOKEN_VARIABLE} must be set to listen on "
              f"{args.host} (not a loopback address)", file=sys.stderr)
        sys.exit(2)
    else:
        logger.warning("%s is not set: accepting unauthenticated requests on %s",
                       TOKEN_VARIABLE, args.host)
    os.environ["SANIC_HOST"] = args.host  # where rasa_sdk.endpoint.run binds
    main_from_args(args)


if __name__ == "__main__":
    main()
