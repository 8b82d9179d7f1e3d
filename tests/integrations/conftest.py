"""Fixtures for the client tests: the reference backends served in-process (fixed clock)."""
from __future__ import annotations

from pathlib import Path

import pytest

from backends.db import Database
from backends.seed import seed_if_empty
from tests.backends.server import RunningBackends, running_backends


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory) -> Path:
    """One seeded database file for the session (seeding is the slow part)."""
    path = tmp_path_factory.mktemp("backends") / "backends.sqlite3"
    db = Database(path)
    seed_if_empty(db)
    db.close()
    return path


@pytest.fixture
async def backends(seeded_db: Path) -> RunningBackends:
    async with running_backends(seeded_db) as running:
        yield running
