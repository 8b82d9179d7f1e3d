"""`make run`'s supervisor starts the whole product and Ctrl-C stops all of it."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from scripts.stack import free_port

ROOT = Path(__file__).resolve().parents[2]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.e2e
def test_run_serves_web_chat_and_ctrl_c_stops_everything(rasa_model: Path, tmp_path: Path):
    ports = {name: free_port() for name in
             ("GATEWAY_PORT", "GATEWAY_ADMIN_PORT", "RASA_PORT", "ACTION_SERVER_PORT",
              "BACKENDS_PORT", "EMBEDDED_REDIS_PORT")}
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.endswith("_API_URL")}
    env.update({k: str(v) for k, v in ports.items()})
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", BACKENDS_DB=str(tmp_path / "b.sqlite3"))
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        # Its own session, so that the SIGINT below reaches the supervisor alone, as a
        # terminal's Ctrl-C reaches the foreground process (the children have their own groups).
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "scripts.run"], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while "Web chat:" not in log_path.read_text(errors="replace"):
            assert supervisor.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "make run did not come up in 300s"
            time.sleep(0.5)
        url = f"http://127.0.0.1:{ports['GATEWAY_PORT']}/"
        admin_url = f"http://127.0.0.1:{ports['GATEWAY_ADMIN_PORT']}/metrics"
        assert url in log_path.read_text(errors="replace")
        assert admin_url in log_path.read_text(errors="replace")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(admin_url, timeout=10) as response:
            assert response.status == 200
        campaigns_url = f"http://127.0.0.1:{ports['GATEWAY_ADMIN_PORT']}/admin/campaigns"
        assert campaigns_url in log_path.read_text(errors="replace")
        with urllib.request.urlopen(campaigns_url, timeout=10) as response:
            assert response.status == 200  # the broadcast scheduler runs next to the gateway
        assert "broadcast scheduler" in log_path.read_text(errors="replace")
        assert all(port_open(p) for p in ports.values())
    finally:
        supervisor.send_signal(signal.SIGINT)
        supervisor.wait(timeout=60)
    output = log_path.read_text(errors="replace")
    assert supervisor.returncode == 0, output[-3000:]
    assert "PowerDesk stopped." in output
    assert not [name for name, p in ports.items() if port_open(p)], output[-3000:]


@pytest.mark.parametrize("name", ["EMBEDDED_REDIS_PORT", "GATEWAY_ADMIN_PORT"])
@pytest.mark.parametrize("value", ["²", "６３９０", "0", "70000", "port"])
def test_a_bad_port_is_one_clear_line_and_exit_2(name, value):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(PYTHONPATH=str(ROOT), **{name: value})
    done = subprocess.run([sys.executable, "-m", "scripts.run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip() == (f"make run configuration error: {name} must be a port number "
                                   f"from 1 to 65535, got {value!r}")
