"""The reference backends as a process whose clock stands still at a given moment.

``python -m tests.support.pinned_backends --port 8101 --db backends.sqlite3 --now
2026-11-28T15:49:00+08:00``. Tests that run the action server (its own process) against the
backends use it when the answer depends on the day or hour (hall opening hours, say), so they
pass on any day at any hour.
"""
from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from aiohttp import web

from backends.app import BackendsAppConfig, create_app
from tests.backends.server import SettableClock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--now", type=datetime.fromisoformat, required=True,
                        help="ISO-8601 moment with its offset, e.g. 2026-11-28T15:49:00+08:00")
    args = parser.parse_args()
    if args.now.tzinfo is None:
        parser.error("--now needs an offset (e.g. +08:00)")
    config = BackendsAppConfig(db_path=args.db, clock=SettableClock(args.now))
    web.run_app(create_app(config), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
