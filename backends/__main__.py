"""``python -m backends --host 127.0.0.1 --port 8100 --db .run/backends.sqlite3 [--simulate-queues]``

Defaults come from BACKENDS_HOST (127.0.0.1), BACKENDS_PORT (8100), BACKENDS_DB and
BACKENDS_SIMULATE_QUEUES. Every log line is masked (户号 in paths and tracebacks included).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from aiohttp import web

from backends.app import BackendsAppConfig, create_app
from backends.web import ascii_digits
from integrations.log_masking import install_log_masking


def port_number(raw: str) -> int:
    """An argparse type: a TCP port written in ASCII digits."""
    raw = raw.strip()
    if not (ascii_digits(raw) and 1 <= int(raw) <= 65535):
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {raw!r}")
    return int(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description="PowerDesk reference backend services")
    parser.add_argument("--host", default=os.environ.get("BACKENDS_HOST") or "127.0.0.1")
    parser.add_argument("--port", type=port_number, default=os.environ.get("BACKENDS_PORT") or "8100")
    parser.add_argument("--db", type=Path,
                        default=Path(os.environ.get("BACKENDS_DB", ".run/backends.sqlite3")))
    parser.add_argument("--simulate-queues", action="store_true",
                        default=os.environ.get("BACKENDS_SIMULATE_QUEUES") == "1",
                        help="move the hall queues by themselves (demos); also BACKENDS_SIMULATE_QUEUES=1")
    args = parser.parse_args()
    install_log_masking()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = BackendsAppConfig(db_path=args.db,
                               simulate_queues_every_s=20.0 if args.simulate_queues else None)
    web.run_app(create_app(config), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
