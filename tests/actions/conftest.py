"""Fixtures of the action tests that need the backends' clock pinned (see tests/conftest.py for
the rest)."""
from __future__ import annotations

from datetime import datetime

import pytest

from backends.db import LOCAL_TZ
from scripts.stack import APP_PY, Stack, backends_env, free_port

# A Saturday afternoon (when a clean-clone run once failed): 江宁区东山营业厅 (weekend hours
# 09:00-16:00) and the round-the-clock 鼓楼区中央门营业厅 are open, every other hall is closed.
SATURDAY_AFTERNOON = datetime(2026, 11, 28, 15, 49, tzinfo=LOCAL_TZ)


@pytest.fixture(scope="session")
def saturday_backends_url(stack: Stack) -> str:
    """Reference backends (own database) whose clock stands at SATURDAY_AFTERNOON."""
    port = free_port()
    process = stack.spawn(
        "backends-saturday",
        [str(APP_PY), "-m", "tests.support.pinned_backends", "--port", str(port),
         "--db", str(stack.run_dir / "backends-saturday.sqlite3"),
         "--now", SATURDAY_AFTERNOON.isoformat()],
        dict(stack.base_env),
    )
    url = f"http://127.0.0.1:{port}"
    stack.wait_http(process, f"{url}/health", timeout=60)
    return url


@pytest.fixture(scope="session")
def saturday_action_server_url(stack: Stack, redis_url: str, saturday_backends_url: str) -> str:
    """An action server wired to the Saturday-afternoon backends."""
    return stack.start_action_server(free_port(), redis_url, backends_env(saturday_backends_url))
