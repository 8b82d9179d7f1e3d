"""``python -m backends --host 127.0.0.1 --port 8100 --db .run/backends.sqlite3 [--simulate-queues]``"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from aiohttp import web

from backends.app import BackendsAppConfig, create_app


def main() -> None:
    parser = argparse.ArgumentParser(description="PowerDesk reference backend services")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("BACKENDS_PORT", "8100")))
    parser.add_argument("--db", type=Path,
                        default=Path(os.environ.get("BACKENDS_DB", ".run/backends.sqlite3")))
    parser.add_argument("--simulate-queues", action="store_true",
                        default=os.environ.get("BACKENDS_SIMULATE_QUEUES") == "1",
                        help="move the hall queues by themselves (demos); also BACKENDS_SIMULATE_QUEUES=1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = BackendsAppConfig(db_path=args.db,
                               simulate_queues_every_s=20.0 if args.simulate_queues else None)
    web.run_app(create_app(config), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
