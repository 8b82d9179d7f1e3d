"""RASA_SERVERS: `make run` starts N Rasa servers and N action servers, each Rasa with its own
action server, and the gateway gets all of them (Rasa replaced here by its REST fake, started
through the same `rasa run ...` command line; the action servers are real)."""
import os
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from scripts import stack as stack_module
from scripts.stack import APP_PY, Stack, backends_env, free_port

ROOT = Path(__file__).resolve().parents[2]


def consecutive_free_ports(count: int) -> int:
    for _ in range(50):
        first = free_port()
        if first + count <= 65535 and all(_free(first + i) for i in range(1, count)):
            return first
    raise RuntimeError("no consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture
def fake_rasa_bin(tmp_path, monkeypatch) -> Path:
    """A `rasa` executable that serves the REST fake on the --port it is given."""
    script = tmp_path / "rasa"
    script.write_text("#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = --port ] && port=$2; shift; done\n"
                      f"exec {APP_PY} -m fakes.rasa_rest --port \"$port\"\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(stack_module, "RASA_BIN", script)
    return script


def test_n_rasa_servers_each_with_its_own_action_server(tmp_path, fake_rasa_bin, redis_url):
    supervisor = Stack(run_dir=tmp_path / "run", log_dir=tmp_path / "logs")
    rasa_port, action_port = consecutive_free_ports(2), consecutive_free_ports(2)
    try:
        urls = supervisor.start_rasa_nodes(2, rasa_port, action_port, tmp_path / "model.tar.gz", redis_url,
                                           backends_env("http://127.0.0.1:9"))
        assert urls == [f"http://127.0.0.1:{rasa_port}", f"http://127.0.0.1:{rasa_port + 1}"]
        by_name = {p.name: p for p in supervisor.processes}
        assert sorted(by_name) == ["actions", "actions2", "rasa", "rasa2"]
        for rasa, port in (("rasa", action_port), ("rasa2", action_port + 1)):
            environ = Path(f"/proc/{by_name[rasa].popen.pid}/environ").read_bytes().split(b"\0")
            assert f"ACTION_SERVER_URL=http://127.0.0.1:{port}/webhook".encode() in environ
        for port in (action_port, action_port + 1):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                assert response.status == 200
        for url in urls:
            with urllib.request.urlopen(f"{url}/status", timeout=5) as response:
                assert response.status == 200
    finally:
        supervisor.stop()


@pytest.mark.parametrize("env, message", [
    ({"RASA_SERVERS": "0"}, "RASA_SERVERS must be a whole number from 1 to 16, got '0'"),
    ({"RASA_SERVERS": "２"}, "RASA_SERVERS must be a whole number from 1 to 16, got '２'"),
    ({"RASA_SERVERS": "17"}, "RASA_SERVERS must be a whole number from 1 to 16, got '17'"),
    ({"RASA_SERVERS": "3", "RASA_PORT": "65534"}, "RASA_PORT 65534 leaves no room for 3 servers (RASA_SERVERS)"),
])
def test_a_bad_rasa_servers_is_one_clear_line_and_exit_2(env, message):
    run_env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RASA_SERVERS", "RASA_PORT")}
    run_env.update(PYTHONPATH=str(ROOT), **env)
    done = subprocess.run([sys.executable, "-m", "scripts.run"], cwd=ROOT, env=run_env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip() == f"make run configuration error: {message}"
